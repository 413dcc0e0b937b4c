"""Worker arrays on the real single-node Slurm that .ci/services.sh starts (4 fake GPUs, 8 CPUs)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import ECGSEARCH, TINY, environment, slow_definition, unique_name

from ecgsearch.analysis.results import seed_table

pytestmark = pytest.mark.services

# Small tasks so four fit on the test node at once.
TASK_SIZE = ["--cpus-per-task", "1", "--mem", "1G"]


SUBMITTED: list[str] = []  # job ids this process submitted, for the cleanup below


@pytest.fixture(autouse=True)
def _cancel_leftover_jobs():
    """A failed test must not leave its array running: it would slow every later test down.

    Only this process's jobs: a test elsewhere (another pytest-xdist process) may have its own running.
    """
    yield
    if SUBMITTED:
        subprocess.run(["scancel", *SUBMITTED], check=False, capture_output=True)
        SUBMITTED.clear()


def submit(tmp_path: Path, url: str, name: str, definition: Path, *args: str) -> str:
    cmd = [*ECGSEARCH, "slurm", "submit", "--study-def", str(definition), "--study-name", name,
           "--workspace", str(tmp_path / "ws"), *TASK_SIZE, *args]  # fmt: skip
    result = subprocess.run(cmd, env=environment(url), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    job_id = result.stdout.strip().splitlines()[-1]
    SUBMITTED.append(job_id)
    return job_id


def tasks_of(job_id: str) -> list[str]:
    out = subprocess.run(["timeout", "10", "squeue", "-h", "-r", "-j", job_id, "-o", "%i %T"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip().splitlines()


def wait_until_done(job_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while tasks_of(job_id):
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], check=False)
            pytest.fail(f"job {job_id} still running after {timeout} s")
        time.sleep(1)


def job_logs(tmp_path: Path, job_id: str) -> str:
    return "\n".join(p.read_text() for p in sorted((tmp_path / "ws" / "slurm-logs").glob(f"*-{job_id}_*.out")))


def test_dry_run_requests_one_gpu_per_task_and_shows_no_password(postgres_url: str, tmp_path: Path) -> None:
    password = postgres_url.split(":")[2].split("@")[0]
    cmd = [*ECGSEARCH, "slurm", "submit", "--study-def", str(TINY), "--workers", "8", "--trials", "50",
           "--workspace", str(tmp_path / "ws"), "--partition", "gpu", "--time", "02:00:00", "--dry-run"]  # fmt: skip
    result = subprocess.run(cmd, env=environment(postgres_url), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert "#SBATCH --array=0-7" in script and "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --time=02:00:00" in script
    assert "#SBATCH --signal=B:USR1@600" in script and "\nexec " in script
    assert password not in script and "postgresql" not in script
    assert "${ECGSEARCH_STORAGE:?" in script
    assert "--workers" not in script.split("\nexec ")[1] and "OMP_NUM_THREADS=4 " in script
    shared = subprocess.run([*cmd, "--workers-per-gpu", "4", "--cpus-per-task", "8"], env=environment(postgres_url),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert shared.returncode == 0, shared.stderr
    assert "worker --workers 4 " in shared.stdout and "OMP_NUM_THREADS=2 " in shared.stdout
    # Workers take the total and budget from the study's recorded settings, never from the script.
    worker_line = script.split("\nexec ")[1]
    assert "--trials" not in worker_line and "--max-mb" not in worker_line


def test_storage_file_must_be_private(postgres_url: str, tmp_path: Path) -> None:
    secret = tmp_path / "storage-url"
    secret.write_text(postgres_url)
    secret.chmod(0o644)
    cmd = [*ECGSEARCH, "slurm", "submit", "--study-def", str(TINY), "--storage-file", str(secret),
           "--workspace", str(tmp_path / "ws"), "--dry-run"]  # fmt: skip
    refused = subprocess.run(cmd, env=environment(None), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "readable by other users" in refused.stderr
    secret.chmod(0o600)
    accepted = subprocess.run(cmd, env=environment(None), capture_output=True, text=True, timeout=300)
    assert accepted.returncode == 0, accepted.stderr
    assert f'export ECGSEARCH_STORAGE="$(cat {secret})"' in accepted.stdout
    assert postgres_url not in accepted.stdout


def test_two_tasks_of_two_workers_per_gpu_fill_the_study_exactly(slurm, postgres_url: str, tmp_path: Path) -> None:
    name = unique_name("array")
    started = time.monotonic()
    job_id = submit(tmp_path, postgres_url, name, slow_definition(tmp_path), "--workers", "2", "--trials", "8",
                    "--workers-per-gpu", "2")  # fmt: skip
    wait_until_done(job_id, 600)
    elapsed = time.monotonic() - started
    trials = optuna.load_study(study_name=name, storage=postgres_url).get_trials()
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials), job_logs(tmp_path, job_id)
    per_worker: dict[str, list[int]] = {}
    for t in trials:
        per_worker.setdefault(t.user_attrs["identity"]["worker"].split(":")[-1], []).append(t.number)
    # Each of the four processes names itself by array task and slot; they shared the work (how
    # evenly depends on how fast each one's Python started).
    assert len(per_worker) >= 3 and set(per_worker) <= {"0/0", "0/1", "1/0", "1/1"}, per_worker
    logs = sorted((tmp_path / "ws" / "slurm-logs").glob(f"*-{job_id}_*.out"))
    ran = [p.read_text().count("this process ran") for p in logs]
    assert ran == [2, 2], job_logs(tmp_path, job_id)
    assert all("2 workers ended (exit code 0)" in p.read_text() for p in logs)
    # sbatch hands the command's umask (077) on to the job: its logs are the user's alone.
    assert {p.stat().st_mode & 0o777 for p in logs} == {0o600}
    counts = sorted(len(v) for v in per_worker.values())
    print(f"\nslurm array: 8 trials, 2 tasks x 2 workers, {elapsed:.0f} s from submit to completion; "
          f"trials per worker {counts}")  # fmt: skip


def test_scancel_of_one_task_mid_trial_is_retried_and_the_study_completes(slurm, postgres_url, tmp_path) -> None:
    name = unique_name("scancel")
    job_id = submit(tmp_path, postgres_url, name, slow_definition(tmp_path), "--workers", "4", "--trials", "6")
    storage = postgres_url
    deadline = time.monotonic() + 300
    study, victim, seen = None, None, None
    while victim is None:
        assert time.monotonic() < deadline, "no trial ever started\n" + job_logs(tmp_path, job_id)[-3000:]
        try:
            study = study or optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            time.sleep(0.2)
            continue
        training = [t for t in study.get_trials(states=(TrialState.RUNNING,)) if "identity" in t.user_attrs]
        # A trial that began training since the last look (its "identity" is set once its
        # pre-training figures are known, when training starts) is surely still mid-training
        # when scancel lands: it trains for seconds. Whichever task runs it is the victim
        # (tasks start up at uneven speeds).
        if seen is not None:
            victim = next((t for t in training if t.number not in seen), None)
        seen = {t.number for t in training}
        if victim is None:
            time.sleep(0.2)
    task = victim.user_attrs["identity"]["worker"].split(":")[-1]
    subprocess.run(["scancel", f"{job_id}_{task}"], check=True)
    wait_until_done(job_id, 600)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert trials[victim.number].state == TrialState.FAIL
    assert trials[victim.number].user_attrs["fail_reason"] == "worker terminated (SIGTERM)"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == victim.params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6
    assert not [t for t in trials if t.state == TrialState.RUNNING]


def test_a_task_near_its_time_limit_stops_taking_trials(slurm, postgres_url: str, tmp_path: Path) -> None:
    name = unique_name("limit")
    # 2-minute limit, warning 100 s before it: the worker stops long before Slurm would kill it.
    job_id = submit(tmp_path, postgres_url, name, slow_definition(tmp_path), "--workers", "1", "--trials", "200",
                    "--time", "2", "--stop-margin", "100")  # fmt: skip
    started = time.monotonic()
    wait_until_done(job_id, 240)
    log = job_logs(tmp_path, job_id)
    assert "stopped taking trials: time limit near" in log, log[-3000:]
    assert time.monotonic() - started < 115  # ended by itself, not by the limit
    trials = optuna.load_study(study_name=name, storage=postgres_url).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert sum(t.state == TrialState.COMPLETE for t in trials) < 200
    state = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "JobState=COMPLETED" in state or not state, state


@pytest.fixture(scope="module")
def array_study(tmp_path_factory, postgres_url: str) -> tuple[Path, str, str]:
    """A tiny study being filled by a 2-task array (4 trials): workspace folder, study name, job id."""
    tmp_path = tmp_path_factory.mktemp("array")
    name = unique_name("status")
    return tmp_path, name, submit(tmp_path, postgres_url, name, TINY, "--workers", "2", "--trials", "4")


def test_slurm_status_reports_tasks_and_progress(slurm, postgres_url: str, array_study) -> None:
    _, name, job_id = array_study
    status = subprocess.run([*ECGSEARCH, "slurm", "status", "--job", job_id, "--study-name", name],
                            env=environment(postgres_url), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert f"study {name}:" in status.stdout
    wait_until_done(job_id, 300)
    done = subprocess.run([*ECGSEARCH, "slurm", "status", "--job", job_id, "--study-name", name],
                          env=environment(postgres_url), capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "no task is queued or running" in done.stdout and "complete 4" in done.stdout
    assert "of a total of 4" in done.stdout  # the total the study recorded at submission


def test_confirmation_runs_are_shared_by_a_slurm_array(slurm, postgres_url: str, array_study) -> None:
    """On PostgreSQL: `confirm --no-run` enqueues, an array runs the runs, pareto reads them."""
    tmp_path, name, first_job = array_study
    env = environment(postgres_url)
    wait_until_done(first_job, 300)
    workspace = ["--workspace", str(tmp_path / "ws")]
    enqueue = subprocess.run([*ECGSEARCH, "confirm", "--study-name", name, "--thesis", "--seeds", "2", "--no-run",
                              *workspace], env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert enqueue.returncode == 0 and "2 new run(s) enqueued" in enqueue.stdout, enqueue.stderr + enqueue.stdout
    # The confirm study's recorded total is not the array's business: no --trials needed.
    job_id = submit(tmp_path, postgres_url, f"{name}.confirm", TINY, "--workers", "2")
    wait_until_done(job_id, 300)
    runs = optuna.load_study(study_name=f"{name}.confirm", storage=postgres_url).get_trials()
    assert len(runs) == 2 and all(t.state == TrialState.COMPLETE for t in runs), job_logs(tmp_path, job_id)
    assert {t.user_attrs["thesis_experiment"] for t in runs} == {"E18", "E16"}
    assert all(t.user_attrs["identity"]["worker"].split(":")[-1] in {"0", "1"} for t in runs)
    study = optuna.load_study(study_name=name, storage=postgres_url)
    seeds = seed_table(study)
    for run in runs:
        assert sorted(seeds[run.user_attrs["confirms_trial"]]) == [0, 1]
    pareto = subprocess.run([*ECGSEARCH, "pareto", "--study-name", name, "--json", *workspace], env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert pareto.returncode == 0, pareto.stderr
    front_thesis = [row for row in json.loads(pareto.stdout) if row["thesis"]]
    assert all(row["seeds"]["count"] == 2 for row in front_thesis)
