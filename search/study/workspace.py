"""The workspace folder: study database (SQLite default), artifacts, prepared data.

ecgsearch-work/
  study.db          SQLite storage (unless --storage / ECGSEARCH_STORAGE name another)
  artifacts/        trial weights and model.json (optuna.artifacts)
  data/             synthetic records and caches prepared for studies that ask for them
  logs/             one log per trial
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from ecgsearch.private_files import warn_if_open
from ecgsearch.storage.storage import database_lock

__all__ = ["Workspace", "data_fingerprint"]


@dataclasses.dataclass(frozen=True)
class Workspace:
    """The folder a study's local files live in (see the module docstring for its layout)."""

    root: Path

    @property
    def artifacts(self) -> Path:
        """Trial weights and model.json files (optuna.artifacts store)."""
        return self.root / "artifacts"

    @property
    def data(self) -> Path:
        """Synthetic records and caches prepared for studies."""
        return self.root / "data"

    @property
    def logs(self) -> Path:
        """One log file per trial."""
        return self.root / "logs"

    def create(self) -> Workspace:
        """Create the folders (no error when they exist; one warning if the workspace is open to others)."""
        warn_if_open(self.root)
        for folder in (self.root, self.artifacts, self.data, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def synthetic_cache(self, records: int, seed: int, preprocess: str = "exact") -> Path:
        """Synthetic records prepared in a preprocessing style, generated and prepared once (safe with many workers)."""
        # Imported here: the data stack (h5py, scipy) is for workers, not for commands that read a study.
        from ecgnet.data.cache import prepare_cache
        from ecgnet.data.preprocess import PreprocessConfig
        from ecgnet.data.synth import write_synthetic_dataset

        name = f"synthetic-{records}-seed{seed}"
        # The exact style keeps the name caches had before styles existed, so they are reused.
        cache = self.data / (f"{name}.h5" if preprocess == "exact" else f"{name}-{preprocess}.h5")
        lock_db = f"sqlite:///{self.data / name}"
        with database_lock(lock_db, "prepare"):
            if not cache.exists():
                write_synthetic_dataset(self.data / name, records=records, seed=seed)
                prepare_cache([self.data / name], cache, config=PreprocessConfig(style=preprocess))
        return cache


def data_fingerprint(cache: Path | str) -> str:
    """Hash of the cache's records and preprocessing (names, lengths, codes), not of its path.

    A truncated, empty or foreign cache is an ``InputError`` naming it.
    """
    from ecgnet.data.cache_reader import open_cache_file

    digest = hashlib.sha256()
    with open_cache_file(cache) as f:
        digest.update(str(f.attrs["preprocess"]).encode())
        for key in ("names", "lengths", "codes", "sources"):
            digest.update(f[key][()].tobytes() if f[key].dtype.kind != "O" else "\n".join(f[key].asstr()[()]).encode())
    return digest.hexdigest()[:16]
