"""The real services the later tests build on are up and usable (they fail, never skip)."""

from __future__ import annotations

import subprocess
import time

import pytest
import sqlalchemy

pytestmark = pytest.mark.services


def test_postgres_is_version_15_lets_the_user_create_tables_and_allows_300_connections(postgres_url: str) -> None:
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as conn:
        setting = {name: conn.execute(sqlalchemy.text(f"show {name}")).scalar_one()
                   for name in ("server_version_num", "max_connections", "transaction_read_only")}  # fmt: skip
        # Optuna creates its tables in the public schema, which PostgreSQL 15 closes to non-owners.
        conn.execute(sqlalchemy.text("create table ecgsearch_probe (x int)"))
        conn.execute(sqlalchemy.text("insert into ecgsearch_probe values (1)"))
        conn.rollback()  # DDL is transactional: the probe table is not left behind
    engine.dispose()
    version = int(setting["server_version_num"])
    assert version // 10000 == 15, f"server_version_num {version}: the services script and compose.yaml use 15"
    assert setting["transaction_read_only"] == "off"
    # 32 workers x (pool + heartbeat) must fit with room to spare; the services script configures 300.
    assert int(setting["max_connections"]) >= 300


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
