"""Training learns, is seeded, respects its budget; export reloads exactly; ONNX and predict agree."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from ecg_files import CINC, copy_record

from ecgnet.arch import ArchConfig
from ecgnet.data.dataset import minmax_scale
from ecgnet.data.labels import class_set
from ecgnet.errors import InputError
from ecgnet.export import MODEL_INT8_ONNX, export_model, load_model
from ecgnet.int8 import add_int8, onnx_probabilities
from ecgnet.model import ECGResNet
from ecgnet.predict import predict_files
from ecgnet.runner import DataSpec, export_outcome, load_data, train_and_evaluate
from ecgnet.thesis import thesis_config
from ecgnet.train import TrainConfig, predict_probabilities

SMALL = ArchConfig(blocks=(1, 1, 1, 1), width_multiplier=0.25)
QUICK = TrainConfig(epochs=2, batch_size=32, window=1024)


@pytest.fixture(scope="module")
def data(synthetic_cache_path: Path):
    return load_data(DataSpec(str(synthetic_cache_path), test="cpsc"), TrainConfig(window=1024, seed=0))


@pytest.fixture(scope="module")
def learned(data):
    """A small model trained for 6 epochs on synthetic data (about ten seconds on 2 cores)."""
    return train_and_evaluate(SMALL, data, TrainConfig(epochs=6, batch_size=32, window=1024))


def test_a_few_epochs_on_synthetic_data_beat_chance_clearly(learned, data) -> None:
    val = learned.result.val_metrics
    assert val["macro_auroc"] > 0.8
    assert 0.7 < val["micro_auroc"] < 0.97
    assert learned.test_metrics["micro_auroc"] > 0.75  # the held-out source, scored separately
    history = learned.result.history
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["steps"] == learned.result.steps == 6 * math.ceil(len(data.train) / 32)


def test_two_cpu_runs_with_one_seed_give_identical_metrics(synthetic_cache_path: Path) -> None:
    spec = DataSpec(str(synthetic_cache_path), max_train_records=96)
    one_epoch = dataclasses.replace(QUICK, epochs=1)  # 3 steps: enough for two seeds to part
    runs = [train_and_evaluate(SMALL, load_data(spec, one_epoch), one_epoch) for _ in range(2)]
    assert runs[0].result.val_metrics == runs[1].result.val_metrics
    assert runs[0].result.history[-1]["train_loss"] == runs[1].result.history[-1]["train_loss"]
    other = train_and_evaluate(SMALL, load_data(spec, one_epoch), dataclasses.replace(one_epoch, seed=1))
    assert other.result.history[-1]["train_loss"] != runs[0].result.history[-1]["train_loss"]


def test_data_held_on_the_device_trains_exactly_as_streamed_data(synthetic_cache_path: Path) -> None:
    spec = DataSpec(str(synthetic_cache_path), max_train_records=96)
    # Dropout draws from the global generator, which a DataLoader also draws from at every epoch.
    arch = dataclasses.replace(SMALL, dropout=0.3)
    runs = {held: train_and_evaluate(arch, load_data(spec, QUICK), dataclasses.replace(QUICK, resident_data=held))
            for held in (False, True)}  # fmt: skip
    assert runs[True].result.history == [dict(h, seconds=runs[True].result.history[i]["seconds"])
                                         for i, h in enumerate(runs[False].result.history)]  # fmt: skip
    assert runs[True].result.val_metrics == runs[False].result.val_metrics
    assert runs[True].test_metrics == runs[False].test_metrics


def test_step_budget_and_time_cap(synthetic_cache_path: Path) -> None:
    data = load_data(DataSpec(str(synthetic_cache_path), max_train_records=96), QUICK)
    stepped = train_and_evaluate(SMALL, data, dataclasses.replace(QUICK, epochs=30, max_steps=5))
    assert stepped.result.steps == 5 and len(stepped.result.history) == 2  # 3 steps per epoch
    assert not stepped.result.cut_by_time_limit
    capped = train_and_evaluate(SMALL, data, dataclasses.replace(QUICK, epochs=1000, max_seconds=0.5))
    assert capped.result.cut_by_time_limit and capped.result.steps < 1000 * 3


def test_a_stop_hook_ends_training_after_the_epoch_it_names(synthetic_cache_path: Path) -> None:
    data = load_data(DataSpec(str(synthetic_cache_path), max_train_records=96), QUICK)
    seen: list[dict] = []

    def stop_at_epoch_two(entry: dict) -> str | None:
        seen.append(entry)
        return "rung 2: dominated" if entry["epoch"] == 2 else None

    stopped = train_and_evaluate(SMALL, data, dataclasses.replace(QUICK, epochs=5), should_stop=stop_at_epoch_two)
    assert stopped.result.stopped_early == "rung 2: dominated"
    assert [h["epoch"] for h in stopped.result.history] == [1, 2] and stopped.result.steps == 2 * 3
    assert [entry["epoch"] for entry in seen] == [1, 2]  # asked after each epoch; None at epoch 1 went on
    assert seen[0]["micro_auroc"] == stopped.result.history[0]["micro_auroc"]  # it sees validation figures
    assert stopped.result.val_metrics["micro_auroc"] == stopped.result.history[-1]["micro_auroc"]


def test_length_batched_evaluation_equals_one_record_at_a_time(learned, data) -> None:
    model = learned.result.model
    batched = predict_probabilities(model, data.val, max_samples=10**7)
    single = predict_probabilities(model, data.val, max_samples=1)  # forces batches of one
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        signal, metadata, _ = data.val[3]
        direct = torch.sigmoid(model.eval()(minmax_scale(signal[None]), metadata[None]))[0].numpy()
    np.testing.assert_allclose(batched[3], direct, rtol=1e-5, atol=1e-6)


def test_export_reload_gives_identical_outputs(learned, data, tmp_path: Path) -> None:
    out = export_outcome(learned, tmp_path / "model", data, DataSpec("x"), QUICK)
    info = json.loads((out / "model.json").read_text())
    assert info["classes"]["abbreviations"][:3] == ["SR", "SB", "TAb"]
    assert info["metrics"]["validation"]["macro_auroc"] == learned.result.val_metrics["macro_auroc"]
    assert info["metrics"]["test"]["micro_auroc"] == learned.test_metrics["micro_auroc"]
    assert info["preprocess"] == {"target_fs": 250.0, "low_hz": 0.5, "high_hz": 50.0, "filter_order": 2,
                                  "style": "exact"}  # fmt: skip
    assert info["params"] > 0 and info["size_mb"] > 0 and len(info["thresholds"]) == 17
    reloaded, _ = load_model(out)
    x, meta = torch.randn(3, 12, 3000), torch.rand(3, 3)
    with torch.no_grad():
        assert torch.equal(learned.result.model.eval()(x, meta), reloaded(x, meta))


def test_weights_file_that_is_not_a_plain_state_dict_is_refused_for_safety(tmp_path: Path, capsys) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pickle code ran",))

    out = export_model(ECGResNet(SMALL), tmp_path / "m", classes=class_set("thesis17"))
    torch.save({"x": Evil()}, out / "model.pt")  # a tampered weights file
    with pytest.raises(
        InputError, match=r"m/model\.pt: not a plain state_dict .*refused for safety.*weights_only=True"
    ):
        load_model(out)
    torch.save(ECGResNet(SMALL), out / "model.pt")  # the whole module pickled, not its state_dict
    with pytest.raises(InputError, match=r"it holds ecgnet\.model\.ECGResNet\); refused for safety"):
        load_model(out)
    assert "pickle code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("name", ["E1", "E11", "E12", "E18"])
def test_onnx_matches_pytorch_at_several_lengths_and_batch_sizes(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ECGResNet(thesis_config(name)).eval()
    out = export_model(model, tmp_path / name, classes=class_set("thesis17"))
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        for samples in (2048, 4096, 7500):
            signal = torch.rand(batch, 12, samples)
            metadata = torch.rand(batch, 3)
            with torch.no_grad():
                expected = model(signal, metadata).numpy()
            (actual,) = session.run(None, {"signal": signal.numpy(), "metadata": metadata.numpy()})
            np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4, err_msg=f"{batch} x {samples}")


@pytest.fixture(scope="module")
def exported(learned, data, tmp_path_factory) -> Path:
    return export_outcome(learned, tmp_path_factory.mktemp("model") / "m", data, DataSpec("x"), QUICK)


def test_predict_real_records_and_report_a_corrupt_one(exported: Path, tmp_path: Path) -> None:
    for name in ("E07500", "HR06000", "JS20005"):
        copy_record(name, tmp_path)
    shutil.copy(CINC / "E07501.hea", tmp_path / "E07501.hea")
    (tmp_path / "E07501.mat").write_bytes(b"truncated")
    paths = [
        tmp_path / "E07500.hea",
        tmp_path / "E07501.hea",
        tmp_path / "HR06000.mat",
        tmp_path / "JS20005.hea",
    ]
    results = predict_files(exported, paths)
    assert [r.error is None for r in results] == [True, False, True, True]
    assert "unreadable .mat file" in results[1].error
    for r in (results[0], results[2], results[3]):
        assert len(r.probabilities) == 17 and all(0 <= p <= 1 for p in r.probabilities.values())
        assert set(r.labels) <= set(r.probabilities)


def test_predict_reads_an_sph_file_with_its_metadata(exported: Path, tmp_path: Path) -> None:
    from ecg_files import sph_pair

    sph_pair(tmp_path)
    (result,) = predict_files(exported, [tmp_path / "A00002.h5"])
    assert result.error is None and len(result.probabilities) == 17


def test_cli_predict_exit_code_says_whether_any_failed(exported: Path, tmp_path: Path) -> None:
    copy_record("E07500", tmp_path)
    script = Path(sys.executable).with_name("ecgsearch")
    good = subprocess.run([script, "predict", str(exported), str(tmp_path / "E07500.hea"), "--json"],
                          capture_output=True, text=True)  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)[0]["labels"] is not None
    both = [str(tmp_path / "E07500.hea"), str(tmp_path / "gone.hea")]
    mixed = subprocess.run([script, "predict", str(exported), *both], capture_output=True, text=True)
    assert mixed.returncode == 1
    assert "gone.hea" in mixed.stderr and "E07500.hea" in mixed.stdout


def test_int8_export_tracks_the_fp32_model_and_predicts(exported: Path, data, tmp_path: Path) -> None:
    model_dir = Path(shutil.copytree(exported, tmp_path / "m"))
    figures = add_int8(model_dir, data.train, data.val, data.test)
    int8, fp32 = figures["int8"], figures["fp32_onnx"]
    assert (model_dir / MODEL_INT8_ONNX).stat().st_size / 2**20 == pytest.approx(int8["size_mb"])
    assert int8["size_mb"] < 0.6 * fp32["size_mb"]  # a tiny network: scales and graph weigh more than in E1
    info = json.loads((model_dir / "model.json").read_text())
    assert info["int8"]["file"] == MODEL_INT8_ONNX and info["int8"]["latency"]["onnxruntime"] == onnxruntime.__version__
    # The fp32 ONNX file scores what the PyTorch model scored; the int8 one stays close to it.
    torch_val = info["metrics"]["validation"]["micro_auroc"]
    assert fp32["validation"]["micro_auroc"] == pytest.approx(torch_val, abs=1e-4)
    assert abs(int8["validation"]["micro_auroc"] - torch_val) < 0.03
    assert abs(int8["test"]["micro_auroc"] - fp32["test"]["micro_auroc"]) < 0.03
    want = onnx_probabilities(model_dir / "model.onnx", data.val)
    got = onnx_probabilities(model_dir / MODEL_INT8_ONNX, data.val)
    assert np.corrcoef(want.ravel(), got.ravel())[0, 1] > 0.95
    # predict --int8 runs the int8 file, and agrees with the PyTorch model within quantization error.
    copy_record("E07500", tmp_path)
    [plain] = predict_files(model_dir, [tmp_path / "E07500.hea"])
    [quantized] = predict_files(model_dir, [tmp_path / "E07500.hea"], int8=True)
    assert quantized.error is None and set(quantized.probabilities) == set(plain.probabilities)
    assert max(abs(quantized.probabilities[k] - plain.probabilities[k]) for k in plain.probabilities) < 0.1
    with pytest.raises(FileNotFoundError, match="export --int8"):
        predict_files(exported, [tmp_path / "E07500.hea"], int8=True)


def test_a_model_directory_without_onnx_holds_weights_and_description_that_load(tmp_path: Path) -> None:
    # What a trial stores (its artifacts); `ecgsearch export` writes the ONNX file from it later.
    model = ECGResNet(thesis_config("E18"))
    out = export_model(model, tmp_path / "m", classes=class_set("thesis17"), onnx=False)
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.pt"]
    loaded, info = load_model(out)
    assert info["arch"] == model.config.to_dict()
    pairs = zip(loaded.state_dict().values(), model.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
