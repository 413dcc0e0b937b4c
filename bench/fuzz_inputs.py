"""Hostile inputs for every reader: real files mutated, and definitions and model.json files generated.

Each input is one record's files (a real Challenge record, a WFDB ``.dat`` record, an SPH record
with its metadata.csv), a study definition (the shipped demo) or a model directory's model.json,
changed by hypothesis: truncated, bits flipped, bytes spliced in, fields set to 0, -1, NaN, huge
or negative counts, odd encodings, 10,000-line headers. The contract for each:

- it is read, or refused with the reader's own error (a record: rejected with a reason in the
  rejects list; a definition or model: an ``InputError`` naming the file);
- within 5 s (a SIGALRM ends a hang; ``--time-limit``: the suite runs its quick profile beside
  other tests on 2 cores, where a 10,000-row metadata.csv takes longer than on a quiet machine);
- without allocating more than 4x what reading the unmutated input takes (tracemalloc peak,
  numpy's buffers included), so a header that claims 10^12 samples allocates nothing for them.

A record goes through ``prepare_cache`` (read, preprocess, the HDF5 write), the way `ecgsearch
data prepare` meets it. The suite runs a quick profile (tests/test_fuzz_inputs.py); the long one:

    .venv/bin/python bench/fuzz_inputs.py --examples 20000 --processes 2

prints counts per reader and ends with ``RESULT inputs=<n> crashes=<c> hangs=<h> memory=<m>``;
each failure is printed with the input that caused it, to become a regression test.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import multiprocessing
import signal
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the real fixture records and the helpers that write formats

from ecg_files import copy_record, real_signal, sph_pair  # noqa: E402

from ecgnet.data.cache import prepare_cache  # noqa: E402
from ecgnet.errors import InputError  # noqa: E402

TIME_LIMIT_S = 5
MEMORY_FACTOR = 4
NASTY_NUMBERS = ["0", "-1", "-5000", "NaN", "nan", "inf", "-inf", "1e308", "1e-308", "99999999999999999999",
                 "2147483648", "9223372036854775808", "", "٣", "0x10", "1/0", "5000.5", "+", "12x"]  # fmt: skip


class Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Hang


# ---------------------------------------------------------------------------------------------
# The inputs: for each reader, the unmutated files (name -> bytes) and how to read them.


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def originals(scratch: Path) -> dict[str, dict[str, bytes]]:
    """Reader name -> the unmutated files of its input."""
    import wfdb

    from ecgnet.export import export_model
    from ecgnet.thesis import thesis_config

    made: dict[str, dict[str, bytes]] = {}
    for name in ("E07500", "HR06000", "JS20000"):  # Georgia, PTB-XL (units "mv"), Ningbo
        copy_record(name, scratch / name)
        made[f"challenge-{name}"] = _files(scratch / name)
    dat = scratch / "dat"
    dat.mkdir()
    signal_mv = real_signal("HR06001").T.astype(np.float64) / 1000
    for fmt, record in (("16", "A0001"), ("212", "A0002")):  # CPSC names: sources known
        wfdb.wrsamp(record, fs=500, units=["mV"] * 12, sig_name=[f"L{i}" for i in range(12)], p_signal=signal_mv,
                    fmt=[fmt] * 12, comments=["Age: 50", "Sex: Male", "Dx: 426783006"], write_dir=str(dat))  # fmt: skip
        made[f"wfdb-{fmt}"] = {f"{record}.hea": (dat / f"{record}.hea").read_bytes(),
                               f"{record}.dat": (dat / f"{record}.dat").read_bytes()}  # fmt: skip
    sph_pair(scratch / "sph")
    made["sph"] = _files(scratch / "sph")
    made["definition"] = {"study.toml": (ROOT / "studies" / "demo.toml").read_bytes()}
    import torch

    from ecgnet.data.labels import DEFAULT_CLASS_SET, class_set
    from ecgnet.model import ECGResNet

    torch.manual_seed(0)
    classes = class_set(DEFAULT_CLASS_SET)
    arch = dataclasses.replace(thesis_config("E18"), num_classes=len(classes))
    export_model(ECGResNet(arch), scratch / "model", classes=classes, onnx=False)
    made["model-json"] = _files(scratch / "model")
    return made


def read_records(folder: Path) -> str:
    """prepare_cache over the mutated record: 'read', or 'refused' (rejected with a reason)."""
    try:
        prepare_cache([folder], folder.parent / "c.h5", workers=1)
    except InputError as exc:
        if "no usable records" not in str(exc):
            raise
        return "refused"
    return "read"


def read_definition(folder: Path) -> str:
    from ecgsearch.study.definition import load_definition

    try:
        load_definition(folder / "study.toml")
    except InputError:
        return "refused"
    return "read"


def read_model(folder: Path) -> str:
    from ecgnet.export import load_model

    try:
        load_model(folder)
    except (InputError, FileNotFoundError):
        return "refused"
    return "read"


def reader_of(name: str) -> Callable[[Path], str]:
    return {"definition": read_definition, "model-json": read_model}.get(name, read_records)


# ---------------------------------------------------------------------------------------------
# The mutations.


@st.composite
def mutated(draw: st.DrawFn, files: dict[str, bytes]) -> dict[str, bytes]:
    """``files`` with one to three of them changed (or removed)."""
    files = dict(files)
    for _ in range(draw(st.integers(1, 3))):
        if not files:
            break
        name = draw(st.sampled_from(sorted(files)))
        data = files[name]
        how = draw(st.sampled_from(["truncate", "flip", "splice", "field", "lines", "encoding", "remove"]))
        if how == "truncate":
            data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
        elif how == "flip":
            buffer = bytearray(data)
            for _ in range(draw(st.integers(1, 8))):
                if buffer:
                    at = draw(st.integers(0, len(buffer) - 1))
                    buffer[at] ^= 1 << draw(st.integers(0, 7))
            data = bytes(buffer)
        elif how == "splice":
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at + draw(st.integers(0, 64)) :]
        elif how == "field":  # one number or word of a text file set to a nasty value
            parts = data.replace(b"\n", b" \n ").replace(b",", b" , ").split(b" ")
            parts[draw(st.integers(0, len(parts) - 1))] = draw(st.sampled_from(NASTY_NUMBERS)).encode()
            data = b" ".join(parts).replace(b" \n ", b"\n").replace(b" , ", b",")
        elif how == "lines":  # a huge header or table
            line = draw(st.sampled_from([b"#", b"# Dx: 426783006", b"A0001 12 500 5000", b"a,b,c", b"x = 1"]))
            data = data + (line + b"\n") * draw(st.sampled_from([2, 100, 10_000]))
        elif how == "encoding":
            try:
                data = data.decode("utf-8").encode(draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252"])),
                                                   errors="replace")  # fmt: skip
            except UnicodeDecodeError:
                data = data[::-1]
        else:
            del files[name]
            continue
        files[name] = data
    return files


# ---------------------------------------------------------------------------------------------
# One input, checked.


def check(reader: str, files: dict[str, bytes], baseline_peak: int, time_limit_s: int) -> tuple[str, str]:
    """(outcome, detail): outcome is read, refused, crash, hang or memory."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "input"
        folder.mkdir()
        _write(folder, files)
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(time_limit_s)
        tracemalloc.start()
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcome, detail = reader_of(reader)(folder), ""
        except Hang:
            outcome, detail = "hang", f"over {time_limit_s} s"
        except MemoryError:
            outcome, detail = "memory", "MemoryError"
        except Exception as exc:
            outcome, detail = "crash", f"{type(exc).__name__}: {str(exc)[:300]}"
        finally:
            signal.alarm(0)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    elapsed = time.perf_counter() - started
    if outcome in ("read", "refused") and elapsed > time_limit_s:
        # The alarm's exception can land in a finalizer, where Python prints and drops it.
        outcome, detail = "hang", f"{elapsed:.1f} s"
    if outcome in ("read", "refused") and peak > MEMORY_FACTOR * baseline_peak:
        outcome, detail = "memory", f"peak {peak / 1e6:.1f} MB, the unmutated input {baseline_peak / 1e6:.1f} MB"
    return outcome, detail


