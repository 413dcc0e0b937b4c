"""Running trials: the worker loop, the trial objective, confirmation runs, K workers per machine, signals."""
