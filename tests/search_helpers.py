"""Helpers for the search tests: a tiny study definition and worker subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

TINY = Path(__file__).parent / "fixtures" / "studies" / "tiny.toml"
ECGSEARCH = [sys.executable, "-m", "ecgsearch.cli"]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def worker_command(workspace: Path, study_name: str, trials: int, *extra: str) -> list[str]:
    return [*ECGSEARCH, "worker", "--study-def", str(TINY), "--study-name", study_name, "--trials", str(trials),
            "--workspace", str(workspace), *extra]  # fmt: skip


# For workers that run side by side on a 2-core machine: one thread each (two 2-thread OpenMP
# pools spinning against each other make every epoch 5-10x slower).
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def environment(storage_url: str | None, **extra: str) -> dict[str, str]:
    """The worker's environment: storage from ECGSEARCH_STORAGE (never on the command line)."""
    env = {k: v for k, v in os.environ.items() if k != "ECGSEARCH_STORAGE"}
    if storage_url:
        env["ECGSEARCH_STORAGE"] = storage_url
    env.update(extra)
    return env


def run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def sqlite_url(workspace: Path) -> str:
    """The URL of a workspace's SQLite study database (where ecgsearch puts it by default)."""
    return f"sqlite:///{workspace / 'study.db'}"


def sqlite_study(workspace: Path, name: str) -> optuna.Study:
    """Study ``name`` of a workspace's SQLite database."""
    return optuna.load_study(study_name=name, storage=sqlite_url(workspace))


def edited(text: str, *changes: tuple[str, str]) -> str:
    """``text`` with each ``(old, new)`` replaced; a test fails here when ``old`` is not in it."""
    for old, new in changes:
        assert old in text, f"{old!r} is not in the text being edited"
        text = text.replace(old, new)
    return text


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def running_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return load(url, name).get_trials(states=(TrialState.RUNNING,))
    except (KeyError, sqlalchemy.exc.OperationalError):  # not created yet, or its tables half made
        return []


def slow_definition(tmp_path: Path) -> Path:
    """The tiny study with trials long enough (a few seconds) to be killed in the middle."""
    path = tmp_path / "slow.toml"
    path.write_text(edited(TINY.read_text(), ("epochs = 1", "epochs = 6"), ("window = 512", "window = 1024")))
    return path


def ecgsearch(capsys, monkeypatch, *args: object) -> tuple[int, str, str]:
    """The console script in this process (a new interpreter costs seconds of imports): code, stdout, stderr."""
    from ecgsearch.cli import main

    monkeypatch.delenv("ECGSEARCH_STORAGE", raising=False)
    capsys.readouterr()  # what the test printed before is not this command's output
    monkeypatch.setattr(sys, "argv", ["ecgsearch", *map(str, args)])
    with pytest.raises(SystemExit) as ended:
        main()
    captured = capsys.readouterr()
    return int(ended.value.code or 0), captured.out, captured.err
