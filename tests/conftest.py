"""Shared fixtures. Service fixtures fail (never skip) when the service is missing.

PostgreSQL and Slurm come from ``.ci/services.sh up``, which writes the connection settings to
/tmp/ci-services.env; ``.ci/run`` starts them before the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# One thread per process, inherited by every worker a test starts: pytest-xdist runs two test
# processes on 2 cores, and OpenMP pools spinning against each other make epochs 5-10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SERVICES_ENV_FILE = Path(os.environ.get("ECGSEARCH_SERVICES_ENV", "/tmp/ci-services.env"))
START_HINT = "start it with `bash .ci/services.sh up` (as root), as .ci/run does"


def _services_env() -> dict[str, str]:
    """Variables exported by the services script, read from its env file."""
    return _services_env_file(SERVICES_ENV_FILE)


def _services_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        for word in line.removeprefix("export ").split():
            key, sep, value = word.partition("=")
            if sep:
                values[key] = value
    return values


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The Slurm tests first: pytest-xdist (``--dist loadfile``) runs a module's tests in one
    process, so its module fixtures (a finished study, a trained model) are made once, and the
    Slurm module, the longest unit, runs while the other process takes every other module
    (``--no-loadscope-reorder`` keeps this order instead of sorting modules by test count).

    Not ``--dist loadgroup``: under pytest 9.2 its groups are silently ignored (pytest-xdist
    issue 1386) and every test went to either process, its module fixtures made in both.
    """
    items.sort(key=lambda item: item.module.__name__ != "test_slurm")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL of the test PostgreSQL (contains a password: never print it)."""
    url = os.environ.get("OPTUNA_STORAGE_URL") or _services_env().get("OPTUNA_STORAGE_URL")
    if not url:
        pytest.fail(f"PostgreSQL is not configured (no OPTUNA_STORAGE_URL): {START_HINT}")
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        engine.dispose()
    except sqlalchemy.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable ({type(exc.orig).__name__}): {START_HINT}")
    return url


@pytest.fixture(scope="session")
def slurm() -> None:
    """A running single-node Slurm controller and node."""
    if shutil.which("sbatch") is None:
        pytest.fail(f"Slurm is not installed: {START_HINT}")
    probe = subprocess.run(["timeout", "10", "sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
    if probe.returncode != 0 or not probe.stdout.strip():
        pytest.fail(f"Slurm is not running (sinfo: {probe.stderr.strip()!r}): {START_HINT}")


@pytest.fixture(scope="session")
def synthetic_cache_path(tmp_path_factory) -> Path:
    """600 synthetic records (seed 0) in the real formats, prepared into one cache.

    Made once for the whole run: under pytest-xdist the processes share the base temporary
    folder's parent, and the first to take the lock makes the cache for all (tests only read it).
    """
    from filelock import FileLock

    from ecgnet.data.cache import prepare_cache
    from ecgnet.data.synth import write_synthetic_dataset

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    root = shared / "synthetic-600"
    with FileLock(str(shared / "synthetic-600.lock")):
        if not (root / "synthetic.h5").exists():
            write_synthetic_dataset(root / "records", records=600, seed=0)
            report = prepare_cache([root / "records"], root / "synthetic.h5", workers=2)
            assert report.rejected == [] and report.records == 600
    return root / "synthetic.h5"


SERVICES_SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "services.sh"
# A second PostgreSQL for the test that restarts its server: the other tests' stays up (they run
# side by side under pytest-xdist).
OUTAGE_SERVER = {"PGDATA": "/tmp/ci-pg-outage", "PGPORT": "5433", "ENV_FILE": "/tmp/ci-pg-outage.env",
                 "PG_MAX_CONN": "300"}  # fmt: skip


@pytest.fixture(scope="session")
def outage_postgres() -> tuple[str, dict[str, str]]:
    """URL of a PostgreSQL of its own, and the environment under which services.sh restarts it."""
    env = {**os.environ, **OUTAGE_SERVER}
    started = subprocess.run(["bash", str(SERVICES_SCRIPT), "pg-up"], env=env, capture_output=True, text=True,
                             timeout=300, check=False)  # fmt: skip
    if started.returncode != 0:
        pytest.fail(f"cannot start a second PostgreSQL (as root, like .ci/run): {started.stdout[-1500:]}"
                    f"{started.stderr[-1500:]}")  # fmt: skip
    return _services_env_file(Path(OUTAGE_SERVER["ENV_FILE"]))["OPTUNA_STORAGE_URL"], env
