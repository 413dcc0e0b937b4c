"""Preprocessing styles: base-code reproduces the thesis's base code; the style travels with cache and model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from ecg_files import CINC, copy_record, real_signal, write_cinc
from scipy.interpolate import CubicSpline
from scipy.signal import butter, filtfilt, sosfiltfilt
from search_helpers import edited, sqlite_url

from ecgnet.arch import ArchConfig
from ecgnet.data.cache import prepare_cache
from ecgnet.data.cache_reader import ECGCache, check_cache_fits
from ecgnet.data.cinc import read_cinc_record
from ecgnet.data.labels import class_set
from ecgnet.data.preprocess import PreprocessConfig, preprocess
from ecgnet.data_spec import DataSpec
from ecgnet.errors import InputError
from ecgnet.export import export_model, load_model
from ecgnet.model import ECGResNet
from ecgnet.predict import predict_files
from ecgsearch.cli import main
from ecgsearch.errors import UserError
from ecgsearch.study.definition import load_definition
from ecgsearch.study.study import SearchContext
from ecgsearch.study.workspace import Workspace, data_fingerprint

RECORDS = ("E07500", "E07501", "E07514", "HR06000", "HR06001", "JS20000", "JS20005")
BASE_CODE = PreprocessConfig(style="base-code")


def base_code_reference(signal_mv: np.ndarray, fs: float) -> np.ndarray:
    """The base code's steps as issue 10 describes them, written apart from ecgnet, one lead at a time.

    Butterworth order 2, 0.5-50 Hz in (b, a) form with normalised band edges; filtfilt with
    even padding of 250 samples; a cubic spline from linspace(0, n/fs, n) onto
    linspace(0, n/fs, int(n*250/fs)).
    """
    nyquist = fs / 2
    b, a = butter(2, [0.5 / nyquist, 50 / nyquist], btype="band")
    n = signal_mv.shape[1]
    old_times = np.linspace(0, n / fs, n)
    new_times = np.linspace(0, n / fs, int(n * 250 / fs))
    leads = []
    for lead in np.asarray(signal_mv, dtype=np.float64):
        filtered = filtfilt(b, a, lead, padtype="even", padlen=250)
        leads.append(CubicSpline(old_times, filtered)(new_times))
    return np.stack(leads)


def records_at(rate: float, dest: Path) -> list[Path]:
    """The fixture records, as they are (500 Hz) or their samples declared at another rate."""
    if rate == 500:
        return [CINC / f"{name}.hea" for name in RECORDS]
    return [write_cinc(dest, f"A{i:04d}", real_signal(name), fs=rate) for i, name in enumerate(RECORDS[:3], 1)]


@pytest.mark.parametrize("rate", [500, 360, 257, 1000])
def test_base_code_style_equals_the_base_code_steps_on_real_records(rate: float, tmp_path: Path) -> None:
    for header in records_at(rate, tmp_path):
        record = read_cinc_record(header)
        ours = preprocess(record.signal, record.fs, BASE_CODE)
        reference = base_code_reference(record.signal, record.fs)
        assert ours.shape == reference.shape == (12, int(record.signal.shape[1] * 250 / rate))
        np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0, err_msg=f"{header.name} at {rate} Hz")


def test_the_two_styles_differ_measurably_most_near_record_ends() -> None:
    for name in RECORDS:
        record = read_cinc_record(CINC / f"{name}.hea")
        exact = preprocess(record.signal, record.fs)
        base = preprocess(record.signal, record.fs, BASE_CODE)
        assert exact.shape == base.shape == (12, 2500)
        difference = np.abs(exact - base)
        assert difference.max() > 0.1, name  # mV: the switch changes what a model sees
        # Both are the same band-pass of the same data: mid-record they agree far better than 1 mV.
        assert difference[:, 500:-500].mean() < 0.05, name


def test_exact_style_samples_at_k_over_250_and_base_code_stretches() -> None:
    """At 500 Hz exact keeps every second filtered sample; base-code's spline falls between them."""
    record = read_cinc_record(CINC / "HR06000.hea")
    signal = record.signal.astype(np.float64)
    sos = butter(2, [0.5, 50], btype="bandpass", fs=500, output="sos")
    np.testing.assert_allclose(preprocess(signal, 500), sosfiltfilt(sos, signal)[:, ::2], atol=1e-5)
    base = preprocess(signal, 500, BASE_CODE)
    b, a = butter(2, [0.5, 50], btype="bandpass", fs=500)
    even = filtfilt(b, a, signal, padtype="even", padlen=250)
    assert np.abs(base - even[:, ::2]).max() > 0.01  # the stretch, not only the padding


