"""The real services the later tests build on are up and usable (they fail, never skip)."""

from __future__ import annotations

import subprocess
import time

import pytest
import sqlalchemy

pytestmark = pytest.mark.services


def test_postgres_accepts_writes_and_has_room_for_many_workers(postgres_url: str) -> None:
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("create temporary table probe (x int)"))
        conn.execute(sqlalchemy.text("insert into probe values (41), (1)"))
        total = conn.execute(sqlalchemy.text("select sum(x) from probe")).scalar_one()
        max_connections = int(conn.execute(sqlalchemy.text("show max_connections")).scalar_one())
    engine.dispose()
    assert total == 42
    # 32 workers x (pool + heartbeat) must fit; the services script configures 300.
    assert max_connections >= 200


def test_slurm_runs_a_one_gpu_array_job(slurm: None, tmp_path) -> None:
    submit = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--array=0-1",
            "--gres=gpu:1",
            "-o",
            str(tmp_path / "out_%a"),
            "--wrap",
            "echo task $SLURM_ARRAY_TASK_ID gpu=$CUDA_VISIBLE_DEVICES",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    job_id = submit.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        queue = subprocess.run(
            ["timeout", "10", "squeue", "-h", "-j", job_id], capture_output=True, text=True, check=False
        )
        if queue.returncode == 0 and not queue.stdout.strip():
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"Slurm job {job_id} did not finish in 60 s")
    outputs = sorted((tmp_path / f"out_{i}").read_text().strip() for i in range(2))
    assert [o.split(" gpu=")[0] for o in outputs] == ["task 0", "task 1"]
    assert all(o.split(" gpu=")[1] != "" for o in outputs), outputs
