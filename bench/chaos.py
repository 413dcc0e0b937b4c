"""Chaos run: a PostgreSQL study filled by workers that keep being killed, and one database restart.

    source /tmp/ci-services.env    # after `bash .ci/services.sh up` (root: the restart needs it)
    python bench/chaos.py --trials 40 --workers 4 --kills 8
    python bench/chaos.py --trials 40 --workers 8 --kills 8 --cap 4    # as a role capped at 4 connections

Workers run `ecgsearch worker` on the tests' tiny definition (trials of a few seconds). While
the study fills, a random worker gets SIGKILL or SIGTERM every few seconds and a replacement
starts; once, PostgreSQL is stopped for a few seconds and started again. At the end the script
checks what an unattended study promises: exactly N COMPLETE, none RUNNING or WAITING, every
FAIL followed by a retry with the same parameters, no configuration trained twice. It prints
kills, restarts, retries, wall time and the trial-seconds lost. Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ecgsearch.storage.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "studies" / "tiny.toml"
SERVICES = ROOT / ".ci" / "services.sh"
SIGTERM_REASON = "worker terminated (SIGTERM)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=8, help="workers killed (SIGKILL or SIGTERM) in all")
    parser.add_argument("--kill-every", type=float, nargs=2, default=(4.0, 10.0), help="seconds between kills")
    parser.add_argument("--restart-down", type=float, default=3.0, help="seconds PostgreSQL stays down (0: no restart)")
    parser.add_argument(
        "--cap",
        type=int,
        default=0,
        help="run as a fresh role with this CONNECTION LIMIT (0: the services' role, uncapped)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1200.0)
    args = parser.parse_args()

    url = os.environ.get("ECGSEARCH_STORAGE") or os.environ.get("OPTUNA_STORAGE_URL")
    if not url or not url.startswith("postgresql"):
        print("error: set OPTUNA_STORAGE_URL or ECGSEARCH_STORAGE to the test PostgreSQL", file=sys.stderr)
        return 2
    role = None
    if args.cap:
        from bench_scale import make_role, role_url

        role, password = make_role(args.cap)
        url = role_url(role)
        os.environ["PGPASSWORD"] = password  # libpq reads it: never in a URL or a command line
    try:
        return run(args, url)
    finally:
        if role is not None:
            from bench_scale import drop_role

            drop_role(role)


def run(args: argparse.Namespace, url: str) -> int:
    rng = random.Random(args.seed)
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    workspace = Path(tempfile.mkdtemp(prefix="ecgsearch-chaos-"))
    env = {**os.environ, "ECGSEARCH_STORAGE": url}
    command = [sys.executable, "-m", "ecgsearch.cli", "worker", "--study-def", str(TINY), "--study-name", name,
               "--workspace", str(workspace), "--no-thesis", "--heartbeat-interval", "1", "--grace-period", "6",
               "--max-retries", "3", "--stop-after-failures", "5"]  # fmt: skip
    logs = workspace / "worker-logs"
    logs.mkdir()
    started = 0

    def start_worker() -> subprocess.Popen:
        nonlocal started
        started += 1
        log = open(logs / f"worker-{started}.log", "w")
        # The first worker creates the study with its total; the others follow the recorded settings.
        extra = ["--trials", str(args.trials)] if started == 1 else []
        return subprocess.Popen([*command, *extra], env=env, stdout=log, stderr=subprocess.STDOUT)

    t0 = time.monotonic()
    workers = [start_worker()]
    time.sleep(8)  # the study exists before the others open it
    workers += [start_worker() for _ in range(args.workers - 1)]
    kills: collections.Counter[str] = collections.Counter()
    restarted = args.restart_down <= 0
    next_kill = time.monotonic() + rng.uniform(*args.kill_every)
    # Our storage: one connection, closed when idle, so watching costs the workers no budget.
    storage = open_storage(url)

    def complete() -> int:
        try:
            return len(optuna.load_study(study_name=name, storage=storage).get_trials(states=(TrialState.COMPLETE,)))
        except Exception:  # the database may be down right now: count again later
            return -1

    while time.monotonic() - t0 < args.timeout:
        alive = [w for w in workers if w.poll() is None]
        done = complete()
        if not alive and done >= args.trials:
            break
        if not alive:
            workers.append(start_worker())  # every worker was killed or stopped: the study is not done
        if not restarted and done >= args.trials * 0.4:
            print(
                f"[{time.monotonic() - t0:6.1f} s] restarting PostgreSQL ({args.restart_down:.0f} s down)", flush=True
            )
            subprocess.run(["bash", str(SERVICES), "pg-restart", str(args.restart_down)], check=True,
                           capture_output=True)  # fmt: skip
            restarted = True
        if sum(kills.values()) < args.kills and time.monotonic() >= next_kill and alive:
            victim = rng.choice(alive)
            how = rng.choice(["SIGKILL", "SIGTERM"])
            victim.send_signal(getattr(signal, how))
            kills[how] += 1
            print(f"[{time.monotonic() - t0:6.1f} s] {how} to worker pid {victim.pid} ({done} complete)", flush=True)
            workers.append(start_worker())
            next_kill = time.monotonic() + rng.uniform(*args.kill_every)
        time.sleep(0.5)
    wall = time.monotonic() - t0
    for w in workers:
        if w.poll() is None:
            w.kill()

    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    states = collections.Counter(t.state.name for t in trials)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    # A retry names every failed attempt before it in retry_history (Optuna's retry rule).
    retry_of = {number: t for t in trials for number in t.system_attrs.get("retry_history", [])}

    # Crashes and dead workers count toward --max-retries 3 (SIGTERM does not): a chain may end there.
    def counted(t: optuna.trial.FrozenTrial) -> int:
        return t.system_attrs.get("retry_count", 0) + (t.user_attrs.get("fail_reason") != SIGTERM_REASON)

    unretried = [t.number for t in failed if t.number not in retry_of and counted(t) <= 3]
    # A worker killed while the sampler was still choosing leaves part of the parameters; the
    # retry keeps those and the sampler fills in the rest.
    changed = [t.number for t in failed if t.number in retry_of
               and any(retry_of[t.number].params.get(k) != v for k, v in t.params.items())]  # fmt: skip
    trained = collections.Counter(t.user_attrs["identity"]["config_key"] for t in trials
                                  if t.state == TrialState.COMPLETE and t.user_attrs.get("trained"))  # fmt: skip
    twice = [key for key, n in trained.items() if n > 1]
    lost = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in failed
               if t.datetime_complete and t.datetime_start)  # fmt: skip
    outage_lines = sum(p.read_text().count("database unreachable") for p in logs.glob("*.log"))
    limit_lines = sum(p.read_text().count("connection limit is reached") for p in logs.glob("*.log"))
    checks = {
        f"exactly {args.trials} COMPLETE": states["COMPLETE"] == args.trials,
        "none RUNNING or WAITING": not states["RUNNING"] and not states["WAITING"],
        "every FAIL has a retry (unless its retries ran out)": not unretried,
        "retries keep the parameters": not changed,
        "no configuration trained twice": not twice,
    }
    print(f"study {name}: {args.trials} trials, {args.workers} workers at a time, {started} started in all")
    restarts = int(restarted and args.restart_down > 0)
    print(f"kills: {kills['SIGKILL']} SIGKILL, {kills['SIGTERM']} SIGTERM; PostgreSQL restarts: {restarts} "
          f"(outage lines in worker logs: {outage_lines}; connection-limit lines: {limit_lines})")  # fmt: skip
    if args.cap:
        print(f"as a role capped at {args.cap} connections")
    retries = sum("retry_history" in t.system_attrs for t in trials)
    print(f"states: {dict(states)}; retries: {retries}; trial-seconds lost in failed trials: {lost:.1f}")
    print(f"wall time: {wall:.1f} s; logs: {logs}")
    for check, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {check}")
    if unretried or changed or twice:
        print(f"  unretried {unretried}, changed params {changed}, trained twice {twice}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
