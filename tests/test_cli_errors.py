"""Input a user can fix ends in one ``error: ...`` line on stderr and exit 2, never a traceback.

Each case uses a real file damaged the way it happens: a cut-off copy of a cache, an empty file,
a model directory whose model.json or model.pt was overwritten.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import h5py
import optuna
import pytest
import torch
from ecg_files import copy_record, real_signal, write_cinc
from search_helpers import ECGSEARCH, TINY, environment, run, sqlite_url, unique_name
from search_helpers import ecgsearch as in_process

from ecgnet.arch import ArchConfig
from ecgnet.data.cache import parts_dir, prepare_cache
from ecgnet.data.cache_reader import ECGCache
from ecgnet.data.synth import write_synthetic_dataset
from ecgnet.errors import InputError
from ecgnet.model import ECGResNet
from ecgnet.thesis import thesis_config
from ecgsearch.study.workspace import data_fingerprint

SMALL_ARCH = json.dumps({"blocks": [1, 1, 1, 1], "width_multiplier": 0.25})


def ecgsearch(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The console script in its own process, as a user runs it."""
    return run([*ECGSEARCH, *map(str, args)], environment(None))


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(capsys, monkeypatch) -> Cli:
    """The console script's ``main`` in this process: the same parsing and error handling, no start-up cost."""

    def invoke(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, *in_process(capsys, monkeypatch, *args))

    return invoke


