"""Cluster-scale benchmark: many workers on one PostgreSQL study, with and without a connection cap.

Part ``cap``: N real worker processes (``ecgsearch.trials.worker.run_worker``, the tiny test definition,
training replaced by a sleep so the CPU stays free) fill one study, once as a role without a
connection limit and once as a role created with ``CONNECTION LIMIT C``. While they run,
``pg_stat_activity`` is sampled every 0.1 s. Printed per run: trials/s (first start to last
completion), peak connections (all workers, and the most one worker held), mean connections per
worker, worker exit codes, the workers' log lines about the database (most in one worker), peak
memory of one worker.

Part ``large``: a study pre-filled with 1,000 / 5,000 / 10,000 realistic trials (demo definition,
our user attributes, per-epoch histories): the time the ask lock is held per trial (reaping,
counting, TPE with our proposal wrapper) over a few worker trials, the wall time of ``ecgsearch
pareto``, ``report`` and ``confirm --front --no-run`` (planning only), and the dashboard's study page.

    source /tmp/ci-services.env       # after `bash .ci/services.sh up` (root: roles are made as postgres)
    python bench/bench_scale.py --part cap --workers 48 --cap 20
    python bench/bench_scale.py --part large --sizes 1000 5000 10000

Ends (part cap) with
``RESULT workers=<N> cap=<C> throughput_ratio=<capped/uncapped> peak_connections=<max seen> exits_nonzero=<k>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

import psycopg2
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "studies" / "tiny.toml"
ADMIN_SOCKET = os.environ.get("ECGSEARCH_BENCH_PG_SOCKET", "/tmp/ci-pg")


def admin() -> psycopg2.extensions.connection:
    """A superuser connection over the server's socket (trust for local connections, as .ci/services.sh sets up)."""
    connection = psycopg2.connect(host=ADMIN_SOCKET, user="postgres", dbname="postgres")
    connection.autocommit = True
    return connection


def make_role(limit: int | None) -> tuple[str, str]:
    """A fresh login role owning a fresh database (``CONNECTION LIMIT limit``); returns (role, password)."""
    role, password = f"bench_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)
    with contextlib.closing(admin()) as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s CONNECTION LIMIT {limit if limit else -1}", (password,))
        cursor.execute(f"CREATE DATABASE {role} OWNER {role}")
    return role, password


def drop_role(role: str) -> None:
    with contextlib.closing(admin()) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {role} WITH (FORCE)")
        cursor.execute(f"DROP ROLE IF EXISTS {role}")


def role_url(role: str) -> str:
    base = make_url(os.environ["OPTUNA_STORAGE_URL"])
    return f"postgresql+psycopg2://{role}@{base.host}:{base.port or 5432}/{role}"  # password: PGPASSWORD


# The worker process: the real worker loop, training replaced by a sleep.
def worker_main(args: argparse.Namespace) -> int:
    warnings.filterwarnings("ignore")
    import numpy as np
    import optuna

    from ecgnet.metric_names import HEADLINE_METRICS
    from ecgsearch.study.definition import load_definition
    from ecgsearch.study.study import SearchContext
    from ecgsearch.study.workspace import Workspace
    from ecgsearch.trials.objective import TrialObjective
    from ecgsearch.trials.worker import run_worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    class Result:
        def __init__(self) -> None:
            self.val_metrics = {k: float(np.random.uniform(0.6, 0.9)) for k in HEADLINE_METRICS}
            self.seconds, self.cut_by_time_limit, self.history, self.stopped_early = args.sleep, False, [], None

    class Outcome:
        def __init__(self) -> None:
            self.result = Result()
            self.test_metrics = dict(self.result.val_metrics)

    class SleepObjective(TrialObjective):
        def _train(self, trial, arch, **options):
            time.sleep(args.sleep)
            return Outcome()

        def _upload(self, trial, outcome) -> None:
            trial.set_user_attr("artifacts", {})

    lock_seconds: list[float] = []

    def on_event(event: dict) -> None:
        if event["event"] == "ask_lock_released":
            lock_seconds.append(event["held_seconds"])

    definition = load_definition(args.definition)
    context = SearchContext.prepare(definition, Workspace(Path(args.workspace)), args.url, study_name=args.study_name)
    report = run_worker(context, on_event=on_event, objective_class=SleepObjective)
    if args.lock_times:
        Path(args.lock_times).write_text(json.dumps(lock_seconds))
    return 0 if not report.systematic_failure else 1


