"""Your own data: WFDB .dat records (formats 16 and 212) with `--source NAME`, held out as a test set."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from ecg_files import copy_record, real_signal, sph_pair, write_sph
from search_helpers import ecgsearch, edited

from ecgnet.data.cache import prepare_cache
from ecgnet.data.cache_reader import ECGCache
from ecgnet.data.cinc import parse_header, read_cinc_record
from ecgnet.data.preprocess import preprocess
from ecgnet.data.record import LEADS
from ecgnet.data.sources import check_source_name
from ecgnet.data.sph import read_sph_record
from ecgnet.data_spec import DataSpec
from ecgnet.errors import InputError
from ecgnet.predict import read_for_prediction
from ecgnet.runner import load_data
from ecgnet.train_config import TrainConfig
from ecgsearch.study.definition import DefinitionError, load_definition

with warnings.catch_warnings():  # wfdb calls pandas in ways pandas 3 deprecates; not ours to fix
    warnings.simplefilter("ignore", DeprecationWarning)
    import wfdb

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")

# (record name, WFDB format, rate): names no Challenge source has.
OWN = (("r16_500", "16", 500), ("r212_500", "212", 500), ("r16_360", "16", 360), ("r212_360", "212", 360))
CODES = "164889003,426783006"
SIGNALS = ("HR06000", "HR06001", "JS20000", "E07500")  # the real samples each own record holds
CHALLENGE = ("E07500", "E07501", "E07514", "HR06000", "HR06001", "JS20000", "JS20005")


def physical(name: str) -> np.ndarray:
    """A real fixture signal in mV, (samples, leads) as wfdb takes it."""
    return (real_signal(name).astype(np.float64) / 1000).T


def write_own(dest: Path) -> dict[str, np.ndarray]:
    """Records written by ``wfdb.wrsamp`` with ``# Dx:``/``# Age:``/``# Sex:`` comments; name -> mV written."""
    dest.mkdir(parents=True, exist_ok=True)
    written = {}
    for (name, fmt, fs), source in zip(OWN, SIGNALS, strict=True):
        signal = physical(source)
        wfdb.wrsamp(name, fs=fs, units=["mV"] * 12, sig_name=list(LEADS), p_signal=signal, fmt=[fmt] * 12,
                    comments=[f"Dx: {CODES}", "Age: 61", "Sex: Male"], write_dir=str(dest))  # fmt: skip
        written[name] = signal.T
    return written


def test_wrsamp_writes_what_the_header_parser_reads(tmp_path: Path) -> None:
    write_own(tmp_path)
    header = parse_header(tmp_path / "r212_360.hea")
    assert (header.name, header.leads, header.fs, header.signal_file) == ("r212_360", 12, 360.0, "r212_360.dat")
    assert header.comments == {"dx": CODES, "age": "61", "sex": "Male"}
    assert (tmp_path / "r212_360.hea").read_text().splitlines()[1].split()[1] == "212"


@pytest.mark.parametrize(("name", "fmt", "fs"), OWN)
def test_dat_records_read_as_the_physical_signal_written(name: str, fmt: str, fs: int, tmp_path: Path) -> None:
    written = write_own(tmp_path)[name]
    record = read_cinc_record(tmp_path / f"{name}.hea", own_source="MYDB")
    assert (record.name, record.source, record.fs, record.age, record.sex) == (name, "MYDB", fs, 61.0, "male")
    assert record.codes == tuple(CODES.split(",")) and record.signal.shape == written.shape
    # Off by at most half a quantisation step of the format (12 bits for 212, 16 bits for 16).
    step = 1 / np.asarray(parse_header(tmp_path / f"{name}.hea").gains)[:, None]
    assert (np.abs(record.signal - written) <= step / 2 + 1e-5).all()
    assert step.max() < (3e-3 if fmt == "212" else 2e-4)


