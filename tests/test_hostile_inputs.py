"""Hostile files: the fuzz harness's quick profile, and one regression test per thing it found."""

from __future__ import annotations

import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from ecg_files import copy_record, real_signal, write_cinc

from ecgnet.data.cinc import read_cinc_record
from ecgnet.data.record import RecordError
from ecgnet.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_the_quick_fuzz_profile_finds_no_crash_hang_or_memory_blowup() -> None:
    """300 mutated inputs across the readers (the long profile: bench/fuzz_inputs.py --examples 20000)."""
    # A looser time limit than the long profile's 5 s: this runs beside other tests on 2 cores.
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz_inputs.py"), "--examples", "300", "--seed", "7",
                          "--time-limit", "20"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = re.search(r"RESULT inputs=(\d+) crashes=(\d+) hangs=(\d+) memory=(\d+)", out.stdout)
    assert result and int(result[1]) == 300, out.stdout[-3000:]
    assert result.groups()[1:] == ("0", "0", "0"), out.stdout[-5000:]
    # Every reader was fed, and some inputs of each kind were refused (the mutations bite).
    table = dict(re.findall(r"^(\S+)\s+(\d+)\s+\d+\s+\d+", out.stdout, re.MULTILINE))
    assert {"challenge-E07500", "wfdb-16", "wfdb-212", "sph", "definition", "model-json"} <= set(table)


def _peak_bytes(call) -> int:
    tracemalloc.start()
    try:
        call()
    except (RecordError, InputError):
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize(("offset", "bit"), [(5, 5), (10, 6)])  # the row count's and the column count's high bytes
def test_a_mat_header_claiming_millions_of_values_is_refused_without_allocating_them(
    tmp_path: Path, offset: int, bit: int
) -> None:
    """Found by fuzzing: one flipped bit in the MATLAB v4 header made scipy allocate 744 MB."""
    header = copy_record("E07500", tmp_path)
    mat = tmp_path / "E07500.mat"
    data = bytearray(mat.read_bytes())
    data[offset] ^= 1 << bit
    mat.write_bytes(bytes(data))
    with pytest.raises(RecordError, match=r"unreadable \.mat file"):
        read_cinc_record(header)
    assert _peak_bytes(lambda: read_cinc_record(header)) < 4 * len(data)


def test_bytes_appended_to_a_mat_file_are_not_read_as_variables(tmp_path: Path) -> None:
    """Found by fuzzing: text after 'val' was taken for a variable header claiming 2 GB."""
    header = copy_record("E07500", tmp_path)
    clean = read_cinc_record(header).signal
    mat = tmp_path / "E07500.mat"
    mat.write_bytes(mat.read_bytes() + b"# Dx: 426783006\n# Dx: 426783006\n")
    assert (read_cinc_record(header).signal == clean).all()
    assert _peak_bytes(lambda: read_cinc_record(header)) < 20 * 2**20


def test_a_definition_that_is_not_utf8_is_one_error_naming_it(tmp_path: Path) -> None:
    """Found by fuzzing: a UnicodeDecodeError escaped load_definition."""
    from ecgsearch.study.definition import DefinitionError, load_definition

    path = tmp_path / "study.toml"
    path.write_bytes((ROOT / "studies" / "demo.toml").read_bytes().replace(b"search", b"s\xde\x0e\xad", 1))
    with pytest.raises(DefinitionError, match=rf"{re.escape(str(path))}: not UTF-8 text \(byte \d+\)"):
        load_definition(path)


@pytest.mark.parametrize("damage", ["first byte", "a pickle opcode"])
def test_a_damaged_model_pt_is_an_input_error(tmp_path: Path, damage: str) -> None:
    """Found by fuzzing: torch.load raised IndexError and AttributeError on these (KeyError on others)."""
    import torch

    from ecgnet.data.labels import DEFAULT_CLASS_SET, class_set
    from ecgnet.export import export_model, load_model
    from ecgnet.model import ECGResNet
    from ecgnet.thesis import thesis_config

    classes = class_set(DEFAULT_CLASS_SET)
    config = thesis_config("E18")
    torch.manual_seed(0)
    model_dir = export_model(ECGResNet(type(config)(**{**config.to_dict(), "num_classes": len(classes)})),
                             tmp_path / "m", classes=classes, onnx=False)  # fmt: skip
    weights = model_dir / "model.pt"
    data = bytearray(weights.read_bytes())
    if damage == "first byte":
        data[0] ^= 1  # "PK" -> "QK"
    else:
        # The fuzzer's example: a memo lookup in the pickle pointed at another object.
        at = data.index(b"((h\x04h\x05X", data.index(b"sample.1.biasr"))
        data[at + 5] = 1
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"model\.pt: not a readable PyTorch weights file"):
        load_model(model_dir)


@pytest.mark.parametrize("gain", ["+", "16+24", "1000(+-3)/mV"])
def test_a_gain_field_the_pattern_lets_through_is_a_bad_gain_field(tmp_path: Path, gain: str) -> None:
    """Found by fuzzing: float('+') and float('16+24') escaped as ValueError."""
    header = write_cinc(tmp_path, "A0001", real_signal(), gain=gain)
    with pytest.raises(RecordError, match="bad gain field"):
        read_cinc_record(header)


def test_a_header_padded_with_record_lines_is_refused_before_wfdb_reads_it(tmp_path: Path) -> None:
    """Found by fuzzing: 10,000 lines after the comments kept wfdb's header parser busy for seconds."""
    header = write_cinc(tmp_path, "A0001", real_signal())
    header.write_text(header.read_text() + "A0001 12 500 5000\n" * 10_000)
    with pytest.raises(RecordError, match="10000 line\\(s\\) after its 12 signal lines are not comments"):
        read_cinc_record(header)


def test_sph_rows_whose_files_are_missing_are_rejected_at_discovery(tmp_path: Path) -> None:
    """Found by fuzzing: 10,000 rows naming missing files were each chunked, written and read in vain."""
    from ecg_files import sph_pair

    from ecgnet.data.cache import prepare_cache

    folder = tmp_path / "sph"
    sph_pair(folder)
    metadata = folder / "metadata.csv"
    metadata.write_text(metadata.read_text() + "".join(f"B{i:05d},1,P9,50,M,5000,2020-01-01\n" for i in range(2000)))
    report = prepare_cache([folder], tmp_path / "c.h5", workers=1)
    assert report.records == 3 and len(report.rejected) == 2000
    assert {reason for _, reason in report.rejected} == {"signal file is missing"}
    assert not (tmp_path / "c.h5.parts").exists()
