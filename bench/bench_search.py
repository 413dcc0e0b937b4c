"""Search benchmark: our trial machinery versus bare Optuna, and samplers on a stand-in objective.

Part 1 (needs PostgreSQL: ECGSEARCH_STORAGE or OPTUNA_STORAGE_URL): per-trial cost of our
machinery (lock + count, ask, size, duplicate check, attributes, artifact upload, tell) with
training replaced by a no-op, beside a bare ``study.optimize`` loop with the same sampler and
search space on the same PostgreSQL, with 1 and 8 workers, on a fresh study and on one
pre-filled with 2,000 trials. Each worker times 50 trials; figures are ms per trial per worker.

Part 2 (in memory): hypervolume (``ecgsearch.analysis.hypervolume``: AUROC vs log10 MB, reference
0.5 / 64 MB) after 50, 100, 200 trials for TPE, NSGA-II and random search over 5 seeds, on a
stand-in objective: the true size of each sampled architecture and an AUROC surface fitted to
Table 4.1's micro AUROCs, plus noise.

Part 3 (in memory): the same stand-in objective, 200 trials with 1 vs 16 trials in flight at
every ask (as 16 workers of one study), TPE with and without its constant liar.

    python bench/bench_search.py                 # both parts (about 10 minutes on 2 cores)
    python bench/bench_search.py --part samplers
    python bench/bench_search.py --part concurrency       # TPE with 1 vs 16 trials in flight, constant liar
    python bench/bench_search.py --part machinery --studies fresh --workers 1
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from ecgnet.metric_names import HEADLINE_METRICS
from ecgnet.size import describe_size
from ecgnet.thesis import thesis_experiments
from ecgsearch.analysis.hypervolume import hypervolume
from ecgsearch.storage.storage import StorageSettings, open_storage
from ecgsearch.study.definition import load_definition
from ecgsearch.study.proposals import UnseenProposalSampler, network_key
from ecgsearch.study.study import SearchContext, open_study
from ecgsearch.study.workspace import Workspace
from ecgsearch.trials.objective import TrialObjective
from ecgsearch.trials.worker import run_worker

TRIALS_PER_WORKER = 50
TRIALS_PER_WORKER_PREFILLED = 20  # TPE over 2,000 trials costs seconds per ask on 2 shared cores
PREFILL = 2000


class NoTrainObjective(TrialObjective):
    """The real objective with training replaced by a no-op (upload still stores real files)."""

    model_dir: Path | None = None

    def _train(self, trial, arch, **options):
        return _FakeOutcome()

    def _upload(self, trial, outcome) -> None:
        self.upload_files(trial, self.model_dir)


class _FakeResult:
    def __init__(self) -> None:
        rng = np.random.default_rng()
        self.val_metrics = {k: float(rng.uniform(0.6, 0.9)) for k in HEADLINE_METRICS}
        self.seconds, self.cut_by_time_limit, self.history, self.stopped_early = 0.0, False, [], None


class _FakeOutcome:
    def __init__(self) -> None:
        self.result = _FakeResult()
        self.test_metrics = dict(self.result.val_metrics)


def _tiny_model_dir(root: Path) -> Path:
    from ecgnet.data.labels import class_set
    from ecgnet.export import export_model
    from ecgnet.model import ECGResNet
    from ecgnet.thesis import thesis_config

    return export_model(ECGResNet(thesis_config("E18")), root / "model", classes=class_set())


def _ours_worker(url: str, workspace: str, name: str, total: int, model_dir: str, out) -> None:
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    context = SearchContext.prepare(load_definition("demo"), Workspace(Path(workspace)), url, study_name=name,
                                    requested={"total": total, "thesis": False})  # fmt: skip
    NoTrainObjective.model_dir = Path(model_dir)
    times: list[float] = []
    stamp = [time.perf_counter()]

    def on_event(event: dict) -> None:
        if event["event"] == "trial_end":
            now = time.perf_counter()
            times.append(now - stamp[0])
            stamp[0] = now

    run_worker(context, on_event=on_event, objective_class=NoTrainObjective)
    out.put(times)


def _bare_worker(url: str, name: str, trials: int, out) -> None:
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_definition("demo").space
    study = optuna.load_study(study_name=name, storage=url, sampler=optuna.samplers.TPESampler(n_startup_trials=10))
    times: list[float] = []
    stamp = [time.perf_counter()]

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        space.suggest(trial)
        return float(np.random.uniform(0.6, 0.9)), float(np.random.uniform(0.1, 30))

    def callback(study: optuna.Study, trial) -> None:
        now = time.perf_counter()
        times.append(now - stamp[0])
        stamp[0] = now

    study.optimize(objective, n_trials=trials, callbacks=[callback])
    out.put(times)


def _prefill(study: optuna.Study, count: int, with_our_attrs: bool) -> None:
    space = load_definition("demo").space
    distributions = space.distributions()
    rng = np.random.default_rng(0)
    trials = []
    for i in range(count):
        params = {n: (int(rng.integers(d.low, d.high + 1)) if isinstance(d, optuna.distributions.IntDistribution)
                      else d.choices[int(rng.integers(len(d.choices)))]) for n, d in distributions.items()}  # fmt: skip
        attrs = {"identity": {"config_key": f"prefill-{i}"}, "trained": True, "size_mb": 1.0} if with_our_attrs else {}
        values = [float(rng.uniform(0.6, 0.9)), float(rng.uniform(0.1, 30))]
        trials.append(optuna.create_trial(params=params, distributions=distributions, user_attrs=attrs, values=values))
    study.add_trials(trials)


def machinery(url: str, studies: list[str], worker_counts: list[int]) -> None:
    print("Part 1: ms per trial per worker (training replaced by a no-op), TPE, 2 objectives, PostgreSQL")
    print(f"{'workers':>7} {'study':>10} {'ours':>8} {'bare':>8} {'ratio':>6}")
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = _tiny_model_dir(Path(tmp))
        workspace = Path(tmp) / "ws"
        Workspace(workspace).create().synthetic_cache(400, 0)
        for prefilled in [kind == "prefilled" for kind in studies]:
            # Filling 2,000 trials takes minutes: one pre-filled study per implementation serves
            # every worker count (later counts start from 2,000 plus the earlier runs' trials).
            reused: dict[str, str] = {}
            for workers in worker_counts:
                figures = {}
                for impl in ("ours", "bare"):
                    name = reused.get(impl) or f"bench-{impl}-{uuid.uuid4().hex[:6]}"
                    if impl == "ours":
                        context = SearchContext.prepare(load_definition("demo"), Workspace(workspace), url,
                                                        study_name=name)  # fmt: skip
                        study = open_study(context)
                    else:
                        storage = open_storage(url, StorageSettings())
                        study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                                    directions=["maximize", "minimize"])  # fmt: skip
                    if prefilled and impl not in reused:
                        _prefill(study, PREFILL, with_our_attrs=impl == "ours")
                        reused[impl] = name
                    base = len(study.get_trials(deepcopy=False))
                    queue = spawn.Queue()
                    per_worker_trials = TRIALS_PER_WORKER_PREFILLED if prefilled else TRIALS_PER_WORKER
                    total = base + workers * per_worker_trials
                    if impl == "ours":
                        procs = [spawn.Process(target=_ours_worker, args=(url, str(workspace), name, total,
                                                                          str(model_dir), queue))
                                 for _ in range(workers)]  # fmt: skip
                    else:
                        procs = [spawn.Process(target=_bare_worker, args=(url, name, per_worker_trials, queue))
                                 for _ in range(workers)]  # fmt: skip
                    for p in procs:
                        p.start()
                    per_worker = [queue.get(timeout=3600) for _ in procs]
                    for p in procs:
                        p.join()
                    # The first trial of each worker carries process start-up; leave it out.
                    figures[impl] = statistics.fmean(statistics.fmean(t[1:]) for t in per_worker if len(t) > 1)
                    done = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
                    assert sum(t.state == TrialState.COMPLETE for t in done) >= base + workers * (per_worker_trials - 1)
                label = f"{PREFILL} prefilled" if prefilled else "fresh"
                print(f"{workers:>7} {label:>10} {figures['ours'] * 1e3:8.0f} {figures['bare'] * 1e3:8.0f} "
                      f"{figures['ours'] / figures['bare']:6.2f}")  # fmt: skip


def _auroc_surface() -> tuple[callable, float]:
    """Least-squares fit of Table 4.1's micro AUROC to architecture features (ridge-regularised)."""

    def features(cfg) -> np.ndarray:
        size = describe_size(cfg).size_mb
        return np.array([1.0, math.log10(size), cfg.se, cfg.bn1, cfg.bn2, cfg.conv2,
                         cfg.conv_type == "depthwise_separable", math.log2(cfg.width_multiplier),
                         sum(cfg.blocks) / 8, cfg.stem_kernel / 15, cfg.metadata_features / 10],
                        dtype=float)  # fmt: skip

    experiments = list(thesis_experiments().values())
    x = np.stack([features(e.config) for e in experiments])
    y = np.array([e.reference.micro_auroc for e in experiments])
    ridge = 1e-2 * np.eye(x.shape[1])
    ridge[0, 0] = 0
    weights = np.linalg.solve(x.T @ x + ridge, x.T @ y)
    residual = float(np.sqrt(np.mean((x @ weights - y) ** 2)))
    return (lambda cfg: float(np.clip(features(cfg) @ weights, 0.5, 0.99))), residual


