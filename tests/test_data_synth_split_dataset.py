"""Synthetic data in real formats, leave-source-out patient-grouped splits, and the datasets."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest
import torch
from ecg_files import copy_record
from scipy.signal import find_peaks

from ecgnet.data.cache import prepare_cache
from ecgnet.data.cache_reader import ECGCache
from ecgnet.data.cinc import read_cinc_record
from ecgnet.data.dataset import RecordDataset, WindowDataset, minmax_scale, window_loader
from ecgnet.data.splits import make_split, read_split, write_split
from ecgnet.data.synth import CODES, write_synthetic_dataset


@pytest.fixture(scope="module")
def synth_cache(synthetic_cache_path: Path) -> ECGCache:
    return ECGCache(synthetic_cache_path)


def test_synthetic_records_are_deterministic_from_the_seed(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path / "a", records=12, seed=7)
    write_synthetic_dataset(tmp_path / "b", records=12, seed=7)
    write_synthetic_dataset(tmp_path / "c", records=12, seed=8)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 12
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []
    _, mismatch, _ = filecmp.cmpfiles(tmp_path / "a", tmp_path / "c", [str(f) for f in files], shallow=False)
    assert mismatch


def test_synthetic_records_read_back_through_the_real_readers(synth_cache: ECGCache) -> None:
    table = synth_cache.table
    assert set(table["source"]) == {"CPSC", "G12EC", "PTB-XL", "Chapman-Shaoxing", "Ningbo", "SPH"}
    first_cpsc = table[table["source"] == "CPSC"].iloc[0]
    record = read_cinc_record(Path(first_cpsc["path"]))
    assert set(record.codes) <= set(CODES.values()) and record.age is not None and record.sex is not None
    assert 0.1 < np.abs(record.signal).max() < 20.0  # millivolts, not raw ADC units (x1000)


def test_synthetic_labels_cover_every_thesis_class(synth_cache: ECGCache) -> None:
    positives = synth_cache.labels("thesis17").sum(axis=0)
    assert (positives > 0).all(), positives
    assert synth_cache.info()["unlabeled"] == 0


def test_synthetic_waveforms_depend_on_the_class(synth_cache: ECGCache) -> None:
    """Heart rate follows the rhythm label: tachycardia beats faster than bradycardia."""
    labels = synth_cache.labels("thesis17")
    fs = synth_cache.fs

    def rate(i: int) -> float:
        # QRS complexes are the steepest part of the signal: peaks of the summed slope.
        slope = np.abs(np.diff(synth_cache.signal(i).astype(np.float32), axis=1)).sum(axis=0)
        peaks, _ = find_peaks(slope, distance=int(0.27 * fs), height=0.35 * slope.max())
        return 60 / float(np.median(np.diff(peaks))) * fs

    brady = [rate(i) for i in np.flatnonzero(labels[:, 1])[:8]]  # SB
    tachy = [rate(i) for i in np.flatnonzero(labels[:, 5])[:8]]  # STach
    assert np.median(brady) < 62 < 98 < np.median(tachy)


def test_split_holds_out_the_test_sources_and_is_reproducible(synth_cache: ECGCache, tmp_path: Path) -> None:
    split = make_split(synth_cache, test="cpsc", folds=5, fold=0, seed=0)
    table = synth_cache.table.set_index("name")
    assert set(table.loc[split.test, "source"]) == {"CPSC"}
    assert "CPSC" not in set(table.loc[split.train + split.val, "source"])
    assert not set(split.train) & set(split.val)
    assert len(split.train) + len(split.val) + len(split.test) == len(table)
    assert 0.1 < len(split.val) / (len(split.train) + len(split.val)) < 0.3
    again = make_split(synth_cache, test="cpsc", folds=5, fold=0, seed=0)
    assert (again.train, again.val, again.test) == (split.train, split.val, split.test)
    other = make_split(synth_cache, test="cpsc", folds=5, fold=0, seed=1)
    assert other.val != split.val
    write_split(split, tmp_path / "s")
    assert read_split(tmp_path / "s") == {"train": split.train, "val": split.val, "test": split.test}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("test", ["cpsc", "g12ec"])
def test_an_sph_patient_never_straddles_two_subsets(synth_cache: ECGCache, seed: int, test: str) -> None:
    split = make_split(synth_cache, test=test, folds=3, fold=seed % 3, seed=seed)
    patients = synth_cache.table.set_index("name")["patient_id"]
    subsets = {name: subset for subset in ("train", "val", "test") for name in split.subset(subset)}
    by_patient: dict[str, set[str]] = {}
    for name, subset in subsets.items():
        by_patient.setdefault(patients[name], set()).add(subset)
    shared = [p for p in patients[patients.duplicated(keep=False)].unique()]
    assert len(shared) >= 3  # synthetic SPH gives about one patient in ten two records
    assert all(len(by_patient[p]) == 1 for p in shared)


def test_held_out_sph_takes_every_sph_record(synth_cache: ECGCache) -> None:
    split = make_split(synth_cache, test="sph", folds=5)
    assert {n for n in synth_cache.table["name"] if n.startswith("SPH_")} == set(split.test)


def test_window_dataset_crops_pads_and_is_reproducible(synth_cache: ECGCache) -> None:
    names = list(synth_cache.table["name"][:20])
    labels = synth_cache.labels("thesis17")
    data = WindowDataset(synth_cache, names, labels, window=4096, seed=1)
    signal, metadata, target = data[0]
    assert signal.shape == (12, 4096) and signal.dtype == torch.float16
    assert metadata.shape == (3,) and target.shape == (17,)
    assert torch.equal(data[0][0], signal)  # same seed, epoch and item: same crop
    data.set_epoch(1)
    lengths = synth_cache.table["length"].to_numpy()[:20]
    long_item = int(np.flatnonzero(lengths > 4096 + 100)[0])
    data.set_epoch(0)
    crop0 = data[long_item][0]
    data.set_epoch(1)
    assert not torch.equal(crop0, data[long_item][0])  # a new epoch draws a new crop
    short = WindowDataset(synth_cache, names, labels, window=8192, seed=0)
    padded = short[0][0]
    n = int(lengths[0])
    record = torch.from_numpy(np.array(synth_cache.signal(0)))
    starts = [k for k in range(8192 - n + 1) if torch.equal(padded[:, k : k + n], record)]
    assert len(starts) == 1  # the whole record sits once inside the window...
    outside = torch.cat([padded[:, : starts[0]], padded[:, starts[0] + n :]], dim=1)
    assert torch.count_nonzero(outside) == 0  # ...and the rest is zero padding


def test_record_dataset_returns_whole_records(synth_cache: ECGCache) -> None:
    names = list(synth_cache.table["name"][:5])
    data = RecordDataset(synth_cache, names, synth_cache.labels())
    for i in range(5):
        assert data[i][0].shape == (12, int(synth_cache.table["length"][i]))
    with pytest.raises(KeyError, match="not in"):
        RecordDataset(synth_cache, ["NOPE"], synth_cache.labels())


def test_minmax_scale_per_record_and_lead_with_flat_leads_zero() -> None:
    x = torch.tensor([[[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]], [[-2.0, 0.0, 2.0], [0.0, 1.0, 4.0]]])
    scaled = minmax_scale(x.half())
    expected = torch.tensor([[[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]], [[0.0, 0.5, 1.0], [0.0, 0.25, 1.0]]])
    assert scaled.dtype == torch.float32
    torch.testing.assert_close(scaled, expected)


def test_real_records_flow_from_files_to_a_training_batch(tmp_path: Path) -> None:
    for name in ("E07500", "HR06000", "JS20000"):
        copy_record(name, tmp_path / "data")
    prepare_cache([tmp_path / "data"], tmp_path / "ecg.h5", workers=1)
    cache = ECGCache(tmp_path / "ecg.h5")
    data = WindowDataset(cache, list(cache.table["name"]), cache.labels(), window=4096)
    loader = torch.utils.data.DataLoader(data, batch_size=3)
    signal, _, target = next(iter(loader))
    batch = minmax_scale(signal)
    assert batch.shape == (3, 12, 4096)
    assert float(batch.min()) == 0.0 and float(batch.max()) == 1.0
    assert target.sum() > 0


def test_batched_windows_equal_single_items_and_do_not_depend_on_workers(synth_cache: ECGCache) -> None:
    names = list(synth_cache.table["name"][:40])
    data = WindowDataset(synth_cache, names, synth_cache.labels(), window=2048, seed=5)
    data.set_epoch(3)
    batch_signal, batch_meta, batch_target = data[[7, 3, 30]]
    for row, item in enumerate((7, 3, 30)):
        signal, meta, target = data[item]
        assert torch.equal(batch_signal[row], signal)
        assert torch.equal(batch_meta[row], meta) and torch.equal(batch_target[row], target)

    def epoch_batches(workers: int) -> list[torch.Tensor]:
        loader = window_loader(data, batch_size=8, num_workers=workers, generator=torch.Generator().manual_seed(0))
        return [signal for signal, _, _ in loader]

    serial, parallel = epoch_batches(0), epoch_batches(2)
    assert len(serial) == 5 and all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))
    assert {tuple(s.shape) for s in serial} == {(8, 12, 2048)}


def test_minmax_scale_leaves_a_float32_input_unchanged() -> None:
    x = torch.tensor([[[1.0, 3.0, 2.0]]])
    minmax_scale(x)
    assert torch.equal(x, torch.tensor([[[1.0, 3.0, 2.0]]]))


def test_equal_length_batches_group_records_of_one_length_up_to_the_sample_budget() -> None:
    from ecgnet.data.dataset import equal_length_batches

    lengths = np.array([5, 3, 5, 5, 3, 12])
    assert equal_length_batches(lengths, 10) == [[1, 4], [0, 2], [3], [5]]
    assert equal_length_batches(lengths, 15) == [[1, 4], [0, 2, 3], [5]]  # a record over the budget still runs


def test_windows_cut_on_the_device_equal_the_loader_batch_for_batch(synth_cache: ECGCache) -> None:
    names = list(synth_cache.table["name"][:45])
    # Windows longer than some records: padding at a random offset as well as crops.
    data = WindowDataset(synth_cache, names, synth_cache.labels(), window=4500, seed=3)
    resident = data.on_device(torch.device("cpu"))
    assert data.on_device(torch.device("cpu")) is resident  # made once, kept
    # With loader workers too (4 on a GPU): each epoch's workers must see that epoch's crops.
    for workers in (0, 2):
        streamed_order, resident_order = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
        loader = window_loader(data, batch_size=8, generator=streamed_order, num_workers=workers)
        for epoch in range(2):
            data.set_epoch(epoch)
            streamed, held = list(loader), list(resident.batches(data, 8, resident_order))
            assert len(streamed) == len(held) == 6
            for (s, m, t), (rs, rm, rt) in zip(streamed, held, strict=True):
                assert torch.equal(s, rs) and torch.equal(m, rm) and torch.equal(t, rt)
    assert data.nbytes == int(data.lengths.sum()) * 12 * 2


def test_records_kept_on_the_device_equal_records_read_each_time(synth_cache: ECGCache) -> None:
    data = RecordDataset(synth_cache, list(synth_cache.table["name"][:30]), synth_cache.labels())
    read = list(data.batches(200_000))
    kept = list(data.batches(200_000, torch.device("cpu")))
    assert len(read) == len(kept) > 1 and all(len(b[0]) >= 1 for b in kept)
    for one, other in zip(read, kept, strict=True):
        assert one[0] == other[0] and all(torch.equal(a, b) for a, b in zip(one[1:], other[1:], strict=True))
    assert sorted(i for batch, *_ in kept for i in batch) == list(range(30))
    # Each record sits at the start of its row, zeros after it.
    batch, signal, _, lengths = kept[-1]
    for row, i in enumerate(batch):
        assert torch.equal(signal[row, :, : lengths[row]], data[i][0]) and not signal[row, :, lengths[row] :].any()


def test_similar_lengths_share_a_padded_batch_within_the_budget_and_spread() -> None:
    from ecgnet.data.dataset import padded_batches

    lengths = np.array([5000, 2000, 2400, 5000, 2600, 7000])
    assert padded_batches(lengths, 10**6) == [[1, 2], [4], [0, 3], [5]]  # 2600 > 1.25 x 2000
    assert padded_batches(lengths, 10**6, spread=1.5) == [[1, 2, 4], [0, 3, 5]]
    assert padded_batches(lengths, 7000) == [[1, 2], [4], [0], [3], [5]]  # two 5000s pad to 10000 > 7000