class Run:
    """The unmutated inputs, their baseline memory, and counts of outcomes per reader."""

    def __init__(self, scratch: Path, time_limit_s: int = TIME_LIMIT_S) -> None:
        self.time_limit_s = time_limit_s
        self.inputs = originals(scratch / "originals")
        self.baseline: dict[str, int] = {}
        for reader, files in self.inputs.items():
            self._peak(reader, files)  # the first read imports its libraries: not timed, not counted
            self.baseline[reader] = max(self._peak(reader, files), 8 * 2**20)  # a floor for small inputs
            outcome, detail = check(reader, files, self.baseline[reader], self.time_limit_s)
            if outcome != "read":
                raise RuntimeError(f"the unmutated {reader} input does not read: {outcome} {detail}")
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.failures: list[str] = []

    def _peak(self, reader: str, files: dict[str, bytes]) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "input"
            folder.mkdir()
            _write(folder, files)
            tracemalloc.start()
            try:
                reader_of(reader)(folder)
            finally:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
        return peak

    def one(self, reader: str, files: dict[str, bytes]) -> str:
        outcome, detail = check(reader, files, self.baseline[reader], self.time_limit_s)
        self.counts[reader][outcome] += 1
        if outcome not in ("read", "refused"):
            self.failures.append(f"{reader}: {outcome}: {detail}\n{describe_change(self.inputs[reader], files)}")
        return outcome


