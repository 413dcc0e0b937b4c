"""Creating, resuming and checking a study; enqueueing the thesis's fixed trials exactly once.

A study records (as user attributes) its definition, the definition's fingerprint, the data
cache's fingerprint, the artifact directory and the trial total; every worker checks the two
fingerprints and is refused when they differ.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna

from ecgnet.thesis import thesis_experiments
from ecgsearch.definition import StudyDefinition
from ecgsearch.storage import StorageSettings, database_lock, open_storage
from ecgsearch.workspace import Workspace, data_fingerprint

__all__ = ["SearchContext", "StudyMismatchError", "create_sampler", "enqueue_thesis", "open_study"]

THESIS_ATTR = "thesis_experiment"


class StudyMismatchError(RuntimeError):
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
    ) -> SearchContext:
        """Resolve the data cache (preparing synthetic data once) and the study name."""
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
            cache = workspace.synthetic_cache(int(synthetic["records"]), int(synthetic.get("seed", 0)))
        return cls(definition, workspace, storage_url, study_name or definition.name, cache, seed,
                   settings or StorageSettings())  # fmt: skip


def create_sampler(definition: StudyDefinition, name: str | None, seed: int | None) -> optuna.samplers.BaseSampler:
    settings = {k: v for k, v in definition.sampler.items() if k != "name"}
    name = name or definition.sampler.get("name", "tpe")
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
    raise ValueError(f"unknown sampler {name!r}; known: tpe, nsga2, gp, random")


def open_study(
    context: SearchContext, *, sampler: optuna.samplers.BaseSampler | None = None, create: bool = True
) -> optuna.Study:
    """Create the study (recording its definition and data) or load it and check both."""
    storage = open_storage(context.storage_url, context.settings)
    definition = context.definition
    directions = [o.direction for o in definition.objectives]
    expected = {
        "definition_fingerprint": definition.fingerprint(),
        "data_fingerprint": data_fingerprint(context.cache),
    }
    with database_lock(context.storage_url, f"create:{context.study_name}"):
        # One name lookup: a shared storage can hold hundreds of studies, and every worker opens one.
        try:
            storage.get_study_id_from_name(context.study_name)
            exists = True
        except KeyError:
            exists = False
        if not exists and not create:
            raise StudyMismatchError(f"no study {context.study_name!r} in this storage; start it with `ecgsearch run`")
        study = optuna.create_study(
            storage=storage, study_name=context.study_name, directions=directions, sampler=sampler,
            load_if_exists=True,
        )  # fmt: skip
        attrs = study.user_attrs
        if "definition_fingerprint" not in attrs:
            study.set_metric_names([o.metric for o in definition.objectives])
            study.set_user_attr("definition", json.loads(json.dumps(definition.raw)))
            study.set_user_attr("definition_source", definition.source)
            study.set_user_attr("data_cache", str(context.cache))
            study.set_user_attr("artifact_dir", str(context.workspace.artifacts.resolve()))
            for key, value in expected.items():
                study.set_user_attr(key, value)
            return study
    for key, value in expected.items():
        if attrs[key] != value:
            what = "study definition" if key.startswith("definition") else "data cache"
            raise StudyMismatchError(
                f"study {context.study_name!r} was created with another {what} ({key} {attrs[key]}, "
                f"this worker has {value}); use the same --study-def and --data, or another --study-name"
            )
    return study


def enqueue_thesis(study: optuna.Study, context: SearchContext, names: list[str] | None = None) -> list[str]:
    """Enqueue the fixed thesis trials not yet in the study; returns the names enqueued.

    A database lock makes check-then-enqueue atomic, so concurrent callers (e.g. eight workers
    starting together) create exactly one trial per name.
    """
    names = list(context.definition.fixed_trials if names is None else names)
    experiments = thesis_experiments()
    with database_lock(context.storage_url, f"enqueue:{study.study_name}"):
        present = {t.user_attrs.get(THESIS_ATTR) for t in study.get_trials(deepcopy=False)}
        added = []
        for name in names:
            if name in present:
                continue
            params = context.definition.space.params_of(experiments[name].config)
            study.enqueue_trial(params, user_attrs={THESIS_ATTR: name})
            added.append(name)
    return added
