"""ecgsearch from Python (a notebook, a script): read a study and export a trial's model.

    from ecgsearch import api

    study = api.load_study("demo", workspace="ecgsearch-work")  # or storage="postgresql+psycopg2://..."
    api.front(study)     # the Pareto front: a DataFrame indexed by trial number
    api.trials(study)    # every trained trial within the study's limits, the same columns
    api.export(study, "model-best")               # the highest validation AUROC
    api.export(study, "model-12", trial=12)       # a trial by number

The columns: ``thesis`` (E1-E18 or empty), the validation figures (``val_micro_auroc``,
``val_macro_auroc``, ``val_micro_auprc``, ``val_macro_auprc``), ``test_micro_auroc``,
``test_micro_auprc``, ``size_mb``, ``params``, ``macs``, ``latency_ms`` and ``int8_size_mb``
(when measured), ``repeats_trial`` (a repeat's trial), the study's objectives, ``seeds`` (how
many seeds trained the network: 1, or more after ``ecgsearch confirm``), and per validation
figure ``<figure>_mean`` and ``<figure>_sd`` over those seeds (the sd is empty with one seed).

The command line reads studies through the same functions: ``ecgsearch pareto`` and
``ecgsearch export`` give what ``front`` and ``export`` give. Reading needs no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from ecgsearch.analysis.results import (
    SHOWN_METRICS,
    TrialRow,
    best_trial,
    export_trial,
    feasible_trained,
    pareto_rows,
    seed_table,
    study_classes,
    study_space,
    trial_row,
)
from ecgsearch.errors import UserError
from ecgsearch.storage.optuna_internals import count_trials, trial_by_number, trial_summaries
from ecgsearch.storage.optuna_logging import quiet_optuna
from ecgsearch.storage.storage import StorageSettings, open_storage, redact, resolve_storage_url
from ecgsearch.study.defaults import DEFAULT_WORKSPACE
from ecgsearch.trial_record import ROW_ATTRS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["export", "front", "load_study", "pick_trial", "rows_frame", "trials"]


def load_study(name: str, *, workspace: Path | str = DEFAULT_WORKSPACE, storage: str | None = None) -> optuna.Study:
    """The study ``name``: in ``storage`` (a URL; default ``$ECGSEARCH_STORAGE``, else the
    workspace's SQLite file). A missing database or study raises ``UserError`` naming what exists."""
    quiet_optuna()
    url = resolve_storage_url(storage, Path(workspace))
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise UserError(f"no study database at {redact(url)}; run `ecgsearch run` first")
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url, StorageSettings()))
    except KeyError:
        names = optuna.get_all_study_names(url)
        raise UserError(f"no study {name!r} in {redact(url)}; studies there: {names}") from None


def front(study: optuna.Study) -> pd.DataFrame:
    """The study's Pareto front (as ``ecgsearch pareto`` lists it), by size."""
    return rows_frame(pareto_rows(study))


def trials(study: optuna.Study) -> pd.DataFrame:
    """Every complete trial within the study's limits whose figures come from training."""
    read = trial_summaries(study, (*ROW_ATTRS, "macs"))
    seeds = seed_table(study, read)
    space, classes = study_space(study), study_classes(study)
    rows = [
        trial_row(t, space, classes, metric_names=study.metric_names, seeds=seeds)
        for t in feasible_trained(study, read)
    ]
    return rows_frame(rows)


def rows_frame(rows: list[TrialRow]) -> pd.DataFrame:
    """Rows of ``analysis.results.trial_row`` as a DataFrame: objectives and seed spread as columns."""
    import pandas as pd  # here: the command line reads studies through this module, without pandas

    records = []
    for row in rows:
        record = {k: v for k, v in row.as_dict().items() if k not in ("values", "objectives", "seeds")}
        record["thesis"] = row.thesis or ""  # a column of strings, not None turned NaN
        record |= {name: value for name, value in row.objectives.items() if name not in record}
        seeds = row.seeds or {"count": 1, "val": {}}
        record["seeds"] = seeds["count"]
        for name in SHOWN_METRICS:
            spread = seeds["val"].get(name) if seeds["count"] > 1 else None
            record[f"val_{name}_mean"] = spread["mean"] if spread else record.get(f"val_{name}")
            record[f"val_{name}_sd"] = spread["sd"] if spread else None
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=None if records else ["trial"])
    return frame.set_index("trial")


def pick_trial(study: optuna.Study, trial: int | None = None, limits: dict[str, float] | None = None):
    """Trial ``trial`` by number, or (None) the best: the highest validation objective within
    ``limits`` (metric to largest value, e.g. ``{"size_mb": 1}``). ``UserError`` when there is none."""
    if trial is None:
        try:
            return best_trial(study, limits)
        except LookupError as exc:
            raise UserError(str(exc)) from None
    # Looked up by number, never used as a list index, where -18 would quietly pick a trial.
    found = trial_by_number(study, trial)
    if found is None:
        count = count_trials(study)
        have = f"trials 0..{count - 1}" if count else "no trials yet"
        negative = "; trial numbers start at 0" if trial < 0 else ""
        raise UserError(f"study {study.study_name!r} has no trial {trial} ({have}){negative}")
    return found


def export(
    study: optuna.Study, out: Path | str, *, trial: int | None = None, limits: dict[str, float] | None = None
) -> Path:
    """Write a trial's model directory (model.pt, model.onnx, model.json) from the model the
    trial stored; ``trial`` and ``limits`` as ``pick_trial``. Returns the directory."""
    chosen = pick_trial(study, trial, limits)
    try:
        return export_trial(study, chosen, Path(out), Path(study.user_attrs["artifact_dir"]))
    except LookupError as exc:
        raise UserError(str(exc)) from None
