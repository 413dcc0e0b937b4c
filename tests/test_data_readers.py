"""Readers on real Challenge files, their quirks, and SPH files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ecg_files import CINC, real_signal, sph_pair, write_cinc

from ecgnet.data.cinc import read_cinc_record
from ecgnet.data.record import RecordError
from ecgnet.data.sources import source_of_cinc_record
from ecgnet.data.sph import iter_sph_entries, read_sph_record

EXPECTED = {
    # name: (source, age, sex, codes) as the real headers say
    "E07500": ("G12EC", 78.0, "male", ("67741000119109", "426177001")),
    "E07514": ("G12EC", 29.0, "male", ("427084000", "426434006", "59931005")),
    "HR06000": ("PTB-XL", 59.0, "female", ("164934002", "426783006")),
    "JS20000": ("Ningbo", 84.0, "female", ("284470004", "427084000", "698252002", "55930002")),
    # the real header has an empty entry: "284470004,89792004,427084000,,427172004"
    "JS20005": ("Ningbo", 83.0, "male", ("284470004", "89792004", "427084000", "427172004")),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_real_records_read_with_labels_age_sex(name: str) -> None:
    record = read_cinc_record(CINC / f"{name}.hea")
    source, age, sex, codes = EXPECTED[name]
    assert (record.name, record.source, record.age, record.sex, record.codes) == (
        name,
        source,
        age,
        sex,
        codes,
    )
    assert record.fs == 500 and record.signal.shape == (12, 5000) and record.signal.dtype == np.float32
    assert record.patient_id == name


def test_gain_converts_to_millivolts() -> None:
    # E07500.hea: lead I gain 1000/mV, first value -68; lead V3 first value -146.
    record = read_cinc_record(CINC / "E07500.hea")
    assert record.signal[0, 0] == pytest.approx(-0.068)
    assert record.signal[8, 0] == pytest.approx(-0.146)
    np.testing.assert_allclose(record.signal, real_signal("E07500") / 1000, rtol=1e-6)


def test_ptbxl_lowercase_mv_units_are_millivolts() -> None:
    np.testing.assert_allclose(read_cinc_record(CINC / "HR06000.hea").signal, real_signal("HR06000") / 1000, rtol=1e-6)


@pytest.mark.parametrize(
    ("comments", "age", "sex", "codes"),
    [
        ("# Age: 61\n# Sex: Female\n# Dx: 164889003,\n", 61.0, "female", ("164889003",)),
        ("#Age: NaN\n#Sex: Unknown\n#Dx: 164889003,164889003\n", None, None, ("164889003",)),
        ("#Age: 45\n#Sex: M\n#Dx: 59118001, 270492004\n", 45.0, "male", ("59118001", "270492004")),
    ],
)
def test_header_comment_quirks(tmp_path: Path, comments: str, age, sex, codes) -> None:
    header = write_cinc(tmp_path, "A0001", real_signal(), comments=comments)
    record = read_cinc_record(header)
    assert (record.age, record.sex, record.codes, record.source) == (age, sex, codes, "CPSC")


@pytest.mark.parametrize("gain", ["1000.0(0)/mV", "1000/mv", "1000(0)/mV"])
def test_gain_field_variants(tmp_path: Path, gain: str) -> None:
    header = write_cinc(tmp_path, "HR00001", real_signal(), gain=gain)
    np.testing.assert_allclose(read_cinc_record(header).signal, real_signal() / 1000, rtol=1e-6)


def test_gain_baseline_in_parentheses_is_subtracted(tmp_path: Path) -> None:
    header = write_cinc(tmp_path, "HR00001", real_signal(), gain="500(10)/mV")
    np.testing.assert_allclose(read_cinc_record(header).signal, (real_signal() - 10) / 500, rtol=1e-5, atol=1e-7)


def test_crlf_header_and_16x1_format(tmp_path: Path) -> None:
    header = write_cinc(tmp_path, "S0001", real_signal(), newline="\r\n")
    header.write_bytes(header.read_bytes().replace(b"16+24", b"16x1+24"))
    record = read_cinc_record(header)
    assert record.codes == ("426783006",) and record.source == "PTB" and record.age == 60.0


def test_georgia_record_line_names_the_mat_file() -> None:
    assert (CINC / "E07500.hea").read_text().split()[0] == "E07500.mat"
    assert read_cinc_record(CINC / "E07500.hea").name == "E07500"


@pytest.mark.parametrize(
    ("name", "source"),
    [("A0001", "CPSC"), ("Q0001", "CPSC-Extra"), ("I0001", "INCART"), ("S0001", "PTB"),
     ("HR00001", "PTB-XL"), ("E00001", "G12EC"), ("JS00001", "Chapman-Shaoxing"),
     ("JS10646", "Chapman-Shaoxing"), ("JS10647", "Ningbo")],
)  # fmt: skip
def test_source_from_record_name(name: str, source: str) -> None:
    assert source_of_cinc_record(name) == source


def test_unknown_record_prefix_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown prefix 'X'"):
        source_of_cinc_record("X0001")


def test_sph_records_read_with_patient_and_mapped_codes(tmp_path: Path) -> None:
    entries = list(iter_sph_entries(sph_pair(tmp_path)))
    records = [read_sph_record(path, entry) for path, entry in entries]
    assert [r.name for r in records] == ["SPH_A00001", "SPH_A00002", "SPH_A00003"]
    assert [r.patient_id for r in records] == ["SPH_P001", "SPH_P001", "SPH_P002"]
    assert records[0].codes == ("426177001", "164889003")  # 22 SB, 50 AF
    assert records[1].codes == ("426783006",)  # 1 normal -> sinus rhythm
    assert records[2].codes == ("AHA:60", "59118001")  # unmapped statement kept, modifier dropped
    assert records[0].source == "SPH" and records[0].fs == 500 and records[0].sex == "male"
    np.testing.assert_allclose(records[0].signal, real_signal("HR06000") / 1000, rtol=1e-6)


def test_sph_sample_count_mismatch_is_reported(tmp_path: Path) -> None:
    path, entry = next(iter(iter_sph_entries(sph_pair(tmp_path))))
    with pytest.raises(RecordError, match="header declares 4000 samples but the signal file has 5000"):
        read_sph_record(path, {**entry, "N": "4000"})
