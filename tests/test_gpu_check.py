"""The prepared device check runs end to end where no GPU is lent (`--quick --device cpu`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from search_helpers import TINY, environment

BENCH = Path(__file__).parents[1] / "bench"


def test_gpu_check_runs_every_part_on_the_cpu_and_writes_its_figures(tmp_path: Path) -> None:
    cmd = ["bash", str(BENCH / "gpu_check.sh"), str(tmp_path / "check"), "--quick", "--device", "cpu",
           "--definition", str(TINY)]  # fmt: skip
    done = subprocess.run(cmd, env=environment(None, PYTHON=sys.executable, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads((tmp_path / "check" / "gpu_check.json").read_text())
    assert figures["device"] == "cpu" and figures["quick"] is True
    # The same seed on the same device trains the same network: no difference at all.
    assert all(row["difference"] == 0 for row in figures["agreement"].values())
    assert {row["workers"] for row in figures["workers_per_gpu"]} == {1, 2}
    assert all(row["trials"] == 2 and row["trials_per_min"] > 0 for row in figures["workers_per_gpu"])
    assert figures["resident"]["resident"] > 0 and figures["resident"]["streamed"] > 0
    assert 0 < figures["fixed_cost"]["fixed_share"] < 1
    assert figures["cudnn_benchmark"]["E18"]["on"] > 0
    assert "RESULT workers_per_gpu=2 trials_per_min_ratio=" in done.stdout
    assert "RESULT amp_vs_fp32_E18=" in done.stdout and "device=cpu" in done.stdout
