"""Where studies live: Optuna storage on a connection budget, outages ridden out, locks, Optuna internals."""
