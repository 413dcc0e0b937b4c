"""Reading a finished (or running) study: the Pareto front, picking and exporting a model."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ecgnet.data.labels import class_set
from ecgnet.metric_names import HEADLINE_METRICS, INT8_METRICS
from ecgsearch.analysis.seeds import confirmation_trials, seed_runs, study_training_seed, summarize
from ecgsearch.analysis.training_cost import stopped_at_rungs
from ecgsearch.storage.optuna_internals import pareto_front, trial_by_number, trial_summaries
from ecgsearch.storage.optuna_internals import trial_row as stored_trial
from ecgsearch.study.proposals import PROPOSAL_ATTR
from ecgsearch.study.space import SearchSpace
from ecgsearch.trial_record import ROW_ATTRS, THESIS_ATTR, is_trained, network_trial

__all__ = [
    "TrialRow",
    "best_trial",
    "export_trial",
    "feasible_trained",
    "front_trials",
    "pareto_rows",
    "ranking_metric",
    "repeat_counts",
    "repeats_line",
    "seed_summary",
    "seed_table",
    "spread_text",
    "study_rows",
    "trial_row",
    "within_limits",
]

# The validation figures every row shows (the study's objectives are shown besides).
SHOWN_METRICS = ("micro_auroc", "macro_auroc", "micro_auprc", "macro_auprc")


def study_rows(study: optuna.Study) -> list[FrozenTrial]:
    """Every trial with its values and ``ROW_ATTRS`` only (``trial_summaries``: no parameters)."""
    return trial_summaries(study, ROW_ATTRS)


def feasible_trained(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> list[FrozenTrial]:
    """The ``is_trained`` trials: complete, within every limit, with values from training.

    From ``trials`` when given, else ``study_rows``: values and ``ROW_ATTRS`` only; read a trial
    whole (``optuna_internals.trial_row``) for more.
    """
    return [t for t in (study_rows(study) if trials is None else trials) if is_trained(t)]


@dataclasses.dataclass(frozen=True)
class TrialRow:
    """One trial as ``pareto``, the report and the Python API show it; ``as_dict()`` is its JSON.

    The validation columns are ``SHOWN_METRICS`` (tested); ``objectives`` names the trial's values
    with the study's metric names; ``seeds`` is the spread over the seeds its network ran with
    (``seed_summary``), None where seeds were not read.
    """

    trial: int
    thesis: str | None
    val_micro_auroc: float | None
    val_macro_auroc: float | None
    val_micro_auprc: float | None
    val_macro_auprc: float | None
    test_micro_auroc: float | None
    test_micro_auprc: float | None
    size_mb: float | None
    params: int | None
    macs: int | None
    latency_ms: float | None
    int8_size_mb: float | None
    repeats_trial: int | None
    values: list[float]
    objectives: dict[str, float]
    seeds: dict[str, Any] | None

    def figure(self, metric: str) -> float | None:
        """A column's value, or for an objective without a column of its own, its value."""
        if metric in _ROW_FIELDS:
            return getattr(self, metric)
        return self.objectives.get(metric)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_ROW_FIELDS = frozenset(field.name for field in dataclasses.fields(TrialRow))


def trial_row(
    trial: FrozenTrial,
    space: SearchSpace,
    num_classes: int = 17,
    *,
    metric_names: list[str] | None = None,
    seeds: dict[int, dict] | None = None,
    macs: bool = True,
) -> TrialRow:
    """One trial as the pareto table and report show it (MACs only when asked: older trials lack them).

    ``seeds``: the runs of the trial's network per seed (``seed_table``), summarised as mean and
    sd over seeds; ``metric_names``: the study's, naming the trial's values in ``objectives``.
    """
    attrs = trial.user_attrs
    result = attrs.get("result", {})
    values = list(trial.values or [])
    return TrialRow(
        trial=trial.number,
        thesis=attrs.get(THESIS_ATTR),
        val_micro_auroc=attrs.get("val_micro_auroc"),
        **{f"val_{name}": result.get("val", {}).get(name) for name in SHOWN_METRICS if name != "micro_auroc"},
        test_micro_auroc=attrs.get("test_micro_auroc"),
        test_micro_auprc=result.get("test", {}).get("micro_auprc"),
        size_mb=attrs.get("size_mb"),
        params=attrs.get("identity", {}).get("params"),
        macs=_macs(trial, space, num_classes) if macs else None,
        latency_ms=attrs.get("latency_ms"),
        int8_size_mb=attrs.get("int8_size_mb"),
        repeats_trial=attrs.get("repeats_trial"),
        values=values,
        objectives=dict(zip(metric_names, values, strict=False)) if metric_names else {},
        seeds=seed_summary(seeds.get(network_trial(trial), {})) if seeds is not None else None,
    )


