"""Study definitions (shipped and bad ones, their fingerprint) and where a study's storage is."""

from __future__ import annotations

from pathlib import Path

import pytest
from search_helpers import TINY, edited, sqlite_url

from ecgnet.thesis import thesis_experiments
from ecgsearch.storage.storage import redact, resolve_storage_url
from ecgsearch.study.definition import DefinitionError, load_definition, shipped_definitions


def test_shipped_definitions_load_and_express_every_thesis_config() -> None:
    assert shipped_definitions() == ["demo", "demo-edge", "demo-long", "thesis"]
    for name in shipped_definitions():
        definition = load_definition(name)
        assert [o.metric for o in definition.objectives][:2] == ["val_micro_auroc", "size_mb"]
        assert definition.fixed_trials == tuple(thesis_experiments())
        for experiment in thesis_experiments().values():
            params = definition.space.params_of(experiment.config)
            assert definition.space.arch_of(params).canonical() == experiment.config.canonical()
    assert load_definition("thesis").training.epochs == 30 and load_definition("thesis").training.batch_size == 256


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("val_micro_auroc", "val_accuracy"), "objectives[0].metric: 'val_accuracy' is not one of"),
        (('name = "tpe"', 'name = "cmaes"'), "sampler.name: 'cmaes' is not one of"),
        (("epochs = 1", "epoch = 1"), "training.epoch: unknown key; allowed keys: epochs,"),
        (('fixed_trials = ["E18", "E16"]', 'fixed_trials = ["E18", "E1"]'), "not among the space's choices"),
        (("dropout = [0.2]", ""), "space.dropout: missing"),
    ],
)
def test_a_bad_definition_names_the_file_and_the_problem(tmp_path: Path, edit, message: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(edited(TINY.read_text(), edit))
    with pytest.raises(DefinitionError) as excinfo:
        load_definition(bad)
    assert str(bad) in str(excinfo.value) and message in str(excinfo.value)


def test_fingerprint_follows_content_not_layout(tmp_path: Path) -> None:
    same = tmp_path / "same.toml"
    same.write_text("# a comment\n" + edited(TINY.read_text(), ('description = "test profile"', 'description = "x"')))
    other = tmp_path / "other.toml"
    other.write_text(edited(TINY.read_text(), ("epochs = 1", "epochs = 2")))
    assert load_definition(same).fingerprint() == load_definition(TINY).fingerprint()
    assert load_definition(other).fingerprint() != load_definition(TINY).fingerprint()


def test_storage_url_precedence_and_redaction(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ECGSEARCH_STORAGE", raising=False)
    assert resolve_storage_url(None, tmp_path) == sqlite_url(tmp_path.resolve())
    monkeypatch.setenv("ECGSEARCH_STORAGE", "postgresql+psycopg2://u:s3cret@db/x")
    assert resolve_storage_url(None, tmp_path) == "postgresql+psycopg2://u:s3cret@db/x"
    assert resolve_storage_url("sqlite:///a.db", tmp_path) == "sqlite:///a.db"
    assert "s3cret" not in redact("postgresql+psycopg2://u:s3cret@db/x")


def test_how_data_travels_to_the_device_leaves_a_definitions_fingerprint_alone() -> None:
    from ecgsearch.study.definition import load_definition, parse_definition

    demo = load_definition("demo")
    for held in (True, False):
        raw = {**demo.raw, "training": {**demo.raw["training"], "resident_data": held}}
        assert parse_definition(raw, "demo with resident_data").fingerprint() == demo.fingerprint()
    other = {**demo.raw, "training": {**demo.raw["training"], "epochs": 3}}
    assert parse_definition(other, "demo, 3 epochs").fingerprint() != demo.fingerprint()