@pytest.fixture(scope="module")
def own_folder(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Own .dat records beside the seven Challenge fixture records (which keep their sources)."""
    root = tmp_path_factory.mktemp("own")
    written = write_own(root / "mydb" / "nested")
    for name in CHALLENGE:
        copy_record(name, root / "challenge")
    return root, written


def test_prepare_with_a_source_caches_own_records_under_it(own_folder, tmp_path: Path) -> None:
    root, written = own_folder
    report = prepare_cache([root], tmp_path / "ecg.h5", workers=2, own_source="MYDB")
    assert report.rejected == []
    assert report.per_source == {"G12EC": 3, "MYDB": 4, "Ningbo": 2, "PTB-XL": 2}
    cache = ECGCache(tmp_path / "ecg.h5")
    table = cache.table.set_index("name")
    for name, fmt, fs in OWN:
        row = table.loc[name]
        assert (row["source"], row["codes"], row["age"], row["sex"]) == ("MYDB", CODES, 61.0, 2)
        cached = cache.signal(int(np.flatnonzero(cache.table["name"] == name)[0])).astype(np.float32)
        expected = preprocess(written[name], fs)
        assert cached.shape == expected.shape == (12, 2500 if fs == 500 else 3472), (name, fmt)
        np.testing.assert_allclose(cached, expected, atol=5e-3, rtol=2e-3, err_msg=f"{name} (format {fmt}, {fs} Hz)")


def test_without_a_source_own_records_are_rejected_with_a_reason_naming_source(own_folder, tmp_path) -> None:
    root, _ = own_folder
    report = prepare_cache([root], tmp_path / "ecg.h5", workers=1)
    assert report.per_source == {"G12EC": 3, "Ningbo": 2, "PTB-XL": 2}
    rejected = {Path(path).name: reason for path, reason in report.rejected}
    assert set(rejected) == {f"{name}.hea" for name, _, _ in OWN}
    for reason in rejected.values():
        assert "is not a Challenge 2021 name" in reason and "`data prepare --source NAME`" in reason
    with open(report.rejects_file) as f:
        assert len(list(csv.DictReader(f))) == 4


def test_source_names_are_simple_and_not_a_test_group() -> None:
    assert check_source_name("MYDB") == "MYDB" and check_source_name("PTB-XL") == "PTB-XL"
    for bad in ("", "my db", "-x", "a/b", "x" * 65, "é"):
        with pytest.raises(ValueError, match="is not a simple name"):
            check_source_name(bad)
    with pytest.raises(ValueError, match=r"'sph' is the name of the test group SPH; choose another"):
        check_source_name("sph")


def test_damaged_dat_records_are_rejected_naming_the_file(tmp_path: Path) -> None:
    write_own(tmp_path / "data")
    (tmp_path / "data" / "r16_500.dat").unlink()
    with open(tmp_path / "data" / "r212_500.dat", "r+b") as f:
        f.truncate(1001)
    report = prepare_cache([tmp_path / "data"], tmp_path / "ecg.h5", workers=1, own_source="MYDB")
    rejected = dict(report.rejected)
    assert rejected[str(tmp_path / "data" / "r16_500.dat")] == "signal file is missing"
    assert rejected[str(tmp_path / "data" / "r212_500.hea")].startswith("unreadable WFDB record (")
    assert report.per_source == {"MYDB": 2}


def test_prediction_reads_dat_records_too(tmp_path: Path) -> None:
    written = write_own(tmp_path)
    for suffix in (".hea", ".dat"):
        signal, fs, age, sex = read_for_prediction(tmp_path / f"r212_360{suffix}")
        assert (fs, age, sex) == (360.0, 61.0, "male")
        np.testing.assert_allclose(signal, written["r212_360"], atol=3e-3)


def test_training_and_prediction_read_sph_demographics_alike(tmp_path: Path) -> None:
    """One age/sex parser: an age outside 0-120 is unknown for both (prediction once kept it)."""
    sph_pair(tmp_path / "pair")
    mv = real_signal("HR06000").astype(np.float32) / 1000
    rows = [{"ECG_ID": "A00009", "AHA_Code": "1", "Patient_ID": "P9", "Age": 150, "Sex": "f", "N": 5000,
             "Date": "2020-01-01"}]  # fmt: skip
    metadata = write_sph(tmp_path / "odd", rows, {"A00009": mv})
    entry = {k: str(v) for k, v in rows[0].items()}
    record = read_sph_record(metadata.with_name("A00009.h5"), entry)
    _, _, age, sex = read_for_prediction(metadata.with_name("A00009.h5"))
    assert (record.age, record.sex) == (age, sex) == (None, "female")
    _, _, age, sex = read_for_prediction(tmp_path / "pair" / "A00003.h5")
    assert (age, sex) == (40.0, "female")


# The command line: prepare with --source, split --test SOURCE ---------------------------------


@pytest.fixture
def prepared(own_folder, tmp_path: Path, capsys, monkeypatch) -> Path:
    root, _ = own_folder
    cache = tmp_path / "ecg.h5"
    code, out, err = ecgsearch(capsys, monkeypatch, "data", "prepare", root, "--out", cache, "--source", "MYDB",
                               "--json", "--workers", "1")  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["per_source"] == {"G12EC": 3, "MYDB": 4, "Ningbo": 2, "PTB-XL": 2} and summary["rejected"] == 0
    return cache


def test_cli_own_records_land_in_the_cache_and_split_holds_them_out(prepared, tmp_path, capsys, monkeypatch):
    code, _, err = ecgsearch(capsys, monkeypatch, "data", "split", prepared, "--out", tmp_path / "split",
                             "--test", "MYDB", "--folds", "2")  # fmt: skip
    assert code == 0, err
    subsets = {s: (tmp_path / "split" / f"{s}.csv").read_text().split()[1:] for s in ("train", "val", "test")}
    assert sorted(subsets["test"]) == sorted(name for name, _, _ in OWN)
    assert sorted(subsets["train"] + subsets["val"]) == list(CHALLENGE)


def test_cli_an_unknown_test_name_is_one_error_line_listing_groups_and_sources(prepared, tmp_path, capsys,
                                                                              monkeypatch) -> None:  # fmt: skip
    code, _, err = ecgsearch(capsys, monkeypatch, "data", "split", prepared, "--out", tmp_path / "s", "--test", "OTHER")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {prepared}: unknown test split 'OTHER'; known: cpsc, g12ec, ")
    assert "chapman-ningbo (test groups) and G12EC, MYDB, Ningbo, PTB-XL (sources of the data)" in err


@pytest.mark.parametrize(("source", "problem"), [("my db", "is not a simple name"), ("cpsc", "test group CPSC")])
def test_cli_a_bad_source_name_is_one_error_line(source, problem, own_folder, tmp_path, capsys, monkeypatch):
    root, _ = own_folder
    code, _, err = ecgsearch(capsys, monkeypatch, "data", "prepare", root, "--out", tmp_path / "x.h5", "--source",
                             source)  # fmt: skip
    assert code == 2 and err.startswith(f"error: --source: source name {source!r} ") and problem in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.h5").exists()


def definition_text(test: str, cache: Path) -> str:
    text = (Path(__file__).parent / "fixtures" / "studies" / "tiny.toml").read_text()
    return edited(
        text,
        ("synthetic = { records = 120, seed = 0 }", f'cache = "{cache}"'),
        ('test = "cpsc"', f'test = "{test}"'),
        ("folds = 4", "folds = 2"),
    )


def test_a_definition_can_hold_out_an_own_source(prepared, tmp_path: Path) -> None:
    (tmp_path / "mydb.toml").write_text(definition_text("MYDB", prepared))
    spec = load_definition(tmp_path / "mydb.toml").data_spec
    assert spec.test == "MYDB"
    data = load_data(spec, TrainConfig(window=512))
    names = data.cache.table["name"].to_numpy()
    assert sorted(names[data.test.indices]) == sorted(name for name, _, _ in OWN)
    assert sorted([*names[data.train.indices], *names[data.val.indices]]) == list(CHALLENGE)
    (tmp_path / "bad.toml").write_text(definition_text("NOPE", prepared))
    with pytest.raises(InputError, match=r"unknown test split 'NOPE'; known: .* and G12EC, MYDB, Ningbo, PTB-XL \("):
        load_data(load_definition(tmp_path / "bad.toml").data_spec, TrainConfig(window=512))
    (tmp_path / "worse.toml").write_text(definition_text("my db", prepared))
    with pytest.raises(DefinitionError, match=r"data\.test: 'my db' is neither a test group"):
        load_definition(tmp_path / "worse.toml")
    assert DataSpec(str(prepared)).test == "cpsc"