def assert_one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """stderr is exactly one ``error:`` line holding every fragment; the exit code is 2."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert result.returncode == 2, (result.returncode, result.stderr)
    return lines[0]


# 1. Damaged caches ---------------------------------------------------------------------------


def truncated(real: Path, dest: Path) -> None:
    """An interrupted copy: the first half of the bytes."""
    data = real.read_bytes()
    dest.write_bytes(data[: len(data) // 2])


def empty(real: Path, dest: Path) -> None:
    dest.write_bytes(b"")


def no_datasets(real: Path, dest: Path) -> None:
    h5py.File(dest, "w").close()


def zero_records(real: Path, dest: Path) -> None:
    """What `data prepare` used to write for a folder without usable records: the layout, no rows."""
    with h5py.File(real, "r") as source, h5py.File(dest, "w") as f:
        f.attrs.update(source.attrs)
        for key in source:
            f.create_dataset(key, shape=(12, 0) if key == "signals" else (0,), dtype=source[key].dtype)


DAMAGED_CACHES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "truncated": (truncated, "the cache is truncated ("),
    "empty": (empty, "the cache file is empty (0 bytes)"),
    "no-datasets": (no_datasets, "an HDF5 file with no datasets, not a cache"),
    "zero-records": (zero_records, "the cache holds 0 records"),
}


@pytest.fixture(scope="module")
def damaged_caches(synthetic_cache_path: Path, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("damaged")
    caches = {}
    for kind, (damage, _) in DAMAGED_CACHES.items():
        caches[kind] = folder / f"{kind}.h5"
        damage(synthetic_cache_path, caches[kind])
    return caches


@pytest.mark.parametrize("kind", list(DAMAGED_CACHES))
def test_opening_a_damaged_cache_raises_input_error_naming_file_and_problem(damaged_caches, kind: str) -> None:
    problem = DAMAGED_CACHES[kind][1]
    path = damaged_caches[kind]
    for open_cache in (ECGCache, data_fingerprint):
        with pytest.raises(InputError) as raised:
            open_cache(path)
        assert str(raised.value).startswith(f"{path}: ") and problem in str(raised.value)


def test_truncated_cache_error_says_how_much_of_the_file_is_there(synthetic_cache_path, damaged_caches) -> None:
    size = synthetic_cache_path.stat().st_size
    with pytest.raises(InputError, match=rf"truncated \({size // 2} of {size} bytes\)"):
        ECGCache(damaged_caches["truncated"])


@pytest.mark.parametrize("kind", list(DAMAGED_CACHES))
def test_cli_data_info_on_a_damaged_cache_prints_one_error_line(cli: Cli, damaged_caches, kind: str) -> None:
    path = damaged_caches[kind]
    assert_one_error_line(cli("data", "info", path), str(path), DAMAGED_CACHES[kind][1])


@pytest.mark.parametrize("kind", list(DAMAGED_CACHES))
def test_cli_train_on_a_damaged_cache_prints_one_error_line(cli: Cli, damaged_caches, kind: str) -> None:
    path = damaged_caches[kind]
    result = cli("train", "--arch", SMALL_ARCH, "--data", path, "--epochs", "1", "--json")
    assert_one_error_line(result, str(path), DAMAGED_CACHES[kind][1])
    assert result.stdout == ""


def test_cli_train_on_a_missing_cache_prints_one_error_line(cli: Cli, tmp_path: Path) -> None:
    result = cli("train", "--arch", SMALL_ARCH, "--data", tmp_path / "nope.h5")
    assert_one_error_line(result, "nope.h5: no such cache")


def test_console_script_on_a_truncated_cache_prints_one_error_line(damaged_caches) -> None:
    path = damaged_caches["truncated"]
    result = ecgsearch("train", "--arch", SMALL_ARCH, "--data", path, "--epochs", "1")
    assert_one_error_line(result, f"{path}: the cache is truncated (")


@pytest.mark.parametrize("kind", ["truncated", "empty"])
def test_cli_worker_on_a_damaged_cache_prints_one_error_line_and_creates_no_trial(
    cli: Cli, damaged_caches, kind: str, tmp_path: Path
) -> None:
    path = damaged_caches[kind]
    result = cli("worker", "--study-def", TINY, "--study-name", "w", "--trials", "2", "--data", path,
                 "--workspace", tmp_path)  # fmt: skip
    assert_one_error_line(result, str(path), DAMAGED_CACHES[kind][1])
    assert not (tmp_path / "study.db").exists() or not optuna.get_all_study_names(sqlite_url(tmp_path))


# 3. Preparing folders without usable records --------------------------------------------------


def test_cli_prepare_on_an_empty_folder_fails_with_the_counts_and_writes_no_cache(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    cache = tmp_path / "ecg.h5"
    line = assert_one_error_line(cli("data", "prepare", tmp_path / "data", "--out", cache))
    assert f"{cache}: not written" in line
    assert "0 record(s) found" in line and "0 kept, 0 rejected" in line and f"{cache}.rejects.csv" in line
    assert not cache.exists() and not parts_dir(cache).exists()


def test_cli_prepare_on_a_folder_of_junk_fails_with_the_counts_and_writes_no_cache(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    (junk / "garbage").mkdir(parents=True)
    (junk / "garbage" / "X0001.hea").write_bytes(b"\x00\x01 not a header\n")
    copy_record("HR06000", junk)
    (junk / "HR06000.mat").write_bytes((junk / "HR06000.mat").read_bytes()[:200])  # cut-off download
    write_cinc(junk, "A0001", real_signal(), comments="#Age: 50\n")  # no #Dx line
    (junk / "README.txt").write_text("not a record\n")
    cache = tmp_path / "ecg.h5"
    result = ecgsearch("data", "prepare", junk, "--out", cache, "--json")
    line = assert_one_error_line(result, f"{cache}: not written", f"{cache}.rejects.csv")
    assert "3 record(s) found, 0 kept, 3 rejected" in line
    assert result.stdout == ""  # no half summary for scripts to parse
    assert not cache.exists() and not parts_dir(cache).exists()
    rejects = (tmp_path / "ecg.h5.rejects.csv").read_text().splitlines()
    assert len(rejects) == 4 and rejects[0] == "file,reason"


def test_prepare_cache_that_keeps_nothing_raises_input_error_and_leaves_an_existing_cache(
    synthetic_cache_path: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "ecg.h5"
    shutil.copy(synthetic_cache_path, cache)  # from an earlier, good run
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="0 record\\(s\\) found"):
        prepare_cache([tmp_path / "empty"], cache, workers=1)
    assert len(ECGCache(cache)) == 600


# 4. --json keeps stdout for the JSON ----------------------------------------------------------


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small")
    write_synthetic_dataset(root / "records", records=120, seed=0)
    prepare_cache([root / "records"], root / "small.h5", workers=1)
    return root / "small.h5"


@pytest.fixture(scope="module")
def trained(small_cache: Path, tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`ecgsearch train --json --out` with tiny settings (a few seconds on CPU)."""
    model_dir = tmp_path_factory.mktemp("trained") / "model"
    result = ecgsearch("train", "--arch", SMALL_ARCH, "--data", small_cache, "--epochs", "1", "--batch-size", "16",
                       "--window", "512", "--device", "cpu", "--out", model_dir, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result, model_dir


def test_cli_train_json_prints_only_the_json_on_stdout_and_progress_on_stderr(trained) -> None:
    result, model_dir = trained
    report = json.loads(result.stdout)  # the whole of stdout, as `| jq` reads it
    assert report["exported_to"] == str(model_dir) and report["seeds"] == [0]
    assert "epoch 1: loss" in result.stderr and "epoch" not in result.stdout
    # The thesis's figures, AUPRC included (its "precision"), summarised over seeds.
    assert set(report["summary"]) == {
        f"{subset}_{metric}"
        for subset in ("val", "test")
        for metric in ("micro_auroc", "macro_auroc", "micro_auprc", "macro_auprc")
    }
    assert "micro AUPRC" in result.stderr


# 2. Damaged model directories -----------------------------------------------------------------


class PickledCall:
    """Unpickling this calls print: what weights_only=True exists to refuse."""

    def __reduce__(self):
        return (print, ("pickle code ran",))


def whole_module(model_dir: Path) -> None:
    info = json.loads((model_dir / "model.json").read_text())
    torch.save(ECGResNet(ArchConfig.from_dict(info["arch"])), model_dir / "model.pt")


DAMAGED_MODELS: dict[str, tuple[Callable[[Path], None], str]] = {
    "json-not-json": (lambda d: (d / "model.json").write_text("{not json"), "model.json: not valid JSON"),
    "json-without-arch": (
        lambda d: (d / "model.json").write_text(
            json.dumps({k: v for k, v in json.loads((d / "model.json").read_text()).items() if k != "arch"})
        ),
        "model.json: missing or malformed arch",
    ),
    "pt-pickled-object": (
        lambda d: torch.save({"x": PickledCall()}, d / "model.pt"),
        "model.pt: not a plain state_dict (it holds print); refused for safety, since weights load with "
        "weights_only=True",
    ),
    "pt-whole-module": (
        whole_module,
        "model.pt: not a plain state_dict (it holds ecgnet.model.ECGResNet); refused for safety",
    ),
    "pt-other-architecture": (
        lambda d: torch.save(ECGResNet(thesis_config("E1")).state_dict(), d / "model.pt"),
        "model.pt: the weights do not fit the architecture in model.json",
    ),
    "pt-truncated": (
        lambda d: (d / "model.pt").write_bytes((d / "model.pt").read_bytes()[:4096]),
        "model.pt: not a readable PyTorch weights file, truncated or corrupt",
    ),
}


def damaged_copy(model_dir: Path, damage: str, dest: Path) -> Path:
    shutil.copytree(model_dir, dest)
    DAMAGED_MODELS[damage][0](dest)
    return dest


@pytest.mark.parametrize("damage", list(DAMAGED_MODELS))
def test_cli_predict_with_a_damaged_model_prints_one_error_line(cli: Cli, trained, damage: str, tmp_path) -> None:
    damaged = damaged_copy(trained[1], damage, tmp_path / "model")
    result = cli("predict", damaged, copy_record("E07500", tmp_path / "records"))
    assert_one_error_line(result, f"{damaged}/{DAMAGED_MODELS[damage][1]}")
    assert "pickle code ran" not in result.stdout


def test_console_script_predict_refuses_pickled_code_in_model_pt(trained, tmp_path: Path) -> None:
    damaged = damaged_copy(trained[1], "pt-pickled-object", tmp_path / "model")
    result = ecgsearch("predict", damaged, copy_record("E07500", tmp_path / "records"))
    assert_one_error_line(result, f"{damaged}/model.pt: not a plain state_dict", "refused for safety")
    assert "pickle code ran" not in result.stdout


# 5. export --trial N for a number the study does not have -------------------------------------


@pytest.fixture(scope="module")
def three_trial_study(tmp_path_factory) -> tuple[Path, str]:
    workspace = tmp_path_factory.mktemp("workspace")
    name = unique_name("three")
    study = optuna.create_study(study_name=name, storage=sqlite_url(workspace))
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    return workspace, name


def export(run: Cli, study: tuple[Path, str], number: str, out: Path) -> subprocess.CompletedProcess[str]:
    workspace, name = study
    return run("export", "--trial", number, "--out", out, "--study-name", name, "--workspace", workspace)


@pytest.mark.parametrize("number", ["99999", "3"])
def test_cli_export_of_a_trial_the_study_lacks_names_the_trial_range(cli: Cli, three_trial_study, number, tmp_path):
    result = export(cli, three_trial_study, number, tmp_path / "m")
    assert_one_error_line(result, f"error: study {three_trial_study[1]!r} has no trial {number} (trials 0..2)")
    assert not (tmp_path / "m").exists()


def test_cli_export_rejects_a_negative_trial_number(cli: Cli, three_trial_study, tmp_path: Path) -> None:
    # -1 was the last trial by list indexing: it would have exported trial 2.
    result = export(cli, three_trial_study, "-1", tmp_path / "m")
    assert_one_error_line(result, "has no trial -1 (trials 0..2); trial numbers start at 0")
    assert not (tmp_path / "m").exists()


def test_console_script_export_rejects_a_negative_trial_number(three_trial_study, tmp_path: Path) -> None:
    result = export(ecgsearch, three_trial_study, "-18", tmp_path / "m")
    assert_one_error_line(result, "has no trial -18 (trials 0..2); trial numbers start at 0")


def test_cli_train_with_an_unknown_test_split_prints_one_error_line(cli: Cli, synthetic_cache_path: Path) -> None:
    result = cli("train", "--arch", SMALL_ARCH, "--data", synthetic_cache_path, "--test", "nope", "--epochs", "1")
    assert_one_error_line(result, "unknown test split 'nope'; known: cpsc")


def test_help_shows_flags_as_flags_and_options_with_their_value(cli: Cli) -> None:
    shown = cli("run", "--help")
    assert shown.returncode == 0
    lines = {line.split()[1]: line for line in shown.stdout.splitlines() if line.startswith("│ --")}
    assert "<bool>" not in shown.stdout and "--no-thesis" in lines["--thesis"]
    assert "<int" in lines["--trials"] and "<str>" in lines["--study-def"]
