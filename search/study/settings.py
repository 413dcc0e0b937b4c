"""The settings a study owns: recorded when it is created, followed by every worker.

A worker that gives a setting on its command line must give the study's value; one that gives
another is refused with both values named, so workers of one study never run under different
totals, budgets, samplers or heartbeats. The one change allowed is raising the total, and only
when asked for explicitly (``--raise-total``); each change is recorded with when and by whom.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ecgsearch.errors import UserError

__all__ = ["SETTINGS_ATTR", "SETTINGS_LOG_ATTR", "SettingsConflict", "StudySettings", "settle"]

SETTINGS_ATTR = "settings"
SETTINGS_LOG_ATTR = "settings_log"

# The command-line flag that sets each field, for messages.
FLAGS = {
    "total": "--trials",
    "limits": "--max",
    "sampler": "--sampler",
    "thesis": "--thesis/--no-thesis",
    "heartbeat_interval": "--heartbeat-interval",
    "grace_period": "--grace-period",
    "max_retries": "--max-retries",
    "max_consecutive_failures": "--stop-after-failures",
}


class SettingsConflict(UserError):
    """A worker asked for a setting that differs from the study's."""


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """What every worker of one study must agree on.

    ``total`` counts the trials the study holds when done (failed ones are replaced by their
    retries); ``limits`` the budgets (``--max-mb 2``, ``--max latency_ms=5``: metric to the
    largest value a feasible trial has; none: no constraint on any trial);
    ``max_consecutive_failures``: a worker stops after this many trials in a row failed for the
    same reason.
    """

    total: int
    sampler: str
    thesis: bool
    heartbeat_interval: int
    grace_period: int
    max_retries: int
    max_consecutive_failures: int
    limits: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The settings as the study records them (a user attribute)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySettings:
        """Settings from what a study recorded: studies created before ``limits`` existed have
        none, and those that kept the size budget apart (``max_mb``) have it read as a limit."""
        known = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        if data.get("max_mb") is not None:
            known["limits"] = {"size_mb": data["max_mb"], **known.get("limits", {})}
        return cls(**known)


def settle(
    recorded: StudySettings | None,
    defaults: StudySettings,
    requested: dict[str, Any],
    *,
    raise_total: bool = False,
    study_name: str = "",
) -> tuple[StudySettings, list[str]]:
    """The study's settings after this worker's request, and the changes made (to log).

    ``requested`` holds only what the user gave. A new study takes the defaults with the
    request on top; an existing one keeps its settings, and a request that differs is refused,
    except a larger total with ``raise_total``.
    """
    unknown = set(requested) - set(FLAGS)
    if unknown:
        raise ValueError(f"unknown study settings {sorted(unknown)}")
    if recorded is None:
        return dataclasses.replace(defaults, **requested), []
    changes: dict[str, Any] = {}
    conflicts = _limit_conflicts(recorded.limits, requested.get("limits", {}), study_name)
    for key, value in requested.items():
        if key == "limits":
            continue
        current = getattr(recorded, key)
        if value == current:
            continue
        if key == "total" and raise_total and value > current:
            changes[key] = value
            continue
        hint = "drop the flag (workers follow the study's settings) or use another --study-name"
        if key == "total":
            hint = (
                "omit --trials, or add --raise-total to raise it"
                if value > current
                else "a study's total cannot be lowered"
            )
        conflicts.append(
            f"{key} is {current!r} in study {study_name!r}, this command gives {FLAGS[key]} {value!r}: {hint}"
        )
    if conflicts:
        raise SettingsConflict("; ".join(conflicts))
    if raise_total and "total" not in changes and "total" not in requested:
        raise SettingsConflict("--raise-total needs --trials N with the new, larger total")
    log = [f"{key} raised from {getattr(recorded, key)!r} to {value!r}" for key, value in changes.items()]
    return dataclasses.replace(recorded, **changes), log


def _limit_conflicts(recorded: dict[str, float], requested: dict[str, float], study_name: str) -> list[str]:
    """A limit the command names with another value than the study's, or one the study lacks;
    the limits it does not name stay the study's."""
    conflicts = []
    for metric, value in requested.items():
        current = recorded.get(metric)
        if current == value:
            continue
        flag = f"--max-mb {value:g}" if metric == "size_mb" else f"--max {metric}={value:g}"
        has = f"is {current!r}" if current is not None else "is not set"
        conflicts.append(
            f"the {metric} limit {has} in study {study_name!r}, this command gives {flag}: drop the "
            "flag (workers follow the study's settings) or use another --study-name"
        )
    return conflicts


def log_entry(change: str, worker: str) -> dict[str, Any]:
    """One entry of the study's settings log."""
    return {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "change": change, "by": worker}
