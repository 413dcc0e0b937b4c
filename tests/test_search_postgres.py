"""Many workers on one real PostgreSQL study: exact counts, one trial per E-name, kills and retries."""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from search_helpers import (
    ONE_THREAD,
    TINY,
    edited,
    environment,
    load,
    running_trials,
    slow_definition,
    unique_name,
    wait_for,
    worker_command,
)

pytestmark = pytest.mark.services

SHORT_HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", "3", "--max-retries", "1"]


def test_two_workers_fill_one_study_to_exactly_its_trial_count_and_keep_every_rung_record(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two workers under early stopping (3 epochs, rungs 1 and 2, eta 2): stopped trials count toward
    the total, and every rung a trial reached is recorded with its figures, whatever the other did."""
    name = unique_name("pair")
    definition = tmp_path / "pair.toml"
    definition.write_text(edited(TINY.read_text(), ("epochs = 1", "epochs = 3"))
                          + "\n[early_stopping]\nrungs = [1, 2]\neta = 2\nmin_trials = 2\n")  # fmt: skip
    env = environment(postgres_url, **ONE_THREAD)
    command = [*worker_command(tmp_path, name, 8)]
    command[command.index(str(TINY))] = str(definition)
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]  # fmt: skip
    outputs = [w.communicate(timeout=600) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[1][-2000:] for o in outputs]
    trials = load(postgres_url, name).get_trials()
    assert len(trials) == 8 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert all("trial " in out for out, _ in outputs)  # both workers ran trials
    assert len({t.user_attrs["identity"]["worker"] for t in trials}) == 2
    assert sorted(t.user_attrs.get("thesis_experiment", "") for t in trials).count("E18") == 1
    assert postgres_url.split(":")[2].split("@")[0] not in "".join(o + e for o, e in outputs)  # no password shown
    for t in trials:
        if "repeats_trial" in t.user_attrs or "repeats_stopped_trial" in t.user_attrs.get("stopped", {}):
            continue
        history = t.user_attrs["history"]
        for rung in (1, 2):  # every rung the trial trained through has its record, with that epoch's figures
            if len(history) >= rung:
                assert t.user_attrs[f"rung_{rung}"] == [history[rung - 1]["micro_auroc"], t.user_attrs["size_mb"]]
        if t.user_attrs.get("thesis_experiment"):
            assert t.state == TrialState.COMPLETE and len(history) == 3  # protected
        if t.state == TrialState.PRUNED:
            rung = t.user_attrs["stopped"]["rung"]
            assert len(history) == rung
            # It ranked outside the best half of the records it read, all of which are still there.
            ranked = re.search(r"ranked (\d+) of (\d+)", t.user_attrs["stopped"]["reason"])
            position, reached = int(ranked[1]), int(ranked[2])
            assert position > math.ceil(reached / 2) and 2 <= reached
            assert reached <= sum(f"rung_{rung}" in o.user_attrs for o in trials)


def _enqueue_after_barrier(barrier, url: str, workspace: str, name: str) -> None:
    from ecgsearch.study.definition import load_definition
    from ecgsearch.study.study import SearchContext, enqueue_thesis, open_study
    from ecgsearch.study.workspace import Workspace

    context = SearchContext.prepare(load_definition("demo"), Workspace(Path(workspace)), url, study_name=name)
    study = open_study(context)
    barrier.wait()
    enqueue_thesis(study, context)


def test_eight_concurrent_enqueue_thesis_calls_create_one_trial_per_e_name(postgres_url: str, tmp_path: Path) -> None:
    name = unique_name("enqueue")
    from ecgsearch.study.workspace import Workspace

    Workspace(tmp_path).create().synthetic_cache(400, 0)  # prepared once, before the race
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(8)
    processes = [spawn.Process(target=_enqueue_after_barrier, args=(barrier, postgres_url, str(tmp_path), name))
                 for _ in range(8)]  # fmt: skip
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=180)
    assert [p.exitcode for p in processes] == [0] * 8
    names = [t.user_attrs["thesis_experiment"] for t in load(postgres_url, name).get_trials()]
    assert sorted(names) == sorted(f"E{i}" for i in range(1, 19))


def test_a_worker_killed_mid_trial_leaves_a_failed_trial_that_is_retried(postgres_url: str, tmp_path: Path) -> None:
    name = unique_name("kill")
    env = environment(postgres_url)
    slow = slow_definition(tmp_path)
    # One trial: the killed one's retry completes the study (failed trials are replaced by their retries).
    cmd = [str(slow) if part == str(TINY) else part for part in worker_command(tmp_path, name, 1, "--no-thesis")]
    victim = subprocess.Popen([*cmd, *SHORT_HEARTBEAT], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: running_trials(postgres_url, name), 120, "a running trial")
    killed = running_trials(postgres_url, name)[0]
    time.sleep(0.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(4)  # past the grace period: the next worker fails the stale trial and retries it
    survivor = subprocess.run([*cmd, *SHORT_HEARTBEAT], env=env, capture_output=True, text=True, timeout=600)
    assert survivor.returncode == 0, survivor.stderr[-2000:]
    trials = load(postgres_url, name).get_trials()
    assert trials[killed.number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    # The stored attempt, not the snapshot: the snapshot can precede the last of its suggestions.
    # A kill between two suggestions leaves the attempt some parameters; the retry keeps them all.
    assert retries[0].params.items() >= trials[killed.number].params.items()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 1


def test_sigterm_fails_and_reenqueues_the_running_trial(postgres_url: str, tmp_path: Path) -> None:
    name = unique_name("term")
    env = environment(postgres_url)
    slow = slow_definition(tmp_path)
    cmd = [str(slow) if part == str(TINY) else part for part in worker_command(tmp_path, name, 1, "--no-thesis")]
    worker = subprocess.Popen([*cmd, *SHORT_HEARTBEAT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    wait_for(lambda: running_trials(postgres_url, name), 120, "a running trial")
    terminated = running_trials(postgres_url, name)[0]
    time.sleep(0.5)
    os.kill(worker.pid, signal.SIGTERM)
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 143, stderr[-2000:]
    trials = load(postgres_url, name).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert trials[terminated.number].state == TrialState.FAIL
    assert trials[terminated.number].user_attrs["fail_reason"] == "worker terminated (SIGTERM)"
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    # The stored attempt, not the snapshot: the snapshot can precede the last of its suggestions.
    assert len(waiting) == 1 and waiting[0].params == trials[terminated.number].params
    finish = subprocess.run([*cmd, *SHORT_HEARTBEAT], env=env, capture_output=True, text=True, timeout=600)
    assert finish.returncode == 0, finish.stderr[-2000:]
    trials = load(postgres_url, name).get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 1
    assert any(t.system_attrs.get("failed_trial") == terminated.number and t.state == TrialState.COMPLETE
               for t in trials)  # fmt: skip