def test_base_code_needs_more_than_250_samples_and_says_so(tmp_path: Path) -> None:
    signal = real_signal("HR06000")[:, :250].astype(np.float32) / 1000
    with pytest.raises(ValueError, match=r"^250 samples; the base-code filter pads 250 samples .* at least 251$"):
        preprocess(signal, 500, BASE_CODE)
    assert preprocess(signal, 500).shape == (12, 125)  # the exact style filters it
    assert preprocess(real_signal("HR06000")[:, :251] / 1000, 500, BASE_CODE).shape == (12, 125)

    write_cinc(tmp_path / "data", "A0001", real_signal("HR06000")[:, :250])
    copy_record("E07500", tmp_path / "data")
    report = prepare_cache([tmp_path / "data"], tmp_path / "base.h5", workers=1, config=BASE_CODE)
    assert report.records == 1
    [(path, reason)] = report.rejected
    assert path == str(tmp_path / "data" / "A0001.hea")
    assert reason.startswith("cannot preprocess: 250 samples; the base-code filter pads 250 samples")


@pytest.fixture(scope="module")
def two_caches(tmp_path_factory) -> dict[str, Path]:
    """The same fixture records prepared in each style."""
    root = tmp_path_factory.mktemp("styles")
    for name in RECORDS:
        copy_record(name, root / "records")
    caches = {}
    for style in ("exact", "base-code"):
        caches[style] = root / f"{style}.h5"
        prepare_cache([root / "records"], caches[style], workers=1, config=PreprocessConfig(style=style))
    return caches


def test_the_cache_records_its_style_and_holds_that_style_s_signal(two_caches: dict[str, Path]) -> None:
    for style, path in two_caches.items():
        cache = ECGCache(path)
        assert cache.preprocess_config.style == style
        assert json.loads(h5py.File(path, "r").attrs["preprocess"])["style"] == style
        assert cache.info()["preprocess"] == style
    base = ECGCache(two_caches["base-code"])
    index = int(np.flatnonzero(base.table["name"] == "JS20005")[0])
    record = read_cinc_record(CINC / "JS20005.hea")
    expected = base_code_reference(record.signal, record.fs)
    np.testing.assert_allclose(base.signal(index).astype(np.float32), expected, atol=3e-3, rtol=2e-3)
    exact = ECGCache(two_caches["exact"])
    assert np.abs(exact.signal(index).astype(np.float32) - expected).max() > 0.1


def test_the_style_is_part_of_the_data_fingerprint(two_caches: dict[str, Path]) -> None:
    assert data_fingerprint(two_caches["exact"]) != data_fingerprint(two_caches["base-code"])


def without_style(path: Path, dest: Path) -> Path:
    """A copy of a cache as code before preprocessing styles wrote it: no ``style`` in its attribute."""
    dest.write_bytes(path.read_bytes())
    with h5py.File(dest, "r+") as f:
        settings = json.loads(f.attrs["preprocess"])
        del settings["style"]
        f.attrs["preprocess"] = json.dumps(settings)
    return dest


def test_an_old_cache_without_a_style_reads_as_exact(two_caches: dict[str, Path], tmp_path: Path) -> None:
    old = without_style(two_caches["exact"], tmp_path / "old.h5")
    assert ECGCache(old).preprocess_config == PreprocessConfig()
    check_cache_fits(DataSpec(str(old), test="g12ec", preprocess="exact"))
    with pytest.raises(InputError, match="prepared with preprocess style 'exact', but the data settings ask for"):
        check_cache_fits(DataSpec(str(old), test="g12ec", preprocess="base-code"))


def test_a_run_asking_for_another_style_is_refused_naming_cache_styles_and_command(two_caches) -> None:
    path = two_caches["exact"]
    check_cache_fits(DataSpec(str(path), test="g12ec"))  # no style asked: the cache's own
    with pytest.raises(InputError) as refused:
        check_cache_fits(DataSpec(str(path), test="g12ec", preprocess="base-code"))
    message = str(refused.value)
    assert message.startswith(f"{path}: the cache was prepared with preprocess style 'exact'")
    assert "ask for 'base-code'" in message
    assert f"`ecgsearch data prepare DATA_DIRS --out {path} --preprocess base-code`" in message


def definition_on(cache: Path, preprocess_style: str, tmp_path: Path) -> Path:
    """The tiny test study on ``cache`` (held-out G12EC, 2 folds), asking for a preprocessing style."""
    text = (Path(__file__).parent / "fixtures" / "studies" / "tiny.toml").read_text()
    text = edited(
        text,
        ("synthetic = { records = 120, seed = 0 }", f'cache = "{cache}"\npreprocess = "{preprocess_style}"'),
        ('test = "cpsc"', 'test = "g12ec"'),
        ("folds = 4", "folds = 2"),
    )
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_a_study_on_a_cache_of_another_style_is_refused_before_any_study_exists(two_caches, tmp_path: Path) -> None:
    definition = load_definition(definition_on(two_caches["exact"], "base-code", tmp_path))
    workspace = Workspace(tmp_path / "ws")
    with pytest.raises(UserError, match=r"prepared with preprocess style 'exact'.*--preprocess base-code"):
        SearchContext.prepare(definition, workspace, sqlite_url(tmp_path / "ws"))
    assert not (tmp_path / "ws" / "study.db").exists()
    same = load_definition(definition_on(two_caches["base-code"], "base-code", tmp_path))
    context = SearchContext.prepare(same, workspace, sqlite_url(tmp_path / "ws"))
    assert context.data_spec.preprocess == "base-code"


