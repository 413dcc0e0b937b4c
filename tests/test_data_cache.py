"""`data prepare`: bad input is reported and skipped, odd input accepted, runs resume after SIGKILL."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from ecg_files import copy_record, real_signal, sph_pair, write_cinc

from ecgnet.data.cache import parts_dir, prepare_cache
from ecgnet.data.cache_reader import ECGCache
from ecgnet.data.cinc import read_cinc_record
from ecgnet.data.preprocess import preprocess

GOOD = ("E07500", "HR06000", "JS20000")


def bad_and_odd_directory(root: Path) -> dict[str, str]:
    """Good real records plus one record per kind of bad input; returns name -> expected reason."""
    for name in GOOD:
        copy_record(name, root / "good")
    val = real_signal()
    bad = root / "nested" / "bad"
    expected = {}
    write_cinc(bad, "A0001", val[:8], header_leads=12)
    expected["A0001.mat"] = "header declares 12 leads but the signal file has 8"
    write_cinc(bad, "A0002", val, header_samples=4000)
    expected["A0002.mat"] = "header declares 4000 samples but the signal file has 5000"
    nan = val.astype(np.float64)
    nan[3, 100] = np.nan
    write_cinc(bad, "A0003", nan)
    expected["A0003.mat"] = "NaN"
    write_cinc(bad, "A0004", np.full_like(val, 7))
    expected["A0004.mat"] = "every lead is flat"
    write_cinc(bad, "A0005", val)
    (bad / "A0005.mat").write_bytes(b"this is not a MATLAB file")
    expected["A0005.mat"] = "unreadable .mat file"
    write_cinc(bad, "A0006", val)
    (bad / "A0006.mat").unlink()
    expected["A0006.mat"] = "signal file is missing"
    write_cinc(bad, "A0007", val, comments="#Age: 50\n#Sex: Male\n")
    expected["A0007.hea"] = "no #Dx line"
    write_cinc(bad, "A0008", np.zeros((12, 0), dtype=np.int16))
    expected["A0008.mat"] = "zero samples"
    (bad / "A0009.hea").write_bytes(b"\x00\x01 garbage\n")
    expected["A0009.hea"] = "unreadable header"
    write_cinc(bad, "A0010", val, comments="#Age: 50\n#Sex: Male\n#Dx: \n")
    expected["A0010.hea"] = "#Dx line is empty"
    write_cinc(bad, "A0011", val[:, :10])
    expected["A0011.hea"] = "cannot preprocess"
    write_cinc(bad, "A0012", val, comments="#Age: 50\n#Sex: Male\n#Dx: 164889003\n#Dx: \x00\n")
    expected["A0012.hea"] = "holds a NUL byte"  # found by mutating real headers: it used to end the whole run
    header = write_cinc(bad, "A0013", val)
    header.write_text(header.read_text().replace("A0013", "NaN", 1))
    expected["A0013.hea"] = "record line names record 'NaN', not 'A0013'"

    odd = root / "odd"
    write_cinc(odd, "I0001", val[:, :2570], fs=257)  # INCART's rate
    write_cinc(odd, "S0001", np.repeat(val, 2, axis=1), fs=1000)  # PTB's rate
    flat_lead = val.copy()
    flat_lead[4] = 0
    write_cinc(odd, "A0100", flat_lead)
    write_cinc(odd, "A0101", val[:, :1000])  # 2 s: shorter than a training window
    sph_pair(root / "sph")
    return expected


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("data")
    expected = bad_and_odd_directory(root)
    cache = tmp_path_factory.mktemp("cache") / "ecg.h5"
    prepare_cache([root], cache, workers=2, chunk_records=4)
    return root, cache, expected


def read_rejects(cache: Path) -> dict[str, str]:
    with open(cache.with_name(cache.name + ".rejects.csv")) as f:
        return {Path(row["file"]).name: row["reason"] for row in csv.DictReader(f)}


def test_each_bad_record_gets_one_reject_line_naming_file_and_reason(prepared) -> None:
    _, cache, expected = prepared
    rejects = read_rejects(cache)
    assert set(rejects) == set(expected)
    for name, reason in expected.items():
        assert reason in rejects[name], (name, rejects[name])


def test_good_and_odd_records_are_all_cached(prepared) -> None:
    _, cache, _ = prepared
    table = ECGCache(cache).table
    assert sorted(table["name"]) == sorted(
        [*GOOD, "I0001", "S0001", "A0100", "A0101", "SPH_A00001", "SPH_A00002", "SPH_A00003"]
    )
    lengths = dict(zip(table["name"], table["length"], strict=True))
    assert lengths["E07500"] == 2500  # 10 s at 250 Hz
    assert lengths["S0001"] == 2500  # 1000 Hz, 10 s
    assert lengths["I0001"] == 2500  # 257 Hz, 10 s, by cubic spline
    assert lengths["A0101"] == 500


def test_cached_signal_equals_the_preprocessed_record(prepared) -> None:
    _, cache, _ = prepared
    store = ECGCache(cache)
    index = int(np.flatnonzero(store.table["name"] == "HR06000")[0])
    record = read_cinc_record(Path(store.table.at[index, "path"]))
    expected = preprocess(record.signal, record.fs)
    np.testing.assert_allclose(store.signal(index).astype(np.float32), expected, atol=2e-3, rtol=2e-3)
    window = store.signal(index, start=100, length=256)
    assert window.shape == (12, 256)
    np.testing.assert_array_equal(window, store.signal(index)[:, 100:356])


def test_single_flat_lead_stays_flat(prepared) -> None:
    _, cache, _ = prepared
    store = ECGCache(cache)
    index = int(np.flatnonzero(store.table["name"] == "A0100")[0])
    assert np.all(store.signal(index)[4] == 0)


def test_cache_metadata_labels_and_info_counts_match_the_records(prepared) -> None:
    _, cache, _ = prepared
    store = ECGCache(cache)
    names = list(store.table["name"])
    meta = store.metadata()
    e = names.index("E07500")
    np.testing.assert_allclose(meta[e], [0.78, 0.0, 1.0])
    labels = store.labels("thesis17")
    assert labels[names.index("SPH_A00001")].nonzero()[0].tolist() == [1, 7]  # SB, AF
    info = store.info("thesis17")
    assert info["records"] == 10
    assert info["per_source"] == {"CPSC": 2, "G12EC": 1, "INCART": 1, "Ningbo": 1, "PTB": 1, "PTB-XL": 1, "SPH": 3}
    # SR: HR06000, SPH_A00002 and the four odd records (written with #Dx: 426783006)
    assert {k: v for k, v in info["per_class"].items() if v} == {
        "SR": 6, "SB": 2, "TAb": 1, "STach": 1, "RBBB": 1, "AF": 1, "PAC": 1
    }  # fmt: skip
    assert info["unlabeled"] == 0  # every record has a thesis17 class


def test_info_counts_a_record_with_no_class_of_the_set_as_unlabeled(tmp_path: Path) -> None:
    for name in GOOD:
        copy_record(name, tmp_path / "data")
    # 17338001 (ventricular premature beats) is a Challenge class but not one of the thesis's 17.
    write_cinc(tmp_path / "data", "A0200", real_signal(), comments="#Age: 60\n#Sex: Female\n#Dx: 17338001\n")
    prepare_cache([tmp_path / "data"], tmp_path / "ecg.h5", workers=1)
    store = ECGCache(tmp_path / "ecg.h5")
    assert store.info("thesis17")["unlabeled"] == 1
    assert store.info("challenge2021")["unlabeled"] == 0


def cache_content(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {key: f[key][()] for key in f} | {f"attr:{k}": f.attrs[k] for k in f.attrs}


def assert_same_cache(a: Path, b: Path) -> None:
    left, right = cache_content(a), cache_content(b)
    assert left.keys() == right.keys()
    for key in left:
        np.testing.assert_array_equal(left[key], right[key], err_msg=key)


def test_worker_count_and_chunking_do_not_change_the_cache(prepared, tmp_path: Path) -> None:
    root, cache, _ = prepared
    serial = tmp_path / "serial.h5"
    prepare_cache([root], serial, workers=1, chunk_records=4)
    assert_same_cache(cache, serial)


def test_prepare_killed_mid_run_resumes_and_equals_a_clean_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(48):  # real records renamed so there is enough work to kill mid-run
        val = np.roll(real_signal(("HR06000", "HR06001", "JS20000")[i % 3]), 37 * i, axis=1)
        write_cinc(data / f"d{i % 4}", f"A{i + 1:04d}", val)
    clean = tmp_path / "clean.h5"
    prepare_cache([data], clean, workers=1, chunk_records=2)

    killed = tmp_path / "killed.h5"
    # Each chunk sleeps a little so the kill lands mid-run, deterministically.
    slow = (
        "import sys, time; import ecgnet.data.cache as c; from pathlib import Path;"
        "orig = c._preprocess_chunk;"
        "c._preprocess_chunk = lambda job: (time.sleep(0.15), orig(job))[1];"
        f"c.prepare_cache([Path({str(data)!r})], Path({str(killed)!r}), workers=1, chunk_records=2)"
    )
    proc = subprocess.Popen([sys.executable, "-c", slow])
    parts = parts_dir(killed)
    deadline = time.monotonic() + 60
    # Finished chunks only: one being written is chunk-NNNNNN.tmp.npz until its rename.
    while len(list(parts.glob("chunk-??????.npz"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts.glob("chunk-??????.npz")))
    assert 5 <= done_before < 24 and not killed.exists()

    report = prepare_cache([data], killed, workers=2, chunk_records=2)
    assert report.resumed_chunks >= done_before
    assert report.records == 48 and not parts.exists()
    assert_same_cache(clean, killed)


def test_resume_with_different_inputs_starts_over(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name in GOOD:
        copy_record(name, data)
    cache = tmp_path / "ecg.h5"
    parts = parts_dir(cache)
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"inputs_sha256": "other", "records": 1}))
    (parts / "chunk-000000.npz").write_bytes(b"stale")
    report = prepare_cache([data], cache, workers=1)
    assert report.records == 3 and report.resumed_chunks == 0


def test_cli_prepare_reports_records_and_duplicates_as_json_and_info_reads_the_cache(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name in GOOD:
        copy_record(name, data)
    # A second copy of a record elsewhere is a duplicate; a header under another name is refused.
    copy_record("E07500", data / "again")
    shutil.copy(data / "E07500.hea", data / "E09999.hea")
    script = Path(sys.executable).with_name("ecgsearch")
    cache = tmp_path / "ecg.h5"
    out = subprocess.run(  # under a usual umask (022): the cache of patients' records is still private
        [script, "data", "prepare", str(data), "--out", str(cache), "--json"],
        capture_output=True,
        text=True,
        umask=0o022,
    )
    assert out.returncode == 0, out.stderr
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.glob("ecg.h5*")} == {
        "ecg.h5": 0o600, "ecg.h5.rejects.csv": 0o600
    }  # fmt: skip
    summary = json.loads(out.stdout)
    assert summary["records"] == 3 and summary["rejected"] == 2
    assert summary["per_source"] == {"G12EC": 1, "Ningbo": 1, "PTB-XL": 1}
    rejects = read_rejects(cache)
    assert "duplicate record name E07500" in rejects["E07500.hea"]
    assert "names record 'E07500', not 'E09999'" in rejects["E09999.hea"]
    info = subprocess.run([script, "data", "info", str(cache), "--json"], capture_output=True, text=True)
    assert json.loads(info.stdout)["per_class"]["SR"] == 1
    table = subprocess.run([script, "data", "info", str(cache)], capture_output=True, text=True)
    assert "records" in table.stdout and "PTB-XL" in table.stdout
    missing = subprocess.run([script, "data", "info", str(tmp_path / "nope.h5")], capture_output=True, text=True)
    assert missing.returncode == 2 and "nope.h5: no such cache" in missing.stderr