def _macs(trial: FrozenTrial, space: SearchSpace, num_classes: int) -> int:
    """The MACs the trial recorded, else counted (studies from before every trial recorded them)."""
    if "macs" in trial.user_attrs:
        return int(trial.user_attrs["macs"])
    from ecgnet.size import describe_size  # torch: only for a study that lacks the figure

    return describe_size(space.arch_of(trial.params, num_classes=num_classes), macs=True).macs


def seed_table(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> dict[int, dict[int, dict]]:
    """Every trained network's runs per seed: the study's own (``trials``, by default ``study_rows``)
    and those ``ecgsearch confirm`` added."""
    own = study_rows(study) if trials is None else trials
    return seed_runs(own, confirmation_trials(study), study_training_seed(study))


def seed_summary(runs: dict[int, dict]) -> dict[str, Any]:
    """Mean and sd over seeds of each validation and test figure (sd None below two seeds)."""
    seeds = sorted(runs)
    summary: dict[str, Any] = {"count": len(seeds), "seeds": seeds}
    names = {"val": HEADLINE_METRICS + tuple(f"int8_{name}" for name in INT8_METRICS), "test": HEADLINE_METRICS}
    for subset in ("val", "test"):
        summary[subset] = {
            name: summarize([runs[s][subset][name] for s in seeds]).to_dict()
            for name in names[subset]
            if seeds and all(runs[s][subset].get(name) is not None for s in seeds)
        }
    return summary


def study_space(study: optuna.Study) -> SearchSpace:
    """The search space the study recorded in its definition."""
    return SearchSpace.from_dict(study.user_attrs["definition"]["space"])


def study_classes(study: optuna.Study) -> int:
    return len(class_set(study.user_attrs["definition"].get("data", {}).get("class_set", "thesis17")))


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front as Optuna's ``best_trials`` finds it (constraints kept), less infeasible trials, by size.

    The front is found on narrow summaries of every trial; only its own trials are read whole.
    """
    summaries = trial_summaries(study, ("infeasible",))
    front = [t for t in pareto_front(summaries, study.directions) if "infeasible" not in t.user_attrs]
    whole = [stored_trial(study, t) for t in front]
    return sorted(whole, key=lambda t: (t.user_attrs.get("size_mb") or 0, t.number))


def pareto_rows(study: optuna.Study, seeds: dict[int, dict] | None = None, *, macs: bool = True) -> list[TrialRow]:
    """The rows of the Pareto front (``front_trials``), with seed summaries.

    ``seeds``: a ``seed_table`` already read; by default the runs of the front's networks only.
    """
    front = front_trials(study)
    if seeds is None:
        read = {t.number: t for t in front}
        for number in {network_trial(t) for t in front} - read.keys():  # the trials front repeats reuse
            if (trial := trial_by_number(study, number)) is not None:
                read[number] = trial
        seeds = seed_runs(list(read.values()), confirmation_trials(study), study_training_seed(study))
    space, classes = study_space(study), study_classes(study)
    return [trial_row(t, space, classes, metric_names=study.metric_names, seeds=seeds, macs=macs) for t in front]


def spread_text(row: TrialRow | None, metric: str, *, count: bool = False) -> str:
    """A row's validation ``metric``: ``mean ± sd`` over seeds when it has several (`` (n)`` with
    ``count``), else the trial's own value; ``-`` when there is none."""
    if row is None:
        return "-"
    spread = row.seeds["val"].get(metric.removeprefix("val_")) if row.seeds["count"] > 1 else None
    if spread:
        return f"{spread['mean']:.4f} ± {spread['sd']:.4f}" + (f" ({spread['n']})" if count else "")
    value = row.figure(metric)
    return "-" if value is None else f"{value:.4f}"


def repeat_counts(study: optuna.Study) -> dict[str, int]:
    """Complete trials, those that repeat an earlier network (result reused), proposals made new, stopped trials."""
    trials = trial_summaries(study, ("repeats_trial", PROPOSAL_ATTR))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return {
        "complete": len(complete),
        "repeats": sum("repeats_trial" in t.user_attrs for t in complete),
        "changed_proposals": sum(PROPOSAL_ATTR in t.user_attrs for t in trials),
        "stopped": sum(t.state == TrialState.PRUNED for t in trials),
    }


