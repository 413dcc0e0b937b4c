"""Model benchmark: sizes, CPU throughput and peak memory of E1, E12, E17, E18.

Each network is timed beside a minimal plain-PyTorch rebuild of the same network written
below (no config object, no Identity placeholders), so any overhead of the configurable model
shows as a ratio. Every (model, implementation) pair runs in its own process so that peak RSS
belongs to that pair alone.

    python bench/bench_model.py                 # all four, batch 32 x 12 x 4096
    python bench/bench_model.py --names E18 --batch 8 --seconds 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch import nn

from ecgnet.model import ECGResNet
from ecgnet.size import _describe_canonical, describe_size, meta_model, serialized_state_dict_bytes
from ecgnet.thesis import thesis_config

DEFAULT_NAMES = ("E1", "E12", "E17", "E18")


# --- a minimal plain rebuild, written the way a hand-made variant of the baseline code would be ---
class PlainSE(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(c, max(1, c // 16), bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(max(1, c // 16), c, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(-1)).unsqueeze(-1)


def plain_conv(cin: int, cout: int, stride: int, depthwise: bool) -> nn.Module:
    if depthwise:
        return nn.Sequential(
            nn.Conv1d(cin, cin, 7, stride, 3, groups=cin, bias=False), nn.Conv1d(cin, cout, 1, bias=False)
        )
    return nn.Conv1d(cin, cout, 7, stride, 3, bias=False)


class PlainBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, full: bool, depthwise: bool) -> None:
        super().__init__()
        self.full = full  # full = conv2 + bn2 + SE present (E1/E12/E17); else E7-style block
        self.conv1 = plain_conv(cin, cout, stride, depthwise)
        self.bn1 = nn.BatchNorm1d(cout)
        self.drop = nn.Dropout(0.2)
        if full:
            self.conv2 = plain_conv(cout, cout, 1, depthwise)
            self.bn2 = nn.BatchNorm1d(cout)
            self.se = PlainSE(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv1d(cin, cout, 1, stride, bias=False), nn.BatchNorm1d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop(torch.relu(self.bn1(self.conv1(x))))
        if self.full:
            out = self.se(self.bn2(self.conv2(out)))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class PlainNet(nn.Module):
    def __init__(self, widths: tuple[int, ...], full: bool, depthwise: bool) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(12, 64, 15, 2, 7, bias=False),
            nn.BatchNorm1d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(3, 2, 1),
        )
        blocks, cin = [], 64
        for i, w in enumerate(widths):
            blocks += [
                PlainBlock(cin, w, 1 if i == 0 else 2, full, depthwise),
                PlainBlock(w, w, 1, full, depthwise),
            ]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc1 = nn.Linear(3, 10)
        self.fc = nn.Linear(cin + 10, 17)

    def forward(self, x: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x)).mean(-1)
        return self.fc(torch.cat([self.fc1(meta), x], 1))


PLAIN = {
    "E1": lambda: PlainNet((64, 128, 256, 512), full=True, depthwise=False),
    "E12": lambda: PlainNet((64, 128, 256, 512), full=True, depthwise=True),
    "E17": lambda: PlainNet((16, 32, 64, 128), full=True, depthwise=False),
    "E18": lambda: PlainNet((16, 32, 64, 128), full=False, depthwise=True),
}


def build(name: str, impl: str) -> nn.Module:
    return ECGResNet(thesis_config(name)) if impl == "ours" else PLAIN[name]()


def samples_per_second(step, batch: int, seconds: float) -> float:
    step()  # warm-up: allocator and oneDNN primitive caches
    done, start = 0, time.perf_counter()
    while done < 2 or time.perf_counter() - start < seconds:
        step()
        done += 1
    return done * batch / (time.perf_counter() - start)


def measure_one(name: str, impl: str, batch: int, seconds: float) -> dict[str, float]:
    """Runs in a child process: throughput of one network and the process's peak RSS."""
    torch.manual_seed(0)
    model = build(name, impl)
    x, meta = torch.randn(batch, 12, 4096), torch.rand(batch, 3)
    target = torch.randint(0, 2, (batch, 17)).float()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003, weight_decay=1e-5)
    loss_fn = nn.BCEWithLogitsLoss()

    def forward() -> None:
        with torch.no_grad():
            model(x, meta)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x, meta), target).backward()
        optimizer.step()

    model.eval()
    fwd = samples_per_second(forward, batch, seconds)
    model.train()
    train = samples_per_second(train_step, batch, seconds)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "forward_per_s": fwd,
        "train_per_s": train,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def size_timing_ms(name: str, repeats: int = 30) -> tuple[float, float]:
    """(uncached, cached) milliseconds to get params + serialized size of ``name``."""
    config = thesis_config(name)
    describe_size(config)  # imports and first-call costs out of the way
    uncached = []
    for _ in range(repeats):
        start = time.perf_counter()
        model = meta_model(config)
        sum(p.numel() for p in model.parameters())
        serialized_state_dict_bytes(model)
        uncached.append(time.perf_counter() - start)
    cached = []
    for _ in range(repeats):
        start = time.perf_counter()
        describe_size(config)
        cached.append(time.perf_counter() - start)
    assert _describe_canonical.cache_info().hits >= repeats
    return sorted(uncached)[repeats // 2] * 1e3, sorted(cached)[repeats // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", nargs="+", default=list(DEFAULT_NAMES), choices=list(PLAIN))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per implementation")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(*args.child, args.batch, args.seconds)))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch} x 12 x 4096")
    header = (
        f"{'exp':4} {'params':>10} {'MB':>7} {'GMACs':>6} | {'fwd/s ours':>10} {'plain':>7} {'ratio':>5} | "
        f"{'train/s ours':>12} {'plain':>7} {'ratio':>5} | {'peak RSS MB ours':>16} {'plain':>6}"
    )
    print(header)
    print("-" * len(header))
    for name in args.names:
        size = describe_size(thesis_config(name), macs=True)
        # Alternate the two implementations and keep each one's best round: on a small shared
        # machine, background noise only ever slows a run down.
        runs: dict[str, list[dict[str, float]]] = {"ours": [], "plain": []}
        for _ in range(args.rounds):
            for impl, results in runs.items():
                child = [sys.executable, __file__, "--child", name, impl, "--batch", str(args.batch)]
                out = subprocess.run(
                    [*child, "--seconds", str(args.seconds)], capture_output=True, text=True, check=True
                )
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        ours, plain = ({key: max(r[key] for r in runs[impl]) for key in runs[impl][0]} for impl in runs)
        assert ours["params"] == plain["params"] == size.params, (name, ours["params"], plain["params"])
        print(
            f"{name:4} {size.params:>10,} {size.size_mb:>7.3f} {size.macs / 1e9:>6.3f} | "
            f"{ours['forward_per_s']:>10.1f} {plain['forward_per_s']:>7.1f} "
            f"{ours['forward_per_s'] / plain['forward_per_s']:>5.2f} | "
            f"{ours['train_per_s']:>12.1f} {plain['train_per_s']:>7.1f} "
            f"{ours['train_per_s'] / plain['train_per_s']:>5.2f} | "
            f"{ours['peak_rss_mb']:>16.0f} {plain['peak_rss_mb']:>6.0f}"
        )
    uncached, cached = size_timing_ms("E1")
    print(f"\nE1 size (params + serialized bytes): {uncached:.1f} ms uncached, {cached:.3f} ms cached (median)")


if __name__ == "__main__":
    main()
