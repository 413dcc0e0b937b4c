"""The study definition schema: every bad key, type and range is refused with file, location and problem."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import get_args

import pytest
from search_helpers import ECGSEARCH, TINY, edited, environment, run

from ecgnet.arch import CONV_TYPES, ArchConfig, ArchConfigError
from ecgnet.data.labels import CLASS_SETS
from ecgnet.data.preprocess import PREPROCESS_STYLES
from ecgnet.data_spec import DataSpec
from ecgnet.errors import InputError
from ecgnet.train_config import TrainConfig
from ecgsearch.study.defaults import SAMPLERS
from ecgsearch.study.definition import DefinitionError, load_definition, parse_definition, shipped_definitions
from ecgsearch.study.definition_schema import (
    DATA_DEFAULTS,
    SAMPLER_SETTINGS,
    ClassSetName,
    ConvType,
    PreprocessStyle,
    SpaceModel,
    TrainingModel,
)
from ecgsearch.study.space import SearchSpace

# (text in tiny.toml, its replacement): "" prepends the replacement, i.e. a top-level key.
BAD = {
    "unknown top-level key": (("", 'colour = "red"\n'), "colour", "unknown key; allowed keys: name, description"),
    "unknown data key": (("[data]\n", '[data]\ncahce = "x"\n'), "data.cahce", "allowed keys: cache, synthetic"),
    "unknown space key": (("[space]\n", "[space]\nkernel = [3]\n"), "space.kernel", "allowed keys: blocks"),
    "unknown training key": (("epochs = 1", "epoch = 1"), "training.epoch", "allowed keys: epochs, max_steps"),
    "unknown synthetic key": (("seed = 0 }", "seed = 0, n = 1 }"), "data.synthetic.n", "allowed keys: records, seed"),
    "epochs a string": (("epochs = 1", 'epochs = "two"'), "training.epochs", "must be a valid integer"),
    "batch size a float": (("batch_size = 16", "batch_size = 32.5"), "training.batch_size", "valid integer"),
    "epochs negative": (("epochs = 1", "epochs = -1"), "training.epochs", "greater than or equal to 1"),
    "learning rate negative": (("window = 512", "window = 512\nlearning_rate = -5"), "training.learning_rate",
                               "greater than 0"),
    "learning rate nan": (("window = 512", "window = 512\nlearning_rate = nan"), "training.learning_rate", "finite"),
    "learning rate a string": (("window = 512", 'window = 512\nlearning_rate = "0.1"'), "training.learning_rate",
                               "valid number"),
    "threshold 1": (("window = 512", "window = 512\nthreshold = 1.0"), "training.threshold", "less than 1"),
    "max_steps 0": (("window = 512", "window = 512\nmax_steps = 0"), "training.max_steps", "greater than or equal"),
    "num_workers negative": (("window = 512", "window = 512\nnum_workers = -1"), "training.num_workers", "equal to 0"),
    "max_seconds 0": (("window = 512", "window = 512\nmax_seconds = 0"), "training.max_seconds", "greater than 0"),
    "amp an integer": (("window = 512", "window = 512\namp = 1"), "training.amp", "valid boolean"),
    "blocks high 9": (("high = 2", "high = 9"), "space.blocks.high", "less than or equal to 4"),
    "blocks low 0": (("low = 1", "low = 0"), "space.blocks.low", "greater than or equal to 1"),
    "blocks low above high": (("low = 1, high = 2", "low = 2, high = 1"), "space.blocks.high", "below low"),
    "width 0": (("[0.5, 0.25, 0.125]", "[0.5, 0]"), "space.width_multiplier[1]", "greater than 0"),
    "width above 1": (("[0.5, 0.25, 0.125]", "[1.5]"), "space.width_multiplier[0]", "less than or equal to 1"),
    "width without channels": (("[0.5, 0.25, 0.125]", "[0.005]"), "space.width_multiplier[0]",
                               "no network can be built"),
    "width listed twice": (("[0.5, 0.25, 0.125]", "[0.5, 0.5]"), "space.width_multiplier", "0.5 is listed twice"),
    "dropout 1.5": (("dropout = [0.2]", "dropout = [1.5]"), "space.dropout[0]", "less than 1"),
    "dropout empty": (("dropout = [0.2]", "dropout = []"), "space.dropout", "must not be empty"),
    "dropout missing": (("dropout = [0.2]", ""), "space.dropout", "missing"),
    "conv type unknown": (('conv_type = ["standard", ', 'conv_type = ["grouped", '), "space.conv_type[0]",
                          "'grouped' is not one of"),
    "se an integer": (("se = [true, false]", "se = [1]"), "space.se[0]", "valid boolean"),
    "even block kernel": (("block_kernel = [7]", "block_kernel = [7, 4]"), "space.block_kernel[1]", "odd"),
    "metadata negative": (("metadata_features = [10]", "metadata_features = [-1]"), "space.metadata_features[0]",
                          "greater than or equal to 0"),
    "stem not kernel/padding": (('"7/3"]', '"7-3"]'), "space.stem[1]", "not 'kernel/padding'"),
    "stem kernel 0": (('"7/3"]', '"0/3"]'), "space.stem[1]", "no network can be built"),
    "objective metric unknown": (("val_micro_auroc", "val_accuracy"), "objectives[0].metric", "'val_accuracy'"),
    "objective direction unknown": (('direction = "minimize"', 'direction = "down"'), "objectives[1].direction",
                                    "'down' is not one of"),
    "objective listed twice": (('metric = "size_mb"', 'metric = "val_micro_auroc"'), "objectives", "listed twice"),
    "no objectives": (('[[objectives]]\nmetric = "val_micro_auroc"\ndirection = "maximize"\n\n[[objectives]]\n'
                       'metric = "size_mb"\ndirection = "minimize"\n', "objectives = []\n"), "objectives",
                      "must not be empty"),
    "sampler unknown": (('name = "tpe"', 'name = "cmaes"'), "sampler.name", "'cmaes' is not one of"),
    "sampler setting it does not take": (('name = "tpe"', 'name = "random"'), "sampler.n_startup_trials",
                                         "does not take"),
    "sampler setting unknown": (("n_startup_trials = 4", "n_startup_trials = 4\nmultivariate = true"),
                                "sampler.multivariate", "allowed keys: name, n_startup_trials"),
    "n_startup_trials negative": (("n_startup_trials = 4", "n_startup_trials = -1"), "sampler.n_startup_trials",
                                  "greater than or equal to 0"),
    "default_trials 0": (("default_trials = 6", "default_trials = 0"), "default_trials", "greater than or equal"),
    "fixed trial unknown": (('["E18", "E16"]', '["E18", "E19"]'), "fixed_trials[1]", "not a thesis experiment"),
    "fixed trial twice": (('["E18", "E16"]', '["E18", "E18"]'), "fixed_trials", "'E18' is listed twice"),
    "fixed trial outside the space": (('["E18", "E16"]', '["E18", "E1"]'), "fixed_trials[1]",
                                      "not among the space's choices"),
    "folds 1": (("folds = 4", "folds = 1"), "data.folds", "greater than or equal to 2"),
    "fold not below folds": (("fold = 0", "fold = 4"), "data.fold", "not below folds (4)"),
    "class set unknown": (("fold = 0", 'fold = 0\nclass_set = "all"'), "data.class_set", "'all' is not one of"),
    "test split not a name": (('test = "cpsc"', 'test = "my db"'), "data.test", "'my db' is neither a test group"),
    "preprocess unknown": (('test = "cpsc"', 'test = "cpsc"\npreprocess = "fast"'), "data.preprocess",
                           "'fast' is not one of"),
    "max_train_records 0": (("max_train_records = 32", "max_train_records = 0"), "data.max_train_records",
                            "greater than or equal to 1"),
    "synthetic records 0": (("records = 120", "records = 0"), "data.synthetic.records", "greater than or equal"),
    "space not a table": (("[space]\n", "[spacex]\n"), "space", "missing"),
}  # fmt: skip


def write_edit(tmp_path: Path, old: str, new: str) -> Path:
    text = TINY.read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(new + text if not old else edited(text, (old, new)))
    return bad


@pytest.mark.parametrize(("edit", "location", "problem"), BAD.values(), ids=BAD.keys())
def test_a_bad_definition_is_refused_with_file_location_and_problem(tmp_path: Path, edit, location, problem) -> None:
    bad = write_edit(tmp_path, *edit)
    with pytest.raises(DefinitionError) as excinfo:
        load_definition(bad)
    message = str(excinfo.value)
    assert message.startswith(f"{bad}: ")
    assert f"{location}: " in message and problem in message
    assert "pydantic" not in message and "http" not in message


def test_many_problems_make_a_few_lines(tmp_path: Path) -> None:
    settings = "epochs = -1\nbatch_size = 0.5\nthreshold = 2.0\nseed = -1\namp = 0\ndevice = 1\nwindow = 0"
    bad = write_edit(tmp_path, "epochs = 1\nbatch_size = 16\nwindow = 512", settings)
    with pytest.raises(DefinitionError) as excinfo:
        load_definition(bad)
    lines = str(excinfo.value).splitlines()
    assert len(lines) == 6 and lines[0].startswith(f"{bad}: training.epochs: ")
    assert all(line.startswith("  training.") for line in lines[1:5]) and lines[5] == "  (and 2 more)"


def test_shipped_definitions_and_tiny_load_with_unchanged_fingerprints() -> None:
    fingerprints = {name: load_definition(name).fingerprint() for name in [*shipped_definitions(), str(TINY)]}
    assert fingerprints == {"demo": "833cc0ef5f678137", "demo-edge": "5264e8e63bed9bbd",
                            "demo-long": "47d767155e8d58f5", "thesis": "e759a62f90577c34",
                            str(TINY): "953b41099d99cf42"}  # fmt: skip
    # demo-long is the demo trained longer, with early stopping: same data, space, objectives, thesis trials.
    demo, long = load_definition("demo"), load_definition("demo-long")
    assert dataclasses.replace(long.training, epochs=2) == demo.training and long.training.epochs == 9
    assert (long.data, long.space, long.objectives, long.fixed_trials) == (demo.data, demo.space, demo.objectives,
                                                                          demo.fixed_trials)  # fmt: skip
    assert long.early_stopping.rungs == (1, 3) and load_definition("thesis").early_stopping.rungs == (3, 9)
    # demo-edge is the demo with CPU latency as a third objective, timed on 4096 samples.
    edge = load_definition("demo-edge")
    assert (edge.data, edge.space, edge.training, edge.fixed_trials) == (demo.data, demo.space, demo.training,
                                                                         demo.fixed_trials)  # fmt: skip
    assert [o.metric for o in edge.objectives] == ["val_micro_auroc", "size_mb", "latency_ms"]
    assert (edge.latency_samples, edge.latency_runs) == (4096, 30) and demo.latency_samples == 4096
    tiny = load_definition(TINY)
    assert tiny.sampler == {"name": "tpe", "n_startup_trials": 4} and tiny.default_trials == 6
    assert tiny.training == TrainConfig(epochs=1, batch_size=16, window=512)
    assert tiny.space.choices["width_multiplier"] == (0.5, 0.25, 0.125) and tiny.space.blocks_high == 2


def test_a_recorded_definition_parses_again(tmp_path: Path) -> None:
    definition = load_definition(TINY).with_data_cache(str(tmp_path / "cache"))
    recorded = json.loads(json.dumps(definition.raw))
    again = parse_definition(recorded, "study")
    assert again.fingerprint() == definition.fingerprint() and again.data == definition.data
    assert again.space == definition.space and again.training == definition.training


def test_optional_sections_take_their_defaults() -> None:
    raw = tomllib.loads(TINY.read_text())
    for key in ("sampler", "training", "data", "fixed_trials", "default_trials", "description"):
        del raw[key]
    definition = parse_definition(raw, "minimal")
    assert definition.training == TrainConfig() and definition.fixed_trials == () and definition.default_trials == 100
    assert definition.sampler == {"name": "tpe"} and definition.data == {}


def test_each_sampler_takes_only_its_own_settings() -> None:
    raw = tomllib.loads(TINY.read_text())
    for name in ("tpe", "gp", "botorch"):
        assert parse_definition(raw | {"sampler": {"name": name, "n_startup_trials": 0}}, "s").sampler["name"] == name
    for name in ("nsga2", "random"):
        assert parse_definition(raw | {"sampler": {"name": name}}, "s").sampler == {"name": name}
        with pytest.raises(DefinitionError, match=rf"^s: sampler\.n_startup_trials: the {name} sampler does not take"):
            parse_definition(raw | {"sampler": {"name": name, "n_startup_trials": 4}}, "s")


def test_training_fields_are_exactly_train_config_fields() -> None:
    fields = dataclasses.fields(TrainConfig)
    assert list(TrainingModel.model_fields) == [f.name for f in fields]
    assert TrainConfig(**TrainingModel().model_dump()) == TrainConfig()


def test_schema_choices_follow_ecgnet() -> None:
    assert get_args(ConvType) == CONV_TYPES
    assert get_args(ClassSetName) == CLASS_SETS
    assert get_args(PreprocessStyle) == PREPROCESS_STYLES
    assert tuple(SAMPLER_SETTINGS) == SAMPLERS  # the command line's --sampler choices


def test_objective_names_limits_and_references_come_from_one_metric_table() -> None:
    from ecgsearch.analysis.hypervolume import REFERENCE_AUROC, REFERENCE_MB
    from ecgsearch.metric_table import LIMIT_METRICS, METRIC_TABLE, UNTRAINED, hypervolume_reference, is_log_scale
    from ecgsearch.study.definition import METRICS

    assert METRICS == {name: metric.direction for name, metric in METRIC_TABLE.items()}
    assert set(LIMIT_METRICS) == {"size_mb", "params", "macs", "latency_ms", "int8_size_mb"}
    assert all(METRICS[name] == "minimize" and is_log_scale(name) for name in LIMIT_METRICS)
    assert UNTRAINED["val_micro_auroc"] == UNTRAINED["val_int8_macro_auroc"] == REFERENCE_AUROC == 0.5
    assert UNTRAINED["val_macro_f1"] == 0.0 and set(UNTRAINED) == set(METRICS) - set(LIMIT_METRICS)
    assert hypervolume_reference("size_mb") == REFERENCE_MB and METRIC_TABLE["val_micro_auroc"].int8_twin == (
        "val_int8_micro_auroc"
    )


SPACE = tomllib.loads(TINY.read_text())["space"]
# Values on both sides of each ArchConfig limit, within the schema's own ranges.
CHOICES = [
    ("width_multiplier", "width_multiplier", [1, 1.0, 0.5, 0.02, 0.008, 0.0078125, 0.005]),
    ("block_kernel", "block_kernel", [1, 2, 3, 9, 10]),
    ("metadata_features", "metadata_features", [0, 1, 64]),
    ("dropout", "dropout", [0, 0.0, 0.5, 0.999]),
    ("conv_type", "conv_type", list(CONV_TYPES)),
    ("stem", "stem_kernel", ["15/7", "7/7", "8/3", "1/0", "3/40"]),
]


@pytest.mark.parametrize(("name", "field", "values"), CHOICES, ids=[c[0] for c in CHOICES])
def test_the_space_accepts_a_choice_exactly_when_arch_config_does(name: str, field: str, values: list) -> None:
    for value in values:
        if name == "stem":
            kernel, padding = (int(part) for part in value.split("/"))
            arch = {"stem_kernel": kernel, "stem_padding": padding}
        else:
            arch = {field: value}
        try:
            ArchConfig(**arch)
            builds = True
        except ArchConfigError:
            builds = False
        try:
            SpaceModel.model_validate(SPACE | {name: [value]})
            accepted = True
        except ValueError:
            accepted = False
        assert accepted == builds, f"{name} = {value!r}: schema {accepted}, ArchConfig {builds}"


def test_every_point_of_an_accepted_space_builds() -> None:
    space = load_definition("demo").space
    first = {f"blocks_{i}": space.blocks_low for i in range(1, 5)}
    for name, choices in space.choices.items():
        for choice in choices:
            params = first | {n: c[0] for n, c in space.choices.items()} | {name: choice}
            space.arch_of(params)


def test_search_space_from_dict_names_the_bad_choice() -> None:
    assert SearchSpace.from_dict(SPACE) == load_definition(TINY).space
    with pytest.raises(InputError, match=r"^space\.dropout\[1\]: must be less than 1 \(got 1\.5\)$"):
        SearchSpace.from_dict(SPACE | {"dropout": [0.2, 1.5]})


def test_the_worker_refuses_a_space_without_networks_before_any_trial(tmp_path: Path) -> None:
    bad = write_edit(tmp_path, "[0.5, 0.25, 0.125]", "[0]")
    bad.write_text(edited(bad.read_text(), ('fixed_trials = ["E18", "E16"]', "fixed_trials = []")))
    workspace = tmp_path / "ws"
    cmd = [*ECGSEARCH, "worker", "--study-def", str(bad), "--study-name", "x", "--trials", "2",
           "--workspace", str(workspace)]  # fmt: skip
    result = run(cmd, environment(None), timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {bad}: space.width_multiplier[0]: must be greater than 0 (got 0)"], result.stderr
    assert not (workspace / "study.db").exists()


def test_data_section_is_parsed_once_into_a_data_spec_with_the_same_defaults() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(DataSpec) if f.name in DATA_DEFAULTS}
    assert defaults == DATA_DEFAULTS
    demo = load_definition("demo")
    assert demo.data_spec == DataSpec(cache="", test="cpsc", folds=5, fold=0, class_set="thesis17",
                                      max_train_records=240)  # fmt: skip
    assert demo.with_data_cache("/data/ecg.h5").data_spec.cache == "/data/ecg.h5"
