"""Several workers of one study in one place: K processes sharing a GPU (or one machine).

``ecgsearch run --workers K`` and each task of ``ecgsearch slurm submit --workers-per-gpu K``
start K ``ecgsearch worker`` processes with the command's own arguments. Each child knows its
slot (``ECGSEARCH_WORKER_SLOT``), which names it in the trials it runs, and its share of the
GPU's memory (``ECGSEARCH_GPU_SHARE``, 0.9/K) and of the CPUs (``OMP_NUM_THREADS``, unless
set). The study's guarantees are the workers' own (an exact total, retries, no network trained
twice): K processes on one GPU are K workers.

The parent trains nothing. A SIGTERM or Slurm's time-limit warning (SIGUSR1) it gets goes to
every child; Ctrl-C reaches the children from the terminal. Its exit code is the worst child's
(143 when SIGTERM stopped one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from ecgsearch.study.study import SLOT_ENV

__all__ = ["GPU_SHARE_ENV", "claim_gpu_share", "run_group", "worker_argv"]

GPU_SHARE_ENV = "ECGSEARCH_GPU_SHARE"
WORKERS_FLAG = "--workers"
# Of a GPU's memory, what K workers' caps share: each CUDA context (some 300-500 MB) and cuDNN's
# workspaces lie outside a process's cap.
GPU_MEMORY_USABLE = 0.9


def claim_gpu_share() -> float | None:
    """Cap this process's CUDA memory at its group share (``ECGSEARCH_GPU_SHARE``); returns the share.

    Without the cap, one worker's caching allocator keeps what a large network once took and
    the other K - 1 run out of memory. None where no share is set or there is no GPU.
    """
    text = os.environ.get(GPU_SHARE_ENV)
    if not text:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    share = float(text)
    torch.cuda.set_per_process_memory_fraction(share)
    return share


def worker_argv(argv: Sequence[str], command: str) -> list[str]:
    """``argv`` (this process's arguments, after the program) as one group member's: the
    subcommand ``command`` becomes ``worker`` and ``--workers`` goes."""
    out: list[str] = []
    renamed, skip = False, False
    for arg in argv:
        if skip:
            skip = False
        elif arg == WORKERS_FLAG:
            skip = True
        elif arg.startswith(WORKERS_FLAG + "="):
            continue
        elif arg == command and not renamed:
            out.append("worker")
            renamed = True
        else:
            out.append(arg)
    if not renamed:
        raise ValueError(f"{command!r} is not among the arguments {list(argv)}")
    return out


def run_group(worker_args: Sequence[str], count: int, *, program: Sequence[str] | None = None) -> int:
    """Run ``count`` workers (``ecgsearch <worker_args>``) to their end; returns the worst exit code.

    ``program``: how to start ecgsearch (default: this interpreter, ``-m ecgsearch.cli``).
    """
    program = list(program or [sys.executable, "-m", "ecgsearch.cli"])
    children: list[subprocess.Popen] = []

    def forward(signum: int, frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGUSR1)}
    # Ctrl-C reaches every process in the terminal's group; the parent waits for its children.
    # A handler that does nothing, not SIG_IGN: an ignored signal stays ignored in a child.
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, _wait_for_children)
    try:
        # The CPUs are shared too: K torch thread pools as wide as the machine spin against
        # each other. A Slurm task's script sets the threads per worker itself.
        threads = {"OMP_NUM_THREADS": str(max(1, len(os.sched_getaffinity(0)) // count))}
        for slot in range(count):
            env = {**threads, **os.environ, SLOT_ENV: str(slot), GPU_SHARE_ENV: f"{GPU_MEMORY_USABLE / count:.6f}"}
            children.append(subprocess.Popen([*program, *worker_args], env=env))
        codes = [child.wait() for child in children]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return _worst(codes)


def _wait_for_children(signum: int, frame: Any) -> None:
    return None


def _worst(codes: list[int]) -> int:
    """The group's exit code: a failure (not 0 or 143) first, then 143 (SIGTERM), else 0."""
    # A child killed by a signal has a negative code: the shell's 128 + signal number.
    codes = [128 - code if code < 0 else code for code in codes]
    failures = [code for code in codes if code not in (0, 143)]
    if failures:
        return failures[0]
    return 143 if 143 in codes else 0
