"""Creating, resuming and checking a study; enqueueing the thesis's fixed trials exactly once.

A study records (as user attributes) its definition, the definition's fingerprint, the data
cache's fingerprint, the artifact directory and its settings (trial total, size budget, sampler,
heartbeat; see ``ecgsearch.study.settings``); every worker checks the fingerprints and the
settings it was given, and is refused when they differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import optuna

from ecgnet.data_spec import DataSpec
from ecgnet.errors import InputError
from ecgnet.thesis import thesis_experiments
from ecgsearch.errors import UserError
from ecgsearch.storage.storage import StorageSettings, database_lock, lock_target, open_storage
from ecgsearch.study.defaults import DEFAULT_SAMPLER, SAMPLERS
from ecgsearch.study.definition import StudyDefinition
from ecgsearch.study.proposals import UnseenProposalSampler
from ecgsearch.study.settings import SETTINGS_ATTR, SETTINGS_LOG_ATTR, StudySettings, log_entry, settle
from ecgsearch.study.workspace import Workspace, data_fingerprint
from ecgsearch.trial_record import THESIS_ATTR

__all__ = [
    "SLOT_ENV",
    "SearchContext",
    "StudyMismatchError",
    "create_sampler",
    "default_settings",
    "enqueue_thesis",
    "open_study",
    "study_settings",
    "worker_seed",
]

DEFAULT_MAX_CONSECUTIVE_FAILURES = 3
# Set by `run --workers K` / `worker --workers K` in each of its K processes: 0 .. K-1.
SLOT_ENV = "ECGSEARCH_WORKER_SLOT"
# Which process ran a trial: host, and the Slurm array task (or the process id outside Slurm),
# then /slot for one of K workers a task (or `run --workers K`) starts (a worker alone keeps its
# old name).
WORKER_ID = f"{socket.gethostname()}:{os.environ.get('SLURM_ARRAY_TASK_ID') or 'pid' + str(os.getpid())}" + (
    f"/{os.environ[SLOT_ENV]}" if os.environ.get(SLOT_ENV) else ""
)


class StudyMismatchError(UserError):
    """A worker's definition or data differs from the study's."""


@dataclasses.dataclass
class SearchContext:
    """Everything a worker needs: where the study is, what it runs, on which data."""

    definition: StudyDefinition
    workspace: Workspace
    storage_url: str
    study_name: str
    cache: Path
    seed: int = 0
    settings: StorageSettings = dataclasses.field(default_factory=StorageSettings)
    # The study settings this command gave explicitly (see ecgsearch.study.settings).
    requested: dict[str, Any] = dataclasses.field(default_factory=dict)
    raise_total: bool = False
    changes: list[str] = dataclasses.field(default_factory=list)  # what opening the study changed

    @property
    def data_spec(self) -> DataSpec:
        """The definition's ``[data]`` on this study's cache."""
        return dataclasses.replace(self.definition.data_spec, cache=str(self.cache))

    @classmethod
    def prepare(
        cls,
        definition: StudyDefinition,
        workspace: Workspace,
        storage_url: str,
        *,
        study_name: str | None = None,
        data: str | None = None,
        seed: int = 0,
        settings: StorageSettings | None = None,
        requested: dict[str, Any] | None = None,
        raise_total: bool = False,
    ) -> SearchContext:
        """Resolve the data cache (preparing synthetic data once) and the study name.

        A cache the definition's ``[data]`` cannot use (another preprocessing style, no such test
        source) is a ``UserError`` here, before any study or trial exists.
        """
        workspace.create()
        if data:
            definition = definition.with_data_cache(str(Path(data).resolve()))
        if not definition.data.get("cache") and not definition.data.get("synthetic"):
            raise FileNotFoundError(
                f"study definition {definition.source} names no data: give --data CACHE "
                "(a cache from `ecgsearch data prepare`)"
            )
        if definition.data.get("cache"):
            cache = Path(definition.data["cache"])
            if not cache.exists():
                raise FileNotFoundError(f"{cache}: no such data cache; create it with `ecgsearch data prepare`")
        else:
            synthetic = definition.data["synthetic"]
            cache = workspace.synthetic_cache(
                int(synthetic["records"]), int(synthetic.get("seed", 0)), definition.data_spec.preprocess or "exact"
            )
        # Here, not at the top: the data stack (h5py, pandas, scipy) is for workers, not for reading a study.
        from ecgnet.data.cache_reader import check_cache_fits

        try:  # before the study is opened: a refused worker creates nothing
            check_cache_fits(dataclasses.replace(definition.data_spec, cache=str(cache)))
        except InputError as exc:
            raise UserError(f"{exc} (study definition {definition.source})") from None
        return cls(
            definition,
            workspace,
            storage_url,
            study_name or definition.name,
            cache,
            seed,
            settings or StorageSettings(),
            dict(requested or {}),
            raise_total,
        )


def create_sampler(definition: StudyDefinition, name: str | None, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` (default: the definition's) with the definition's sampler settings."""
    settings = {k: v for k, v in definition.sampler.items() if k != "name"}
    name = name or definition.sampler.get("name", DEFAULT_SAMPLER)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **settings)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, **{k: v for k, v in settings.items() if k != "n_startup_trials"}
        )
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **settings)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "botorch":
        return _botorch_sampler(seed, settings)
    raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def _botorch_sampler(seed: int | None, settings: dict[str, Any]) -> optuna.samplers.BaseSampler:
    """BoTorch's qNEHVI (noisy expected hypervolume improvement, Daulton et al. 2021): a GP
    model of each objective that takes the observed values as noisy."""
    try:
        from optuna_integration.botorch import BoTorchSampler, qnehvi_candidates_func
    except ImportError:
        raise UserError(
            "sampler 'botorch' needs optuna-integration and botorch: pip install 'ecgsearch[botorch]'"
        ) from None
    # Running trials count as pending points, so parallel workers are not sent to one place.
    return BoTorchSampler(seed=seed, candidates_func=qnehvi_candidates_func, consider_running_trials=True, **settings)