def _hypervolume_curve(sampler, surface, space, rng: np.random.Generator, trials: int = 200,
                       repeats: list[int] | None = None) -> list[float]:  # fmt: skip
    """Hypervolume after each of ``trials`` trials of ``sampler`` on the stand-in objective.

    Appends to ``repeats`` how many trials proposed a network an earlier trial had.
    """
    points: list[tuple[float, float]] = []
    curve: list[float] = []
    seen: set[str] = set()
    repeated = 0

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        nonlocal repeated
        params = space.suggest(trial)
        key = network_key(space, params)
        repeated += key in seen
        seen.add(key)
        cfg = space.arch_of(params)
        auroc = surface(cfg) + float(rng.normal(0, 0.01))
        size = describe_size(cfg).size_mb
        points.append((auroc, size))
        curve.append(hypervolume(points))
        return auroc, size

    optuna.create_study(directions=["maximize", "minimize"], sampler=sampler).optimize(objective, n_trials=trials)
    if repeats is not None:
        repeats.append(repeated)
    return curve


def samplers(seeds: int) -> None:
    surface, residual = _auroc_surface()
    space = load_definition("demo").space
    print(f"\nPart 2: hypervolume on a stand-in objective (AUROC fit RMSE {residual:.3f} + noise 0.01), {seeds} seeds")
    results: dict[str, list[list[float]]] = {}
    makers = {
        "tpe": lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=10),
        # What studies run since issue 13: TPE whose repeated proposals become unseen neighbours.
        "tpe+unseen": lambda s: UnseenProposalSampler(
            optuna.samplers.TPESampler(seed=s, n_startup_trials=10), space, seed=s
        ),
        "nsga2": lambda s: optuna.samplers.NSGAIISampler(seed=s),
        "random": lambda s: optuna.samplers.RandomSampler(seed=s),
    }
    repeats: dict[str, list[int]] = {}
    for name, make in makers.items():
        results[name], repeats[name] = [], []
        for seed in range(seeds):
            curve = _hypervolume_curve(make(seed), surface, space, np.random.default_rng(seed), repeats=repeats[name])
            results[name].append(curve)
    print(f"{'sampler':>10} {'HV@50':>8} {'HV@100':>8} {'HV@200':>8}  repeated networks of 200, per seed")
    for name, curves in results.items():
        means = [statistics.fmean(c[n - 1] for c in curves) for n in (50, 100, 200)]
        print(f"{name:>10} " + " ".join(f"{m:8.4f}" for m in means) + f"  {repeats[name]}")
    target = statistics.fmean(c[199] for c in results["random"])
    for name in ("tpe", "tpe+unseen", "nsga2"):
        reached = [next((i + 1 for i, v in enumerate(c) if v >= target), None) for c in results[name]]
        shown = ", ".join("never" if r is None else str(r) for r in reached)
        print(f"{name}: trials to reach random search's mean 200-trial hypervolume, per seed: {shown}")


