"""``[seeds] front = N``: a trial near the front trains N seeds and reports their mean (issue 24).

The decision is hand-checked; the studies are real (the tiny definition, SQLite in this process,
PostgreSQL with two worker processes).
"""

from __future__ import annotations

import statistics
import subprocess
import tomllib
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import ONE_THREAD, TINY, environment, load, sqlite_url, unique_name, worker_command

from ecgsearch.analysis.results import pareto_rows, seed_table
from ecgsearch.analysis.training_cost import training_cost
from ecgsearch.study.definition import DefinitionError, load_definition, parse_definition
from ecgsearch.study.front_seeds import near_front
from ecgsearch.study.study import SearchContext, open_study
from ecgsearch.study.workspace import Workspace
from ecgsearch.trials.worker import run_worker

UP_DOWN = ("maximize", "minimize")


def test_near_front_lifts_only_the_noisy_objectives_by_the_margin() -> None:
    front = [(0.80, 1.0), (0.70, 0.1)]
    assert near_front((0.90, 2.0), front, UP_DOWN, (True, False), 0.0)  # better AUROC: joins
    assert not near_front((0.75, 2.0), front, UP_DOWN, (True, False), 0.0)  # (0.80, 1.0) dominates it
    assert near_front((0.75, 2.0), front, UP_DOWN, (True, False), 0.06)  # within the margin of it
    assert not near_front((0.75, 2.0), front, UP_DOWN, (True, False), 0.04)
    # Size is not noise: a larger network is never lifted toward the front.
    assert not near_front((0.80, 1.5), front, UP_DOWN, (True, False), 0.0)
    assert not near_front((0.79, 1.0), front, UP_DOWN, (False, False), 0.5)
    assert near_front((0.5, 50.0), [], UP_DOWN, (True, False), 0.0)  # the first trial starts the front


def seeded_definition(tmp_path: Path, front: int, margin: float) -> Path:
    path = tmp_path / f"seeds-{front}-{margin}.toml"
    path.write_text(TINY.read_text() + f"\n[seeds]\nfront = {front}\nmargin = {margin}\n")
    return path


def assert_told_values_are_seed_means(study: optuna.Study, seeds: int) -> list[optuna.trial.FrozenTrial]:
    """Every trial that trained several seeds recorded each and reported their mean; returns them."""
    several = []
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        result = trial.user_attrs.get("result") or {}
        if "seeds" not in result or not trial.user_attrs["trained"]:
            continue
        several.append(trial)
        runs = result["seeds"]
        assert sorted(map(int, runs)) == list(range(seeds))  # the study's seed 0, then 1, 2, ...
        mean = statistics.fmean(run["val"]["micro_auroc"] for run in runs.values())
        assert trial.values[0] == pytest.approx(mean) == trial.user_attrs["val_micro_auroc"]
        assert len({run["val"]["micro_auroc"] for run in runs.values()}) == seeds  # the seeds trained apart
        assert len(trial.user_attrs["history"]) == 1  # the first seed's epochs
    return several


def test_every_trial_near_the_front_trains_its_seeds_and_reports_their_mean(tmp_path: Path) -> None:
    # A margin of a whole AUROC: every trained trial counts as near the front.
    definition = load_definition(seeded_definition(tmp_path, 3, 1.0))
    name = unique_name("seeds")
    context = SearchContext.prepare(definition, Workspace(tmp_path), sqlite_url(tmp_path),
                                    study_name=name, requested={"total": 3})  # fmt: skip
    events: list[dict] = []
    report = run_worker(context, on_event=events.append)
    assert report.trials_run == 3 and report.failed == 0
    study = load(sqlite_url(tmp_path), name)
    several = assert_told_values_are_seed_means(study, 3)
    trained = [t for t in study.get_trials() if t.user_attrs.get("trained")]
    assert several == trained and len(trained) >= 2
    assert sum(e["event"] == "front_seeds" for e in events) == len(trained)
    assert training_cost(study).epochs == 3 * len(trained)  # one epoch each, every seed counted
    # pareto and the report read the spread from the trial itself, with no confirm study.
    table = seed_table(study)
    for trial in trained:
        assert sorted(table[trial.number]) == [0, 1, 2]
    assert all(row.seeds["count"] == 3 for row in pareto_rows(study) if row.repeats_trial is None)


