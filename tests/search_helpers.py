"""Helpers for the search tests: a tiny study definition and worker subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

TINY = Path(__file__).parent / "fixtures" / "studies" / "tiny.toml"
ECGSEARCH = [sys.executable, "-m", "ecgsearch.cli"]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def worker_command(workspace: Path, study_name: str, trials: int, *extra: str) -> list[str]:
    return [*ECGSEARCH, "worker", "--study-def", str(TINY), "--study-name", study_name, "--trials", str(trials),
            "--workspace", str(workspace), *extra]  # fmt: skip


def environment(storage_url: str | None, **extra: str) -> dict[str, str]:
    """The worker's environment: storage from ECGSEARCH_STORAGE (never on the command line)."""
    env = {k: v for k, v in os.environ.items() if k != "ECGSEARCH_STORAGE"}
    if storage_url:
        env["ECGSEARCH_STORAGE"] = storage_url
    env.update(extra)
    return env


def run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