def test_cli_worker_refuses_the_wrong_style_in_one_error_line(two_caches, tmp_path: Path, capsys, monkeypatch):
    study = definition_on(two_caches["base-code"], "exact", tmp_path)
    monkeypatch.delenv("ECGSEARCH_STORAGE", raising=False)
    monkeypatch.setattr(sys, "argv", ["ecgsearch", "worker", "--study-def", str(study), "--study-name", "s",
                                      "--trials", "1", "--workspace", str(tmp_path / "ws")])  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {two_caches['base-code']}: the cache was prepared with preprocess style")
    assert "--preprocess exact" in lines[0] and str(study) in lines[0]


def test_shipped_definitions_choose_their_styles() -> None:
    assert load_definition("thesis").data_spec.preprocess == "base-code"
    assert load_definition("demo").data_spec.preprocess is None  # its synthetic cache is prepared exact


def test_synthetic_data_is_prepared_in_the_style_asked_for(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path).create()
    exact, base = (workspace.synthetic_cache(12, 0, style) for style in ("exact", "base-code"))
    assert exact.name == "synthetic-12-seed0.h5" and base.name == "synthetic-12-seed0-base-code.h5"
    assert ECGCache(exact).preprocess_config.style == "exact"
    assert ECGCache(base).preprocess_config.style == "base-code"
    assert list(ECGCache(exact).table["name"]) == list(ECGCache(base).table["name"])


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """One small untrained model exported with each style, and once with a model.json of before styles."""
    root = tmp_path_factory.mktemp("models")
    model = ECGResNet(ArchConfig(blocks=(1, 1, 1, 1), width_multiplier=0.25))
    dirs = {}
    for style in ("exact", "base-code"):
        config = PreprocessConfig(style=style)
        dirs[style] = export_model(model, root / style, classes=class_set("thesis17"), preprocess=config)
    old = export_model(model, root / "old", classes=class_set("thesis17"))
    info = json.loads((old / "model.json").read_text())
    del info["preprocess"]["style"]
    (old / "model.json").write_text(json.dumps(info))
    dirs["old"] = old
    return dirs


def test_model_json_carries_the_style_and_old_model_json_loads_as_exact(model_dirs, tmp_path: Path) -> None:
    for style in ("exact", "base-code"):
        _, info = load_model(model_dirs[style])
        assert info["preprocess"]["style"] == style
    _, info = load_model(model_dirs["old"])
    assert PreprocessConfig(**info["preprocess"]) == PreprocessConfig()
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("model.pt", "model.json"):
        (bad / name).write_bytes((model_dirs["exact"] / name).read_bytes())
    info = json.loads((bad / "model.json").read_text())
    info["preprocess"]["style"] = "smooth"
    (bad / "model.json").write_text(json.dumps(info))
    with pytest.raises(InputError, match=r"malformed preprocess \(unknown preprocess style 'smooth'"):
        load_model(bad)


def test_prediction_preprocesses_as_the_model_json_says(model_dirs, tmp_path: Path) -> None:
    short = write_cinc(tmp_path, "A0001", real_signal("HR06000")[:, :250])  # too short for base-code only
    normal = copy_record("HR06000", tmp_path)
    exact = predict_files(model_dirs["exact"], [short, normal])
    base = predict_files(model_dirs["base-code"], [short, normal])
    old = predict_files(model_dirs["old"], [short, normal])
    assert exact[0].error is None and old[0].error is None
    assert base[0].error is not None and base[0].error.startswith("cannot preprocess: 250 samples;")
    assert base[1].probabilities != exact[1].probabilities  # same weights, other input
    assert old[1].probabilities == exact[1].probabilities


def test_cli_prepare_takes_the_style_and_refuses_an_unknown_one(tmp_path: Path, capsys, monkeypatch) -> None:
    copy_record("E07500", tmp_path / "data")

    def prepare(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["ecgsearch", "data", "prepare", str(tmp_path / "data"), *args])
        with pytest.raises(SystemExit) as exited:
            main()
        captured = capsys.readouterr()
        return exited.value.code or 0, captured.out, captured.err

    code, out, _ = prepare("--out", str(tmp_path / "b.h5"), "--preprocess", "base-code", "--json", "--workers", "1")
    assert code == 0 and json.loads(out)["preprocess"] == "base-code"
    assert ECGCache(tmp_path / "b.h5").preprocess_config.style == "base-code"
    code, _, err = prepare("--out", str(tmp_path / "c.h5"), "--preprocess", "smooth")
    assert code == 2 and err.strip() == "error: --preprocess: unknown style 'smooth'; known: exact, base-code"
    assert not (tmp_path / "c.h5").exists()