class ActivitySampler(threading.Thread):
    """Samples a role's connections in pg_stat_activity, per application name (one per worker process)."""

    def __init__(self, role: str, period: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.role, self.period = role, period
        self.samples: list[dict[str, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        connection = admin()
        with connection.cursor() as cursor:
            while not self._halt.is_set():
                cursor.execute("SELECT application_name, count(*) FROM pg_stat_activity WHERE usename = %s GROUP BY 1",
                               (self.role,))  # fmt: skip
                self.samples.append(dict(cursor.fetchall()))
                time.sleep(self.period)
        connection.close()

    def stop(self) -> None:
        self._halt.set()
        self.join()


def run_array(workers: int, cap: int | None, trials: int, sleep: float, workspace: Path) -> dict:
    """One study filled by ``workers`` processes as a role capped at ``cap`` connections (None: no cap)."""
    import optuna

    from ecgsearch.storage.storage import open_storage
    from ecgsearch.study.definition import load_definition
    from ecgsearch.study.study import SearchContext, open_study
    from ecgsearch.study.workspace import Workspace

    role, password = make_role(cap)
    env = {**os.environ, "PGPASSWORD": password, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    url = role_url(role)
    name = "scale"
    try:
        os.environ["PGPASSWORD"] = password  # the parent creates the study with the same role
        context = SearchContext.prepare(load_definition(str(TINY)), Workspace(workspace), url, study_name=name,
                                        requested={"total": trials, "thesis": False, "heartbeat_interval": 5,
                                                   "grace_period": 60})  # fmt: skip
        open_study(context)
        sampler = ActivitySampler(role)
        sampler.start()
        logs = [workspace / f"worker-{cap}-{i}.log" for i in range(workers)]
        command = [sys.executable, __file__]
        started = time.time()
        procs = []
        for log in logs:
            with open(log, "w") as out:
                procs.append(subprocess.Popen(
                    ["/usr/bin/time", "-f", "maxrss_kb=%M", *command, "--worker", "--url", url, "--study-name", name,
                     "--workspace", str(workspace), "--definition", str(TINY), "--sleep", str(sleep)],
                    env=env, stdout=out, stderr=subprocess.STDOUT))  # fmt: skip
        codes = [p.wait(timeout=3600) for p in procs]
        wall = time.time() - started
        sampler.stop()
        study = optuna.load_study(study_name=name, storage=open_storage(url))
        done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
        first = min(t.datetime_start for t in done)
        last = max(t.datetime_complete for t in done)
        texts = [log.read_text() for log in logs]
        # What workers said about the database: refusals for a limit, outages, long lock waits.
        db_lines = [len(re.findall(r"storage: .*(connection limit|unreachable)", text)) for text in texts]
        lock_lines = sum(len(re.findall(r"storage: waiting \d+ s for the database lock", text)) for text in texts)
        rss = [int(m[1]) for text in texts if (m := re.search(r"maxrss_kb=(\d+)", text))]
        per_worker_peak = max((max(s.values(), default=0) for s in sampler.samples), default=0)
        totals = [sum(s.values()) for s in sampler.samples]
        return {
            "cap": cap, "workers": workers, "complete": len(done), "all_trials": len(study.get_trials(deepcopy=False)),
            "trials_per_s": len(done) / (last - first).total_seconds(), "wall_s": wall,
            "peak_connections": max(totals, default=0), "peak_per_worker": per_worker_peak,
            "mean_per_worker": statistics.fmean(totals) / workers if totals else 0.0,
            "exits_nonzero": sum(code != 0 for code in codes), "db_log_lines": sum(db_lines),
            "db_log_lines_max_worker": max(db_lines), "worker_maxrss_mb": max(rss, default=0) / 1024,
            "lock_wait_lines": lock_lines,
            "sample_log": next((ln for text in texts for ln in text.splitlines() if "connection limit" in ln), ""),
        }  # fmt: skip
    finally:
        os.environ.pop("PGPASSWORD", None)
        drop_role(role)


def part_cap(args: argparse.Namespace) -> None:
    print(f"Part cap: {args.workers} workers, {args.trials} trials, training = sleep {args.sleep} s, PostgreSQL")
    results = []
    for cap in (None, args.cap):
        with tempfile.TemporaryDirectory() as tmp:
            result = run_array(args.workers, cap, args.trials, args.sleep, Path(tmp))
        results.append(result)
        label = "uncapped" if cap is None else f"cap {cap}"
        print(f"  {label:>9}: {result['complete']}/{args.trials} complete ({result['all_trials']} trials in all), "
              f"{result['trials_per_s']:.2f} trials/s, wall {result['wall_s']:.0f} s; connections: peak "
              f"{result['peak_connections']} in all, {result['peak_per_worker']} for one worker, mean "
              f"{result['mean_per_worker']:.2f} per worker; exits non-zero {result['exits_nonzero']}; "
              f"limit/outage log lines {result['db_log_lines']} "
              f"(most in one worker {result['db_log_lines_max_worker']}), "
              f"lock-wait lines {result['lock_wait_lines']}; "
              f"worker peak RSS {result['worker_maxrss_mb']:.0f} MB")  # fmt: skip
        if result["sample_log"]:
            print(f"    e.g. {result['sample_log'][:300]}")
    uncapped, capped = results
    print(f"RESULT workers={args.workers} cap={args.cap} "
          f"throughput_ratio={capped['trials_per_s'] / uncapped['trials_per_s']:.2f} "
          f"peak_connections={capped['peak_connections']} exits_nonzero={capped['exits_nonzero']}")  # fmt: skip


def part_large(args: argparse.Namespace) -> None:
    import numpy as np

    from ecgsearch.study.definition import load_definition
    from ecgsearch.study.study import SearchContext, open_study
    from ecgsearch.study.workspace import Workspace

    print("Part large: pre-filled demo studies on PostgreSQL. Ask lock: seconds held per ask over a few worker "
          "trials (reaping, counting, TPE with our proposal wrapper). Commands: wall seconds from start to exit, "
          "Python's start and imports included. Dashboard: the study page's API call, first "
          "and second load.")  # fmt: skip
    role, password = make_role(None)
    os.environ["PGPASSWORD"] = password
    url = role_url(role)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workspace = Path(tmp)
            for size in args.sizes:
                name = f"large-{size}"
                context = SearchContext.prepare(load_definition("demo"), Workspace(workspace), url, study_name=name,
                                                requested={"total": size + args.asks, "thesis": False})  # fmt: skip
                study = open_study(context)
                prefill(study, load_definition("demo"), size, np.random.default_rng(size))
                lock_file = workspace / f"locks-{size}.json"
                subprocess.run([sys.executable, __file__, "--worker", "--url", url, "--study-name", name, "--workspace",
                                str(workspace), "--definition", "demo", "--sleep", "0", "--lock-times", str(lock_file)],
                               check=True, env=env)  # fmt: skip
                held = json.loads(lock_file.read_text())
                where = ["--study-name", name, "--storage", url, "--workspace", str(workspace)]
                confirm = ["confirm", "--front", "--seeds", "2", "--no-run", *where]
                seconds = {
                    "pareto": timed_command(["pareto", *where], env),
                    "report": timed_command(["report", *where, "--out", str(workspace / "report.html")], env),
                    "confirm --front planning": timed_command(confirm, env),
                }
                first, second = dashboard_page(where, study._study_id, env)
                commands = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
                print(f"  {size:>6} trials: ask lock held median {statistics.median(held):.3f} s, "
                      f"max {max(held):.3f} s over {len(held)} asks; {commands}; "
                      f"dashboard study page {first:.1f} s, again {second:.1f} s", flush=True)  # fmt: skip
    finally:
        os.environ.pop("PGPASSWORD", None)
        drop_role(role)


def timed_command(arguments: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one ``ecgsearch`` command, start to exit."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ecgsearch.cli", *arguments], check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def dashboard_page(where: list[str], study_id: int, env: dict[str, str]) -> tuple[float, float]:
    """Seconds of the dashboard's study-page API call (all trials), first and second time."""
    import urllib.request

    from ecgsearch.commands.dashboard_server import TOKEN_ENV

    port = 18000 + os.getpid() % 1000
    token = secrets.token_urlsafe(32)
    server = subprocess.Popen([sys.executable, "-m", "ecgsearch.cli", "dashboard", "--port", str(port), *where],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**env, TOKEN_ENV: token})  # fmt: skip
    try:
        for _ in range(600):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies?token={token}", timeout=5).read()
                break
            time.sleep(0.1)
        times = []
        for _ in range(2):
            started = time.perf_counter()
            page = f"http://127.0.0.1:{port}/api/studies/{study_id}?after=0&token={token}"
            urllib.request.urlopen(page, timeout=600).read()
            times.append(time.perf_counter() - started)
        return times[0], times[1]
    finally:
        server.terminate()
        server.wait()


def prefill(study, definition, count: int, rng) -> None:
    """``count`` finished trials with the parameters, values and user attributes a real study holds.

    Written straight into Optuna's tables in bulk (``study.add_trials`` takes about 0.2 s a trial on
    PostgreSQL, too slow to fill 10,000); the rows are what Optuna itself writes.
    """
    import datetime

    import optuna
    from optuna.storages._rdb import models
    from sqlalchemy import insert

    from ecgnet.metric_names import HEADLINE_METRICS
    from ecgsearch.storage.optuna_internals import storage_backend
    from ecgsearch.study.proposals import network_key

    distributions = definition.space.distributions()
    epochs = definition.training.epochs
    study_id = study._study_id
    first = len(study.get_trials(deepcopy=False))
    now = datetime.datetime.now()
    trials, params, values, attrs = [], [], [], []
    for i in range(count):
        chosen = {n: (int(rng.integers(d.low, d.high + 1)) if isinstance(d, optuna.distributions.IntDistribution)
                      else d.choices[int(rng.integers(len(d.choices)))]) for n, d in distributions.items()}  # fmt: skip
        auroc, size = float(rng.uniform(0.6, 0.9)), float(10 ** rng.uniform(-1.5, 1.5))
        metrics = {name: auroc for name in HEADLINE_METRICS}
        history = [
            {"epoch": e, "steps": 8 * e, "train_loss": 0.3, "seconds": 0.2, **metrics} for e in range(1, epochs + 1)
        ]
        user = {"identity": {"config_key": f"prefill-{i}", "worker": "prefill", "params": 1000},
                "size_mb": size, "macs": 1e6, "log": f"/work/logs/trial-{first + i}.log", "history": history,
                "val_micro_auroc": auroc, "test_micro_auroc": auroc,
                "result": {"val": metrics, "test": metrics, "training": {"seconds": 1.0, "cut_by_time_limit": False}},
                "artifacts": {"model.pt": str(rng.integers(1 << 62)), "model.json": str(rng.integers(1 << 62))},
                "trained": True, "network": network_key(definition.space, chosen)}  # fmt: skip
        trials.append({"number": first + i, "study_id": study_id, "state": optuna.trial.TrialState.COMPLETE,
                       "datetime_start": now, "datetime_complete": now})  # fmt: skip
        params.append([(n, d.to_internal_repr(chosen[n]), optuna.distributions.distribution_to_json(d))
                       for n, d in distributions.items()])  # fmt: skip
        values.append([auroc, size])
        attrs.append([(k, json.dumps(v)) for k, v in user.items()])
    engine = storage_backend(study).engine
    table = models.TrialModel.__table__
    finite = models.TrialValueModel.TrialValueType.FINITE
    with engine.begin() as connection:
        ids = connection.execute(insert(table).returning(table.c.trial_id, sort_by_parameter_order=True),
                                 trials).scalars().all()  # fmt: skip
        connection.execute(insert(models.TrialParamModel.__table__),
                           [{"trial_id": t, "param_name": n, "param_value": v, "distribution_json": d}
                            for t, rows in zip(ids, params, strict=True) for n, v, d in rows])  # fmt: skip
        connection.execute(insert(models.TrialValueModel.__table__),
                           [{"trial_id": t, "objective": o, "value": v, "value_type": finite}
                            for t, rows in zip(ids, values, strict=True) for o, v in enumerate(rows)])  # fmt: skip
        connection.execute(
            insert(models.TrialUserAttributeModel.__table__),
            [{"trial_id": t, "key": k, "value_json": v} for t, rows in zip(ids, attrs, strict=True) for k, v in rows],
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("cap", "large", "all"), default="all")
    parser.add_argument("--workers", type=int, default=48)
    parser.add_argument("--cap", type=int, default=20)
    parser.add_argument("--trials", type=int, default=240)
    parser.add_argument("--sleep", type=float, default=4.0, help="seconds a trial 'trains'")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--asks", type=int, default=5, help="trials asked per size in part large")
    # The worker process (internal).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--study-name", help=argparse.SUPPRESS)
    parser.add_argument("--workspace", help=argparse.SUPPRESS)
    parser.add_argument("--definition", help=argparse.SUPPRESS)
    parser.add_argument("--lock-times", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker_main(args)
    if "OPTUNA_STORAGE_URL" not in os.environ:
        print("error: source /tmp/ci-services.env first (after `bash .ci/services.sh up`)", file=sys.stderr)
        return 2
    if args.part in ("cap", "all"):
        part_cap(args)
    if args.part in ("large", "all"):
        part_large(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
