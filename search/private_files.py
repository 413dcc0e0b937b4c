"""What ecgsearch creates belongs to the user alone, unless they share it with their group.

Caches hold patients' signals, ages and sexes; on a cluster's shared file system the usual
umask (022) would let every user copy them. The process umask is set once, at the command
line's entry, so every file and folder (SQLite database, caches, artifacts, logs, exported
models, Slurm logs: sbatch hands the umask on to the job) is created 0600/0700, or 0640/0750
with ``--group-readable``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["GROUP_READABLE_ENV", "private_files", "warn_if_open"]

GROUP_READABLE_ENV = "ECGSEARCH_GROUP_READABLE"
PRIVATE_UMASK = 0o077
GROUP_READABLE_UMASK = 0o027


def private_files(*, group_readable: bool) -> None:
    """Set the umask for this process and the ones it starts (Slurm jobs included)."""
    os.umask(GROUP_READABLE_UMASK if group_readable else PRIVATE_UMASK)
    if group_readable:
        os.environ[GROUP_READABLE_ENV] = "1"  # a Slurm job's worker keeps the choice


def warn_if_open(folder: Path) -> None:
    """One warning line when ``folder`` (made before this rule, or by hand) lets other users in."""
    try:
        mode = folder.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o007:
        print(
            f"warning: {folder} is open to other users (mode {mode:04o}); "
            f"make it private with `chmod -R go-rwx {folder}`",
            file=sys.stderr,
        )
