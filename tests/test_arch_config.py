"""ArchConfig: validation that names the field and the allowed values; plain-data round trip."""

from __future__ import annotations

import dataclasses

import pytest

from ecgnet.arch import ArchConfig, ArchConfigError


@pytest.mark.parametrize(
    ("changes", "field", "allowed"),
    [
        ({"blocks": (2, 0, 2, 2)}, "blocks", "1..4"),
        ({"blocks": (2, 5, 2, 2)}, "blocks", "1..4"),
        ({"blocks": (2, 2, 2)}, "blocks", "four integers"),
        ({"width_multiplier": 0.0}, "width_multiplier", "> 0"),
        ({"width_multiplier": 1 / 128}, "width_multiplier", "every stage needs >= 1 channel"),
        ({"stem_channels": 0}, "stem_channels", ">= 1"),
        ({"block_kernel": 0}, "block_kernel", "odd integer >= 1"),
        ({"block_kernel": 4}, "block_kernel", "odd integer >= 1"),
        ({"stem_kernel": 0}, "stem_kernel", ">= 1"),
        ({"stem_padding": -1}, "stem_padding", ">= 0"),
        ({"conv_type": "grouped"}, "conv_type", "'standard' or 'depthwise_separable'"),
        ({"se": "yes"}, "se", "true or false"),
        ({"metadata_features": -1}, "metadata_features", "0 = no branch"),
        ({"dropout": 1.0}, "dropout", "[0, 1)"),
        ({"num_classes": 0}, "num_classes", ">= 1"),
    ],
)
def test_invalid_value_names_field_and_allowed_values(changes, field, allowed) -> None:
    with pytest.raises(ArchConfigError) as excinfo:
        ArchConfig(**changes)
    message = str(excinfo.value)
    assert f"ArchConfig.{field} = " in message
    assert allowed in message


def test_unknown_field_in_plain_data_is_named() -> None:
    with pytest.raises(ArchConfigError, match=r"unknown architecture field.*kernel_size"):
        ArchConfig.from_dict({"kernel_size": 7})


def test_plain_data_round_trip_preserves_config() -> None:
    cfg = ArchConfig(blocks=[1, 2, 3, 4], width_multiplier=0.125, conv_type="depthwise_separable", se=False)
    assert cfg.blocks == (1, 2, 3, 4)
    assert ArchConfig.from_dict(cfg.to_dict()) == cfg


def test_stage_widths_follow_multiplier_and_stem_stays() -> None:
    assert ArchConfig().stage_widths == (64, 128, 256, 512)
    assert ArchConfig(width_multiplier=0.5).stage_widths == (32, 64, 128, 256)
    assert ArchConfig(width_multiplier=0.25).stage_widths == (16, 32, 64, 128)
    assert ArchConfig(width_multiplier=0.125).stage_widths == (8, 16, 32, 64)
    assert ArchConfig(width_multiplier=0.125).stem_channels == 64


def test_canonical_form_ignores_settings_that_do_not_change_the_network() -> None:
    a = ArchConfig(se=False, se_reduction=4)
    b = ArchConfig(se=False, se_reduction=16)
    assert a != b
    assert a.canonical() == b.canonical()
    assert ArchConfig(stem_padding=7).canonical() == ArchConfig().canonical()
    assert ArchConfig(se=True, se_reduction=4).canonical() != ArchConfig().canonical()


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ArchConfig().se = False  # type: ignore[misc]