def _concurrent_hypervolume(sampler, surface, space, rng: np.random.Generator, workers: int,
                            trials: int = 200) -> float:  # fmt: skip
    """Hypervolume after ``trials`` trials told, with ``workers`` trials in flight at every ask.

    Workers finish in random order (trial lengths differ), so each ask sees up to ``workers - 1``
    RUNNING trials, as a worker of a shared study does.
    """
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    running: list[optuna.Trial] = []
    points: list[tuple[float, float]] = []
    asked = 0
    while len(points) < trials:
        while len(running) < workers and asked < trials:
            trial = study.ask()
            space.suggest(trial)
            running.append(trial)
            asked += 1
        trial = running.pop(int(rng.integers(len(running))))
        cfg = space.arch_of(trial.params)
        auroc, size = surface(cfg) + float(rng.normal(0, 0.01)), describe_size(cfg).size_mb
        study.tell(trial, (auroc, size))
        points.append((auroc, size))
    return hypervolume(points)


def concurrency(seeds: int, workers: int) -> None:
    """TPE (with our unseen-proposal wrapper, as studies run) with 1 vs ``workers`` trials in flight."""
    surface, _ = _auroc_surface()
    space = load_definition("demo").space
    print(f"\nPart 3: hypervolume after 200 stand-in trials, 1 vs {workers} concurrent workers, {seeds} seeds")

    def make(seed: int, liar: bool) -> optuna.samplers.BaseSampler:
        tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, constant_liar=liar)
        return UnseenProposalSampler(tpe, space, seed=seed)

    runs = {
        "1 worker": [_concurrent_hypervolume(make(s, False), surface, space, np.random.default_rng(s), 1)
                     for s in range(seeds)],
        f"{workers} workers": [_concurrent_hypervolume(make(s, False), surface, space, np.random.default_rng(s),
                                                       workers) for s in range(seeds)],
        f"{workers} workers, constant liar": [
            _concurrent_hypervolume(make(s, True), surface, space, np.random.default_rng(s), workers)
            for s in range(seeds)
        ],
    }  # fmt: skip
    base = statistics.fmean(runs["1 worker"])
    for name, values in runs.items():
        mean = statistics.fmean(values)
        print(f"{name:>28}: mean {mean:.4f} ({(mean / base - 1) * 100:+.1f}% vs 1 worker); per seed "
              + ", ".join(f"{v:.4f}" for v in values))  # fmt: skip
    for name in list(runs)[1:]:
        ratio = statistics.fmean(runs[name]) / base
        print(f"RESULT part=concurrency setting={name.replace(' ', '_').replace(',', '')} hv_ratio={ratio:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "machinery", "samplers", "concurrency"], default="all")
    parser.add_argument("--concurrent-workers", type=int, default=16, help="part 3: trials in flight")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--studies", default="fresh,prefilled", help="part 1: fresh, prefilled or both")
    parser.add_argument("--workers", default="1,8", help="part 1: worker counts, e.g. 1,8")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.part in ("all", "machinery"):
        url = os.environ.get("ECGSEARCH_STORAGE") or os.environ.get("OPTUNA_STORAGE_URL")
        if not url:
            raise SystemExit("part 1 needs PostgreSQL: set ECGSEARCH_STORAGE (see .ci/services.sh)")
        machinery(url, args.studies.split(","), [int(n) for n in args.workers.split(",")])
    if args.part in ("all", "samplers"):
        samplers(args.seeds)
    if args.part in ("all", "concurrency"):
        concurrency(args.seeds, args.concurrent_workers)
    print(json.dumps({"cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
