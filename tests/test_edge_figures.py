"""Edge figures of ecgnet: ONNX Runtime CPU latency and static int8 quantization."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from ecgnet.arch import ArchConfig
from ecgnet.export import export_onnx
from ecgnet.int8 import compact_names, int8_size_mb, quantize_int8, random_calibration
from ecgnet.latency import cpu_model, model_latency, onnx_latency
from ecgnet.model import ECGResNet
from ecgnet.thesis import thesis_config


def test_int8_size_depends_on_the_structure_not_the_weights() -> None:
    torch.manual_seed(0)
    first = int8_size_mb(ECGResNet(thesis_config("E18")))
    torch.manual_seed(1)
    second = int8_size_mb(ECGResNet(thesis_config("E18")))
    assert first == pytest.approx(second, abs=1e-4)  # a few bytes of protobuf encoding at most
    assert int8_size_mb(ECGResNet(thesis_config("E17"))) > 2 * first  # a larger network, a larger file


def test_the_int8_file_holds_int8_weights_per_channel_and_tracks_the_fp32_outputs(tmp_path, monkeypatch) -> None:
    torch.manual_seed(0)
    model = ECGResNet(thesis_config("E12")).eval()
    fp32 = tmp_path / "model.onnx"
    export_onnx(model, fp32, samples=1024)
    calibration = random_calibration(samples=1024, count=8)
    int8 = quantize_int8(fp32, tmp_path / "model.int8.onnx", calibration)
    assert int8.stat().st_size < 0.3 * fp32.stat().st_size
    graph = onnx.load(str(int8)).graph
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert int8_weights and any(n.op_type == "DequantizeLinear" for n in graph.node)
    # Per-channel: a convolution's weight scales (DequantizeLinear's second input) are one per output channel.
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    scales = [
        initializers[n.input[1]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[1] in initializers
    ]
    assert any(s.ndim == 1 and s.size > 1 for s in scales)
    signal, metadata = calibration[0]
    inputs = {"signal": signal, "metadata": metadata}
    want = onnxruntime.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    got = onnxruntime.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    assert np.corrcoef(want.ravel(), got.ravel())[0, 1] > 0.9
    # The quantizer's own file, names and all, computes exactly what the compacted one does.
    monkeypatch.setattr("ecgnet.int8.compact_names", lambda model: model)
    verbose = quantize_int8(fp32, tmp_path / "verbose.int8.onnx", calibration)
    assert verbose.stat().st_size > int8.stat().st_size
    same = onnxruntime.InferenceSession(str(verbose), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    np.testing.assert_array_equal(same, got)


def test_compact_names_keeps_what_the_graph_computes_in_a_smaller_file(tmp_path) -> None:
    torch.manual_seed(0)
    long_names = tmp_path / "model.onnx"
    export_onnx(ECGResNet(thesis_config("E18")).eval(), long_names, samples=1024)
    original = onnx.load(str(long_names))
    compact = compact_names(onnx.load(str(long_names)))
    onnx.checker.check_model(compact)
    short = tmp_path / "short.onnx"
    onnx.save(compact, str(short))
    assert short.stat().st_size < long_names.stat().st_size
    assert [v.name for v in compact.graph.input] == [v.name for v in original.graph.input]  # still fed by name
    assert max(len(t.name) for t in compact.graph.initializer) < 4 and not compact.graph.value_info
    signal, metadata = random_calibration(samples=1024, count=1, seed=3)[0]
    inputs = {"signal": signal, "metadata": metadata}
    outputs = [onnxruntime.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
               for p in (long_names, short)]  # fmt: skip
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_latency_is_a_median_of_timed_runs_with_where_it_was_measured(tmp_path) -> None:
    model = ECGResNet(thesis_config("E18"))
    latency = model_latency(model, samples=1024, runs=5)
    assert latency.median_ms > 0 and latency.runs == 5 and latency.samples == 1024
    assert latency.cpu == cpu_model() and latency.cpu and latency.onnxruntime == onnxruntime.__version__
    # A larger network takes longer on one thread.
    assert model_latency(ECGResNet(thesis_config("E12")), samples=1024, runs=5).median_ms > latency.median_ms
    # Without a metadata layer the graph has no metadata input: only the declared inputs are fed.
    assert model_latency(ECGResNet(ArchConfig(metadata_features=0)), samples=1024, runs=3).median_ms > 0
    assert int8_size_mb(ECGResNet(ArchConfig(metadata_features=0, width_multiplier=0.125))) > 0
    with pytest.raises(ValueError, match=r"runs \(0\) and samples"):
        onnx_latency(tmp_path / "absent.onnx", runs=0)
