"""Slurm worker arrays: render the sbatch template, submit it, report on it.

``submit`` creates the study and enqueues the thesis trials before any worker starts (no
creation races), prepares the data once, renders ``worker.sbatch`` and hands it to sbatch. The
storage URL never appears in the script: the job inherits ``ECGSEARCH_STORAGE`` from the
submitting environment (sbatch exports it), or reads it from a file only the user can read.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import stat
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from string import Template

from ecgsearch.storage.storage import STORAGE_ENV

__all__ = ["JobSpec", "render_script", "slurm_status", "storage_file_problem", "submit_script"]

SLURM_TIMEOUT_S = 30  # squeue/sbatch block ~10 s per call while slurmctld is unreachable


@dataclasses.dataclass
class JobSpec:
    """What one worker array runs and what each task asks Slurm for."""

    study_def: str
    study_name: str
    trials: int
    data: str
    workspace: str
    workers: int = 4
    seed: int = 0
    gpus_per_task: int = 1
    workers_per_gpu: int = 1  # worker processes sharing a task's GPU (ecgsearch.trials.worker_group)
    cpus_per_task: int = 4
    mem: str = "16G"
    time_limit: str = "24:00:00"
    stop_margin_s: int = 600
    partition: str | None = None
    account: str | None = None
    storage_file: str | None = None
    extra_args: tuple[str, ...] = ()


def _ecgsearch_command() -> str:
    """How a job runs this same installation of ecgsearch."""
    script = Path(sys.executable).with_name("ecgsearch")
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m ecgsearch.cli"


def render_script(spec: JobSpec) -> str:
    """The sbatch script for ``spec`` from the shipped template (no storage URL in it)."""
    template = Template(resources.files("ecgsearch.slurm").joinpath("worker.sbatch").read_text())
    optional = [
        f"#SBATCH --partition={spec.partition}" if spec.partition else "",
        f"#SBATCH --account={spec.account}" if spec.account else "",
    ]
    if spec.storage_file:
        storage = f'export {STORAGE_ENV}="$(cat {shlex.quote(spec.storage_file)})"'
    else:
        storage = f': "${{{STORAGE_ENV}:?set {STORAGE_ENV} (exported by sbatch) or submit with --storage-file}}"'
    workspace = Path(spec.workspace).resolve()
    return template.substitute(
        job_name=f"ecgsearch-{spec.study_name}",
        last_task=spec.workers - 1,
        gpus_per_task=spec.gpus_per_task,
        cpus_per_task=spec.cpus_per_task,
        threads_per_worker=max(1, spec.cpus_per_task // spec.workers_per_gpu),
        group=f"--workers {spec.workers_per_gpu} " if spec.workers_per_gpu > 1 else "",
        mem=spec.mem,
        time_limit=spec.time_limit,
        stop_margin_s=spec.stop_margin_s,
        log_dir=shlex.quote(str(workspace / "slurm-logs")),
        optional_lines="\n".join(line for line in optional if line),
        storage_line=storage,
        workdir=shlex.quote(str(workspace.parent)),
        ecgsearch=_ecgsearch_command(),
        study_def=shlex.quote(spec.study_def),
        study_name=shlex.quote(spec.study_name),
        trials=spec.trials,
        data=shlex.quote(str(Path(spec.data).resolve())),
        workspace=shlex.quote(str(workspace)),
        seed=spec.seed,
        extra_args="".join(f" {shlex.quote(a)}" for a in spec.extra_args),
    )


def storage_file_problem(path: str) -> str | None:
    """Why a storage file is unsafe to use (readable by others), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} is readable by other users: chmod 600 {path}"
    return None


def submit_script(script: str, workspace: Path, study_name: str) -> tuple[str, Path]:
    """Write the script into the workspace and submit it; returns (job id, script path)."""
    if shutil.which("sbatch") is None:
        raise RuntimeError("sbatch not found: run this on a Slurm login node (or use --dry-run)")
    folder = workspace / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    (workspace / "slurm-logs").mkdir(parents=True, exist_ok=True)
    path = folder / f"{study_name}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    path.write_text(script)
    result = subprocess.run(
        ["sbatch", "--parsable", str(path)], capture_output=True, text=True, timeout=SLURM_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"sbatch refused {path}: {result.stderr.strip()}")
    return result.stdout.strip().split(";")[0], path


def slurm_status(job_id: str) -> list[dict[str, str]]:
    """The array's tasks as squeue shows them (empty once all have ended)."""
    result = subprocess.run(
        ["squeue", "-h", "-r", "-j", job_id, "-o", "%i|%T|%M|%R"],
        capture_output=True,
        text=True,
        timeout=SLURM_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0 and "Invalid job id" not in result.stderr:
        raise RuntimeError(f"squeue failed: {result.stderr.strip()}")
    rows = []
    for line in result.stdout.strip().splitlines():
        task, state, elapsed, reason = line.split("|", 3)
        rows.append({"task": task, "state": state, "elapsed": elapsed, "reason": reason})
    return rows