def describe_change(original: dict[str, bytes], files: dict[str, bytes]) -> str:
    """What the mutations changed, file by file: enough to write the regression test."""
    lines = []
    for name in sorted(set(original) | set(files)):
        before, after = original.get(name), files.get(name)
        if after is None:
            lines.append(f"  {name}: removed")
        elif before != after:
            first = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b),
                         min(len(before), len(after)))  # fmt: skip
            around = slice(max(first - 20, 0), first + 40)
            lines.append(f"  {name}: {len(before)} -> {len(after)} bytes, first change at {first}: "
                         f"{before[around]!r} -> {after[around]!r}")  # fmt: skip
    return "\n".join(lines)


def cases(run: Run) -> st.SearchStrategy[tuple[str, dict[str, bytes]]]:
    readers = sorted(run.inputs)
    return st.sampled_from(readers).flatmap(lambda r: st.tuples(st.just(r), mutated(run.inputs[r])))


def fuzz(run: Run, examples: int, seed: int) -> None:
    """Feed ``examples`` hostile inputs to the readers (hypothesis draws them; none stops the run)."""

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])  # fmt: skip
    @given(case=cases(run))
    def feed(case: tuple[str, dict[str, bytes]]) -> None:
        run.one(*case)

    from hypothesis import seed as hypothesis_seed

    hypothesis_seed(seed)(feed)()


def fuzz_part(examples: int, seed: int, time_limit_s: int) -> tuple[dict[str, collections.Counter], list[str]]:
    """One process's share: counts per reader and the failures, from its own scratch folder."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp), time_limit_s)
        fuzz(run, examples, seed)
    return dict(run.counts), run.failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=int, default=TIME_LIMIT_S, help="seconds an input may take")
    parser.add_argument("--processes", type=int, default=1, help="share the examples out (seeds seed, seed+1, ...)")
    args = parser.parse_args()
    started = time.perf_counter()
    shares = [(args.examples // args.processes + (i < args.examples % args.processes), args.seed + i, args.time_limit)
              for i in range(args.processes)]  # fmt: skip
    if args.processes == 1:
        parts = [fuzz_part(*shares[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
            parts = pool.starmap(fuzz_part, shares)
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures = []
    for part_counts, part_failures in parts:
        for reader, part in part_counts.items():
            counts[reader].update(part)
        failures += part_failures
    total = collections.Counter()
    print(f"{'reader':<20} {'inputs':>7} {'read':>6} {'refused':>8} {'crash':>6} {'hang':>5} {'memory':>7}")
    for reader, reader_counts in sorted(counts.items()):
        total.update(reader_counts)
        print(f"{reader:<20} {sum(reader_counts.values()):>7} {reader_counts['read']:>6} {reader_counts['refused']:>8} "
              f"{reader_counts['crash']:>6} {reader_counts['hang']:>5} {reader_counts['memory']:>7}")  # fmt: skip
    for failure in failures[:20]:
        print(failure)
    print(f"{sum(total.values())} inputs in {time.perf_counter() - started:.0f} s, {args.processes} process(es)")
    print(f"RESULT inputs={sum(total.values())} crashes={total['crash']} hangs={total['hang']} "
          f"memory={total['memory']}")  # fmt: skip


if __name__ == "__main__":
    main()