def repeats_line(study: optuna.Study) -> str:
    """One sentence on repeats, for run, pareto and the report."""
    counts = repeat_counts(study)
    stopped = ""
    if counts["stopped"]:
        stopped_trials = [t for t in trial_summaries(study, ("stopped",)) if t.state == TrialState.PRUNED]
        rungs = stopped_at_rungs(stopped_trials)
        where = ", ".join(
            f"{n} at epoch {rung}" if rung is not None else f"{n} as a repeat of a stopped network"
            for rung, n in rungs.items()
        )
        stopped = f"; {counts['stopped']} trials were stopped early ({where})"
    return (
        f"{counts['repeats']} of {counts['complete']} complete trials repeat an earlier network (its result is "
        f"reused); {counts['changed_proposals']} repeated proposals were changed into unseen networks"
        f"{stopped}"
    )


def within_limits(limits: dict[str, float]) -> str:
    """The budgets a choice was made under, as text: " within 1 MB, latency_ms 5" ("" without limits)."""
    if not limits:
        return ""
    return " within " + ", ".join(f"{v:g} MB" if n == "size_mb" else f"{n} {v:g}" for n, v in limits.items())


def ranking_metric(study: optuna.Study) -> str:
    """What ``--best`` ranks by: the study's first maximised validation objective, else val_micro_auroc.

    val_micro_auroc in the shipped studies; val_int8_micro_auroc in a study that searched for the
    best int8 model, so that its best is the best int8 model.
    """
    names = study.metric_names or []
    directions = [d.name.lower() for d in study.directions]
    maximised = [m for m, d in zip(names, directions, strict=False) if d == "maximize" and m.startswith("val_")]
    return maximised[0] if maximised else "val_micro_auroc"


def best_trial(study: optuna.Study, limits: dict[str, float] | None = None) -> FrozenTrial:
    """Highest ``ranking_metric`` among feasible trained trials within ``limits`` (metric to largest value).

    A limit on a figure the study did not measure (e.g. latency_ms in a study that never timed
    its networks) is a LookupError naming it.
    """
    limits = limits or {}
    metric = ranking_metric(study)
    index = (study.metric_names or []).index(metric) if metric in (study.metric_names or []) else None

    def value(trial: FrozenTrial) -> float | None:
        return trial.values[index] if index is not None else trial.user_attrs.get(metric)

    candidates = feasible_trained(study)
    for name, limit in limits.items():
        if candidates and all(t.user_attrs.get(name) is None for t in candidates):
            raise LookupError(
                f"study {study.study_name!r} did not measure {name} for its trials, so a limit "
                "on it cannot be checked (a study measures it when an objective or --max "
                "names it)"
            )
        candidates = [t for t in candidates if t.user_attrs.get(name) is not None and t.user_attrs[name] <= limit]
    if not candidates:
        raise LookupError(f"study {study.study_name!r} has no trained feasible trial{within_limits(limits)}")
    return stored_trial(study, max(candidates, key=lambda t: (value(t), -t.number)))


def export_trial(study: optuna.Study, trial: FrozenTrial, out: Path, artifact_dir: Path) -> Path:
    """Write a trial's model directory (model.pt, model.onnx, model.json) from its artifacts."""
    # Here, not at the top: reading a study (pareto, report) needs neither ONNX nor the signal library.
    from ecgnet.data.preprocess import PreprocessConfig
    from ecgnet.export import export_model, load_model

    artifacts = trial.user_attrs.get("artifacts", {})
    model_id, info_id = artifacts.get("model.pt"), artifacts.get("model.json")
    if model_id is None or info_id is None:
        raise LookupError(f"trial {trial.number} has no stored model (it was not trained)")
    store = optuna.artifacts.FileSystemArtifactStore(str(artifact_dir))
    with tempfile.TemporaryDirectory() as tmp:
        for artifact_id, name in ((model_id, "model.pt"), (info_id, "model.json")):
            optuna.artifacts.download_artifact(
                artifact_store=store, file_path=str(Path(tmp) / name), artifact_id=artifact_id
            )
        model, info = load_model(tmp)
    classes = class_set(info["classes"]["name"])
    keep = {k: v for k, v in info.items() if k in ("training", "history", "data", "trial", "study")}
    keep["exported_from"] = {"study": study.study_name, "trial": trial.number}
    return export_model(
        model,
        out,
        classes=classes,
        preprocess=PreprocessConfig(**info["preprocess"]),
        metrics=info["metrics"],
        thresholds=info["thresholds"],
        extra=keep,
    )
