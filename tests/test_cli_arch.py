"""`ecgsearch arch list|show`: the installed console script once, the same app in-process otherwise."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ecgnet.size import describe_size
from ecgnet.thesis import thesis_experiments
from ecgsearch.cli import app


def ecgsearch(*args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("ecgsearch") or str(Path(sys.executable).with_name("ecgsearch"))
    return subprocess.run(
        [script, *args], capture_output=True, text=True, check=False, env={"COLUMNS": "80", "PATH": ""}
    )


def in_process(*args: str):
    """The CLI without a new interpreter (importing torch again costs seconds per call)."""
    return CliRunner().invoke(app, list(args))


def test_arch_list_json_has_all_experiments_with_measured_and_thesis_figures() -> None:
    result = in_process("arch", "list", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == list(thesis_experiments())
    e12 = rows[11]
    expected = describe_size(thesis_experiments()["E12"].config, macs=True)
    assert e12["params"] == expected.params == 1_533_475
    assert e12["state_dict_bytes"] == expected.state_dict_bytes
    assert e12["macs"] == expected.macs
    assert e12["thesis"]["size_mb"] == 5.93 and e12["thesis"]["micro_auroc"] == 0.88
    # Table 4.1's "Micro/Macro Precision" is AUPRC, and named so; no thresholded precision is claimed.
    assert e12["thesis"]["micro_auprc"] == 0.49 and e12["thesis"]["macro_auprc"] == 0.45
    assert not [key for key in e12["thesis"] if "precision" in key]
    assert e12["arch"]["conv_type"] == "depthwise_separable"


def test_arch_list_table_fits_80_columns_and_shows_every_row() -> None:
    result = ecgsearch("arch", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout
    e17 = describe_size(thesis_experiments()["E17"].config)
    assert any(line.split()[:3] == ["E17", "573,059", f"{e17.size_mb:.3f}"] for line in lines if line.strip())
    assert sum(1 for line in lines if line.strip().startswith("E")) == 18
    assert "µPRC" in result.stdout and "MPRC" in result.stdout and "AUPRC" in result.stdout


def test_arch_show_is_case_insensitive_and_lists_fields() -> None:
    result = in_process("arch", "show", "e11")
    assert result.exit_code == 0, result.stderr
    assert "E11: Stem kernel 7" in result.stdout
    assert any(line.split() == ["stem_padding", "7"] for line in result.stdout.splitlines())
    data = json.loads(in_process("arch", "show", "E11", "--json").stdout)
    assert data["arch"]["stem_kernel"] == 7


def test_arch_show_unknown_name_is_a_clear_error() -> None:
    result = in_process("arch", "show", "E19")
    assert result.exit_code == 2
    assert "unknown thesis experiment 'E19'" in result.stderr
    assert "E18" in result.stderr
