"""Packaging: the data files ship in the wheel; ecgnet stands alone without the search side."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def assert_never_imported(modules: str, absent: tuple[str, ...], then: str = "") -> None:
    """Importing ``modules`` (comma-separated) in a fresh interpreter loads none of ``absent``."""
    code = (f"import sys, {modules}\n{then}\nbad = [m for m in sys.modules if m.split('.')[0] in {absent!r}]\n"
            "assert not bad, bad")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


def test_ecgnet_imports_neither_ecgsearch_nor_optuna() -> None:
    assert_never_imported("ecgnet, ecgnet.model, ecgnet.size, ecgnet.thesis", ("ecgsearch", "optuna"),
                          then="ecgnet.thesis_experiments()")  # fmt: skip


def test_the_commands_that_read_a_study_do_not_import_torch() -> None:
    # pareto, report and export's lookup start in about 2 s, not 5-8: no torch, ONNX, scipy or h5py
    # until a command trains, exports or counts the MACs of a trial that did not record them.
    analysis = ", ".join(f"ecgsearch.analysis.{p.stem}" for p in (ROOT / "search" / "analysis").glob("[!_]*.py"))
    assert_never_imported(f"ecgsearch.cli, ecgsearch.commands.results, {analysis}, ecgsearch.api",
                          ("torch", "onnx", "onnxruntime", "scipy", "h5py", "pandas"))  # fmt: skip


def test_the_commands_that_plan_or_submit_do_not_import_torch_or_scikit_learn() -> None:
    # `slurm submit`, `confirm --no-run`, `run --workers K`'s parent and `data prepare` start in
    # about 2 s, not 6-11: the worker and the splitter bring torch and scikit-learn where they train.
    assert_never_imported("ecgsearch.commands.run, ecgsearch.commands.slurm, ecgsearch.commands.confirm, "
                          "ecgsearch.commands.data, ecgsearch.trials.worker_group", ("torch", "sklearn"))  # fmt: skip


def test_ecgnet_sources_never_mention_the_search_side() -> None:
    import_line = re.compile(r"^\s*(from|import)\s+(ecgsearch|optuna)\b", re.MULTILINE)
    offenders = [p.name for p in (ROOT / "ecgnet").rglob("*.py") if import_line.search(p.read_text())]
    assert offenders == []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    # Build from a copy so setuptools' build/ folder never lands in the work tree.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "ecgnet", "search", "studies", "slurm"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip_wheel, "-w", str(out), str(source)], check=True, capture_output=True)
    (path,) = out.glob("ecgsearch-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_ships_the_named_architectures_and_both_packages(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert "ecgnet/configs/thesis_experiments.toml" in names
    assert {"ecgnet/configs/sph_aha_to_snomed.csv", "ecgnet/configs/challenge2021_weights.csv",
            "ecgnet/configs/challenge2021_LICENSE"} <= names  # fmt: skip
    assert {"ecgsearch/studies/demo.toml", "ecgsearch/studies/thesis.toml", "ecgsearch/slurm/worker.sbatch"} <= names
    assert "ecgnet/model.py" in names
    # Every module, sub-packages too; the folder search/ installs as ecgsearch.
    sources = {f"ecgnet/{p.relative_to(ROOT / 'ecgnet')}" for p in (ROOT / "ecgnet").rglob("*.py")}
    sources |= {f"ecgsearch/{p.relative_to(ROOT / 'search')}" for p in (ROOT / "search").rglob("*.py")}
    assert sources - names == set()
    assert not any(n.startswith(("search/", "studies/", "slurm/", "tests/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ecgsearch = ecgsearch.cli:main" in wheel.read(entry_points).decode()