def test_a_trial_far_from_the_front_trains_once(tmp_path: Path) -> None:
    definition = load_definition(seeded_definition(tmp_path, 2, 0.0))
    name = unique_name("far")
    url = sqlite_url(tmp_path)
    context = SearchContext.prepare(definition, Workspace(tmp_path), url, study_name=name,
                                    requested={"total": 4, "thesis": False})  # fmt: skip
    # A network no trial can beat, already in the study (and counted in its total): every new
    # trial is far from the front.
    study = open_study(context)
    study.add_trial(optuna.create_trial(values=[0.999, 0.001], user_attrs={"val_micro_auroc": 0.999}))
    report = run_worker(context, study=study)
    assert report.trials_run == 3 and report.failed == 0, report
    trials = load(url, name).get_trials()[1:]
    assert len(trials) == 3 and all(t.user_attrs["trained"] for t in trials)
    assert all("seeds" not in t.user_attrs["result"] for t in trials)
    for trial in trials:  # trained once: one run in its log
        assert Path(trial.user_attrs["log"]).read_text().count("done in") == 1


def test_seeds_settings_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.read_text() + "\n[seeds]\nfront = 0\n")
    with pytest.raises(DefinitionError, match=r"seeds\.front"):
        load_definition(bad)
    assert load_definition(TINY).front_seeds.front == 1  # off unless asked for
    assert load_definition(seeded_definition(tmp_path, 3, 0.01)).fingerprint() != load_definition(TINY).fingerprint()


@pytest.mark.services
def test_two_workers_on_postgresql_record_every_seed_of_the_trials_near_the_front(
    postgres_url: str, tmp_path: Path
) -> None:
    name = unique_name("seedpair")
    command = worker_command(tmp_path, name, 4)
    command[command.index(str(TINY))] = str(seeded_definition(tmp_path, 2, 1.0))
    env = environment(postgres_url, **ONE_THREAD)
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]  # fmt: skip
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[1][-2000:] for o in outputs]
    study = load(postgres_url, name)
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    trained = [t for t in trials if t.user_attrs.get("trained")]
    assert assert_told_values_are_seed_means(study, 2) == trained and len(trained) >= 2
    assert len({t.user_attrs["identity"]["worker"] for t in trials}) == 2


def test_the_botorch_sampler_proposes_new_networks_with_qnehvi(monkeypatch) -> None:
    """qNEHVI (the botorch extra) behind the unseen-proposal wrapper: one model-based proposal
    after two random ones (each takes seconds of GP fitting on a CPU, so no more)."""
    import botorch.acquisition.multi_objective.logei as logei
    from optuna_integration.botorch import BoTorchSampler

    # botorch compiles an optional C++ kernel for this acquisition function on first use (about
    # 40 s on a fresh machine, then cached); its pure-Python twin computes the same thing.
    monkeypatch.setattr(logei, "_load_attempted", True)

    from ecgsearch.study.proposals import UnseenProposalSampler
    from ecgsearch.study.study import create_sampler

    # Two startup trials: the tiny definition's 4 would make this test minutes long.
    raw = tomllib.loads(TINY.read_text()) | {"sampler": {"name": "botorch", "n_startup_trials": 2}}
    definition = parse_definition(raw, "botorch.toml")
    sampler = create_sampler(definition, None, 0)
    assert isinstance(sampler, BoTorchSampler)
    study = optuna.create_study(directions=list(UP_DOWN))
    study.sampler = UnseenProposalSampler(sampler, definition.space, 0)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = definition.space.suggest(trial)
        return params["width_multiplier"], float(sum(params[f"blocks_{i}"] for i in range(1, 5)))

    study.optimize(objective, n_trials=3)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert len({str(sorted(t.params.items())) for t in study.trials}) == 3
