"""K workers started by one command (`run --workers K`): exact totals, own identities, signals."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState
from search_helpers import (
    ECGSEARCH,
    ONE_THREAD,
    environment,
    load,
    running_trials,
    slow_definition,
    sqlite_url,
    wait_for,
)

from ecgsearch.trials.worker_group import _worst, run_group, worker_argv


@pytest.mark.parametrize(
    ("argv", "command", "expected"),
    [
        (["run", "--trials", "8", "--workers", "4"], "run", ["worker", "--trials", "8"]),
        (["worker", "--workers=2", "--study-name", "run"], "worker", ["worker", "--study-name", "run"]),
        # Only the subcommand is renamed: a study called "run" keeps its name.
        (["run", "--study-name", "run", "--workers", "2"], "run", ["worker", "--study-name", "run"]),
    ],
)
def test_a_group_member_runs_the_same_command_as_a_worker(argv, command, expected) -> None:
    assert worker_argv(argv, command) == expected


def test_the_group_exit_code_is_its_worst_member() -> None:
    assert _worst([0, 0]) == 0
    assert _worst([0, 143]) == 143
    assert _worst([143, 2, 0]) == 2
    assert _worst([0, -signal.SIGKILL]) == 137


def test_the_group_leaves_ctrl_c_to_its_workers_and_gives_each_its_slot_and_share() -> None:
    # A child's Ctrl-C must still interrupt it (an ignored signal would stay ignored after exec).
    check = ("import os, signal, sys; ok = signal.getsignal(signal.SIGINT) is signal.default_int_handler; "
             "sys.exit(0 if ok and os.environ['ECGSEARCH_GPU_SHARE'] == '0.300000' else 3 + int(os.environ["
             "'ECGSEARCH_WORKER_SLOT']))")  # fmt: skip
    assert run_group(["-c", check], 3, program=[sys.executable]) == 0
    assert run_group(["-c", "import sys; sys.exit(2)"], 2, program=[sys.executable]) == 2


def test_two_workers_of_one_run_share_the_study_exactly_and_sigterm_reaches_both(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "ws")
    cmd = [*ECGSEARCH, "run", "--study-def", str(slow_definition(tmp_path)), "--study-name", "group",
           "--trials", "3", "--workspace", str(tmp_path / "ws"), "--workers", "2"]  # fmt: skip
    env = environment(None, **ONE_THREAD)
    parent = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for((tmp_path / "ws" / "study.db").exists, 120, "the study")
        training = lambda: [t for t in running_trials(url, "group") if "identity" in t.user_attrs]  # noqa: E731
        wait_for(lambda: len(training()) == 2, 180, "both workers in a trial")
        parent.send_signal(signal.SIGTERM)
        output, _ = parent.communicate(timeout=120)
    finally:
        parent.kill()
    assert parent.returncode == 143, output
    stopped = [t for t in load(url, "group").get_trials() if t.state == TrialState.FAIL]
    # Each worker's running trial failed as terminated, and its retry waits.
    assert len(stopped) == 2 and all(t.user_attrs["fail_reason"] == "worker terminated (SIGTERM)" for t in stopped)
    assert {t.user_attrs["identity"]["worker"].rsplit("/", 1)[1] for t in stopped} == {"0", "1"}

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    trials = load(url, "group").get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3 and {t.state for t in trials} == {TrialState.COMPLETE, TrialState.FAIL}
    # Each process names itself: host, process and slot.
    workers = {t.user_attrs["identity"]["worker"] for t in complete}
    assert {w.rsplit("/", 1)[1] for w in workers} == {"0", "1"} and len(workers) == 2, workers
    assert "2 workers ended (exit code 0)" in again.stdout
