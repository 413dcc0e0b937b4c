"""`ecgsearch confirm`: train chosen networks with more seeds, then show their spread."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich import box
from rich.console import Console
from rich.table import Table

from ecgsearch.analysis.results import feasible_trained, front_trials, seed_summary, seed_table, study_rows
from ecgsearch.analysis.seeds import CONFIRM_OF_ATTR, confirm_study_name, is_confirm_study, study_training_seed
from ecgsearch.commands.results import definition_of, load_existing_study, print_table
from ecgsearch.commands.run import LiveDisplay, RepeatedFailure
from ecgsearch.errors import UserError
from ecgsearch.metric_table import INT8_PREFIX
from ecgsearch.storage.optuna_internals import trial_by_number
from ecgsearch.storage.storage import StorageSettings
from ecgsearch.study.confirm_plan import confirm_jobs, enqueue_jobs
from ecgsearch.study.study import SearchContext, open_study
from ecgsearch.study.workspace import Workspace
from ecgsearch.trial_record import THESIS_ATTR, network_trial

__all__ = ["choose_trials", "confirm"]


def choose_trials(study: optuna.Study, *, front: bool, thesis: bool, trials: list[int]) -> list[int]:
    """Numbers of the trials to confirm: the front, the thesis configurations, listed ones (in that order)."""
    if not (front or thesis or trials):
        raise UserError("say which trials to confirm: --front, --thesis and/or --trial N")
    trained = {t.number: t for t in feasible_trained(study)}
    chosen: list[int] = []
    if front:
        chosen += [t.number for t in front_trials(study)]
    if thesis:
        chosen += [n for n, t in trained.items() if THESIS_ATTR in t.user_attrs]
    for number in trials:
        if number not in trained:
            raise UserError(
                f"trial {number} of study {study.study_name!r} cannot be confirmed: it is not a "
                f"trained feasible trial ({_why_not(study, number)})"
            )
        chosen.append(number)
    if not chosen:
        raise UserError(f"study {study.study_name!r} has no trained feasible trial to confirm yet")
    return list(dict.fromkeys(chosen))


def _why_not(study: optuna.Study, number: int) -> str:
    trial = next((t for t in study_rows(study) if t.number == number), None)
    if trial is None:
        return "no such trial"
    if "infeasible" in trial.user_attrs:
        return f"infeasible: {trial.user_attrs['infeasible']}"
    return f"state {trial.state.name}"


def confirm(
    workspace: Path,
    storage: str | None,
    study_name: str,
    *,
    seeds: int,
    front: bool,
    thesis: bool,
    trials: list[int],
    run_here: bool,
    settings: StorageSettings,
    console: Console,
) -> int:
    """Enqueue the runs that give the chosen trials ``seeds`` seeds each, run them unless told not to.

    Returns the exit code: 0, or 143 when SIGTERM stopped this process (its run is re-enqueued).
    """
    study, url = load_existing_study(workspace, storage, study_name)
    if is_confirm_study(study):
        raise UserError(
            f"{study_name!r} is a confirm study; give the study it confirms, {study.user_attrs[CONFIRM_OF_ATTR]!r}"
        )
    chosen = choose_trials(study, front=front, thesis=thesis, trials=trials)
    jobs = confirm_jobs(study_rows(study), chosen, seeds, study_training_seed(study))
    # Whole (with parameters): only the networks to train again.
    networks = [trial_by_number(study, n) for n in sorted({network for network, _ in jobs})]
    data_cache = Path(study.user_attrs["data_cache"])
    if not data_cache.exists():
        raise UserError(f"{data_cache}: the study's data cache is gone; confirmation retrains on it")
    context_workspace = Workspace(workspace)
    context_workspace.create()
    context = SearchContext(
        definition_of(study),
        context_workspace,
        url,
        confirm_study_name(study_name),
        data_cache,
        settings=settings,
        requested={"thesis": False},
    )
    confirmation = open_study(context)
    if not is_confirm_study(confirmation):
        confirmation.set_user_attr(CONFIRM_OF_ATTR, study_name)
    added = enqueue_jobs(confirmation, networks, jobs, url)
    console.print(
        f"study {study_name}: {len(chosen)} trial(s) ({len(networks)} network(s)) to confirm with {seeds} seeds each; "
        f"{len(added)} new run(s) enqueued in {confirmation.study_name} ({len(jobs) - len(added)} already done or "
        "queued)",
        highlight=False,
        soft_wrap=True,
    )
    code = 0
    if run_here:
        # Running ones too: one of a dead worker is retried here once its heartbeat is stale.
        pending = sum(
            t.state in (TrialState.WAITING, TrialState.RUNNING) for t in confirmation.get_trials(deepcopy=False)
        )
        display = LiveDisplay(console, pending, 0)
        # Here, not at the top: the worker brings the training stack (torch: seconds of imports),
        # which planning (`--no-run`) never needs.
        from ecgsearch.trials.worker import run_worker

        with display.progress:
            report = run_worker(context, study=confirmation, on_event=display)
        if report.systematic_failure is not None:
            raise RepeatedFailure(
                f"confirmation runs kept failing, so this process stopped: {report.systematic_failure}"
            )
        code = 143 if report.terminated else 0
    else:
        console.print(
            f"run them with workers: ecgsearch worker --study-name {confirmation.study_name} ...",
            highlight=False,
            soft_wrap=True,
        )
    print_table(console, spread_table(study, chosen))
    return code


def spread_table(study: optuna.Study, chosen: list[int]) -> Table:
    """Seeds and mean ± sd of validation micro AUROC and AUPRC of the chosen trials' networks.

    Int8 objectives (``val_int8_*``) get their own columns: the search ranked by them.
    """
    runs = seed_table(study)
    by_number = {t.number: t for t in study_rows(study)}
    int8 = [m.removeprefix("val_") for m in study.metric_names or [] if m.startswith(INT8_PREFIX)]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"Seed spread in {study.study_name}")
    for header in (
        "trial",
        "thesis",
        "seeds",
        "val µAUROC mean ± sd",
        "val µAUPRC mean ± sd",
        *(f"val {m} mean ± sd" for m in int8),
    ):
        table.add_column(header, justify="left" if header == "thesis" else "right", no_wrap=True)
    for number in chosen:
        trial = by_number[number]
        summary = seed_summary(runs.get(network_trial(trial), {}))
        cells = []
        for metric in ("micro_auroc", "micro_auprc", *int8):
            spread = summary["val"].get(metric)
            sd = "" if not spread or spread["sd"] is None else f" ± {spread['sd']:.4f}"
            cells.append(f"{spread['mean']:.4f}{sd}" if spread else "-")
        table.add_row(str(number), trial.user_attrs.get(THESIS_ATTR) or "", str(summary["count"]), *cells)
    return table