def default_settings(definition: StudyDefinition, storage: StorageSettings) -> StudySettings:
    """A new study's settings before the user's flags: the definition's, then ecgsearch's defaults."""
    return StudySettings(
        total=definition.default_trials,
        sampler=definition.sampler.get("name", DEFAULT_SAMPLER),
        thesis=bool(definition.fixed_trials),
        heartbeat_interval=storage.heartbeat_interval,
        grace_period=storage.grace_period,
        max_retries=storage.max_retries,
        max_consecutive_failures=DEFAULT_MAX_CONSECUTIVE_FAILURES,
    )


def study_settings(study: optuna.Study) -> StudySettings:
    """The settings a study recorded when it was created (or last raised its total)."""
    return StudySettings.from_dict(study.user_attrs[SETTINGS_ATTR])


def open_study(
    context: SearchContext, *, sampler: optuna.samplers.BaseSampler | None = None, create: bool = True
) -> optuna.Study:
    """Create the study (recording its definition, data and settings) or load it and check all three.

    The study's heartbeat settings are applied to this process's storage, and its sampler
    (wrapped so that it proposes only networks the study has not seen) is used unless
    ``sampler`` is given.
    """
    storage = open_storage(context.storage_url, context.settings)
    definition = context.definition
    directions = [o.direction for o in definition.objectives]
    expected = {
        "definition_fingerprint": definition.fingerprint(),
        "data_fingerprint": data_fingerprint(context.cache),
    }
    with database_lock(storage, f"create:{context.study_name}"):
        # One name lookup: a shared storage can hold hundreds of studies, and every worker opens one.
        try:
            storage.get_study_id_from_name(context.study_name)
            exists = True
        except KeyError:
            exists = False
        if not exists and not create:
            raise StudyMismatchError(f"no study {context.study_name!r} in this storage; start it with `ecgsearch run`")
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(context.study_name)) if exists else {}
        # A study whose creator died before recording anything is set up afresh.
        initialised = "definition_fingerprint" in attrs
        if initialised:
            # Checked before anything is written: a refused worker leaves the study as it was.
            _check_fingerprints(context.study_name, attrs, expected)
        study = optuna.create_study(
            storage=storage,
            study_name=context.study_name,
            directions=directions,
            sampler=sampler,
            load_if_exists=True,
        )
        if not initialised:
            study.set_metric_names([o.metric for o in definition.objectives])
            study.set_user_attr("definition", json.loads(json.dumps(definition.raw)))
            study.set_user_attr("definition_source", definition.source)
            study.set_user_attr("data_cache", str(context.cache))
            study.set_user_attr("artifact_dir", str(context.workspace.artifacts.resolve()))
            for key, value in expected.items():
                study.set_user_attr(key, value)
        recorded = StudySettings.from_dict(attrs[SETTINGS_ATTR]) if SETTINGS_ATTR in attrs else None
        settings, changes = settle(
            recorded,
            default_settings(definition, context.settings),
            context.requested,
            raise_total=context.raise_total,
            study_name=context.study_name,
        )
        if recorded is None or changes:
            study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
        if changes:
            log = list(attrs.get(SETTINGS_LOG_ATTR, [])) + [log_entry(change, WORKER_ID) for change in changes]
            study.set_user_attr(SETTINGS_LOG_ATTR, log)
            context.changes = changes
    storage.configure_heartbeat(settings.heartbeat_interval, settings.grace_period, settings.max_retries)
    if sampler is None:
        seed = worker_seed(context.seed)
        study.sampler = UnseenProposalSampler(
            create_sampler(definition, settings.sampler, seed), definition.space, seed
        )
    return study


def _check_fingerprints(study_name: str, attrs: dict, expected: dict[str, str]) -> None:
    for key, value in expected.items():
        if attrs.get(key) != value:
            what = "study definition" if key.startswith("definition") else "data cache"
            raise StudyMismatchError(
                f"study {study_name!r} was created with another {what} ({key} {attrs.get(key)}, "
                f"this worker has {value}); use the same --study-def and --data, or another --study-name"
            )


def worker_seed(seed: int) -> int:
    """Each worker's own sampler seed, derived from the run's seed and where the worker runs."""
    where = f"{seed}:{WORKER_ID}:{os.getpid()}"
    return int.from_bytes(hashlib.sha256(where.encode()).digest()[:4], "big")


def enqueue_thesis(study: optuna.Study, context: SearchContext, names: list[str] | None = None) -> list[str]:
    """Enqueue the fixed thesis trials not yet in the study; returns the names enqueued.

    A database lock makes check-then-enqueue atomic, so concurrent callers (e.g. eight workers
    starting together) create exactly one trial per name.
    """
    names = list(context.definition.fixed_trials if names is None else names)
    experiments = thesis_experiments()
    with database_lock(lock_target(study, context.storage_url), f"enqueue:{study.study_name}"):
        present = {t.user_attrs.get(THESIS_ATTR) for t in study.get_trials(deepcopy=False)}
        added = []
        for name in names:
            if name in present:
                continue
            params = context.definition.space.params_of(experiments[name].config)
            study.enqueue_trial(params, user_attrs={THESIS_ATTR: name})
            added.append(name)
    return added
