"""Optuna's console output under ecgsearch: our display replaces its per-trial lines.

Its own module so that the read commands (pareto, report, export) need not import the worker.
"""

from __future__ import annotations

import logging
import warnings

import optuna

__all__ = ["quiet_optuna"]


class _DropTrialFailedRecords(logging.Filter):
    """Optuna logs a failed trial with its traceback (50 lines for a SIGTERM); our display and
    the trial's ``fail_reason`` and log file already say why, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.getMessage().startswith("Trial ") and " failed with " in record.getMessage())


_TRIAL_FAILED_FILTER = _DropTrialFailedRecords()


def quiet_optuna() -> None:
    """Our display replaces Optuna's per-trial log lines; only the experimental features we use are silenced."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # On the handlers: a logger's own filters do not see records its child loggers emit.
    for handler in logging.getLogger("optuna").handlers:
        if _TRIAL_FAILED_FILTER not in handler.filters:
            handler.addFilter(_TRIAL_FAILED_FILTER)
    # Knowingly used experimental features: heartbeats and fail_stale_trials, artifacts, set_constraint.
    for feature in (
        "heartbeat_interval",
        "fail_stale_trials",
        "upload_artifact",
        "download_artifact",
        "get_all_artifact_meta",
        "set_constraint",
        "FileSystemArtifactStore",
        "set_metric_names",
    ):
        warnings.filterwarnings("ignore", message=f".*{feature}.*", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("alembic").setLevel(logging.WARNING)
