"""Every trial counts: repeated proposals become unseen networks (issue 13), alone and with two workers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import ONE_THREAD, TINY, edited, environment, load, sqlite_url, unique_name, worker_command

from ecgsearch.study.definition import load_definition
from ecgsearch.study.proposals import PROPOSAL_ATTR, UnseenProposalSampler, history_window, network_key

SPACE = load_definition(TINY).space
FAVOURITE = {"blocks_1": 1, "blocks_2": 1, "blocks_3": 1, "blocks_4": 1, "width_multiplier": 0.125,
             "conv_type": "standard", "se": False, "bn1": True, "bn2": True, "conv2": True, "stem": "7/3",
             "block_kernel": 7, "metadata_features": 10, "dropout": 0.2}  # fmt: skip


def always_the_favourite() -> optuna.samplers.BaseSampler:
    """A sampler as stubborn as TPE on a categorical space: it proposes one point, always."""
    return optuna.samplers.PartialFixedSampler(FAVOURITE, optuna.samplers.RandomSampler(seed=0))


def run_trials(sampler: optuna.samplers.BaseSampler, n: int) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(lambda trial: (0.5, 1.0) if SPACE.suggest(trial) else (0.0, 0.0), n_trials=n)
    return study


def test_a_repeated_proposal_becomes_an_unseen_neighbour() -> None:
    plain = run_trials(always_the_favourite(), 6)
    assert len({network_key(SPACE, t.params) for t in plain.trials}) == 1  # the problem: one network, six times
    study = run_trials(UnseenProposalSampler(always_the_favourite(), SPACE, seed=0), 12)
    keys = [network_key(SPACE, t.params) for t in study.trials]
    assert len(set(keys)) == 12
    assert study.trials[0].params == FAVOURITE and PROPOSAL_ATTR not in study.trials[0].user_attrs
    for trial in study.trials[1:]:
        changed = trial.user_attrs[PROPOSAL_ATTR]
        assert changed and all(trial.params[name] != FAVOURITE[name] for name in changed)
        assert {n for n in FAVOURITE if trial.params[n] != FAVOURITE[n]} == set(changed)
    # Neighbours first: the early replacements differ from the favourite in one parameter.
    assert [len(t.user_attrs[PROPOSAL_ATTR]) for t in study.trials[1:6]] == [1] * 5


def test_a_large_study_is_seen_through_its_best_and_latest_trials() -> None:
    maximize, minimize = optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE
    trials = [optuna.trial.create_trial(values=[n / 100, 1.0]) for n in range(60)]  # later is better
    trials[3] = optuna.trial.create_trial(values=[2.0, 0.5])  # an early best: dominates every other
    trials.append(optuna.trial.create_trial(state=TrialState.RUNNING))
    trials.append(optuna.trial.create_trial(state=TrialState.FAIL))
    for number, trial in enumerate(trials):
        trial.number = number
    assert history_window(trials, [maximize, minimize], best=5, recent=100) == trials  # small: seen whole
    window = history_window(trials, [maximize, minimize], best=2, recent=10)
    # The best two (trial 3, then 59), the ten latest finished (51-59 and the failed 61), the running 60.
    assert [t.number for t in window] == [3, *range(51, 62)]


def test_enqueued_trials_keep_their_parameters_even_when_repeated() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=UnseenProposalSampler(always_the_favourite(), SPACE, seed=0))  # fmt: skip
    for _ in range(2):
        study.enqueue_trial(FAVOURITE)
    study.optimize(lambda trial: (0.5, 1.0) if SPACE.suggest(trial) else (0.0, 0.0), n_trials=3)
    assert [t.params == FAVOURITE for t in study.trials] == [True, True, False]


def test_an_exhausted_space_lets_the_repeat_stand(tmp_path: Path) -> None:
    narrow = load_definition(TINY).space
    narrow = type(narrow)(1, 1, {**narrow.choices, **{name: (FAVOURITE[name],) for name in narrow.choices
                                                       if name != "se"}})  # fmt: skip
    sampler = UnseenProposalSampler(optuna.samplers.RandomSampler(seed=1), narrow, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(lambda trial: (0.5, 1.0) if narrow.suggest(trial) else (0.0, 0.0), n_trials=4)
    keys = [network_key(narrow, t.params) for t in study.trials]
    assert len(set(keys)) == 2 and len(keys) == 4  # two networks exist; the rest are repeats


def six_network_definition(tmp_path: Path) -> Path:
    """Six networks in all (SE x stem), random sampling: six draws nearly always repeat one (98.5%)."""
    text = edited(
        TINY.read_text(),
        ('name = "tpe"', 'name = "random"'),
        ("n_startup_trials = 4\n", ""),
        ("blocks = { low = 1, high = 2 }", "blocks = { low = 1, high = 1 }"),
        ("width_multiplier = [0.5, 0.25, 0.125]", "width_multiplier = [0.125]"),
        ('conv_type = ["standard", "depthwise_separable"]', 'conv_type = ["standard"]'),
        ("bn2 = [true, false]", "bn2 = [true]"),
        ("conv2 = [true, false]", "conv2 = [true]"),
        ('stem = ["15/7", "7/3"]', 'stem = ["15/7", "7/3", "7/7"]'),
        ('fixed_trials = ["E18", "E16"]', "fixed_trials = []"),
    )
    path = tmp_path / "six.toml"
    path.write_text(text)
    return path


def two_workers_fill_six_networks(tmp_path: Path, storage_url: str | None) -> optuna.Study:
    name = unique_name("six")
    definition = six_network_definition(tmp_path)
    cmd = [str(definition) if part == str(TINY) else part for part in worker_command(tmp_path, name, 6)]
    env = environment(storage_url, **ONE_THREAD)
    workers = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]  # fmt: skip
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    last = max(outputs, key=lambda o: o[0].count("trial "))[0]
    assert "0 of " in last and "complete trials repeat an earlier network" in last  # run's closing summary
    return load(storage_url or sqlite_url(tmp_path), name)


def assert_six_different_networks(study: optuna.Study) -> None:
    trials = study.get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    # The six-network space varies SE and the stem only, so different parameters are different networks.
    keys = {json.dumps(t.params, sort_keys=True) for t in trials}
    assert len(keys) == 6 and not [t for t in trials if "repeats_trial" in t.user_attrs]


def test_two_workers_on_sqlite_never_make_the_same_network(tmp_path: Path) -> None:
    assert_six_different_networks(two_workers_fill_six_networks(tmp_path, None))


@pytest.mark.services
def test_two_workers_on_postgresql_never_make_the_same_network(postgres_url: str, tmp_path: Path) -> None:
    assert_six_different_networks(two_workers_fill_six_networks(tmp_path, postgres_url))
