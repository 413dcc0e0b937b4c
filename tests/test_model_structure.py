"""Every knob of ArchConfig changes the network's modules as the thesis describes."""

from __future__ import annotations

import torch
from torch import nn

from ecgnet.arch import ArchConfig
from ecgnet.model import BasicBlock, DepthwiseSeparableConv1d, ECGResNet, SELayer
from ecgnet.size import meta_model


def blocks_of(model: ECGResNet) -> list[BasicBlock]:
    return [m for m in model.modules() if isinstance(m, BasicBlock)]


def test_baseline_matches_the_reference_layout() -> None:
    model = meta_model(ArchConfig())
    stem = model.conv1
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding) == (
        12,
        64,
        (15,),
        (2,),
        (7,),
    )
    assert stem.bias is None
    assert isinstance(model.bn1, nn.BatchNorm1d)
    assert (model.maxpool.kernel_size, model.maxpool.stride, model.maxpool.padding) == (3, 2, 1)
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3, model.layer4)] == [2, 2, 2, 2]
    first = [s[0] for s in (model.layer1, model.layer2, model.layer3, model.layer4)]
    assert [b.conv1.out_channels for b in first] == [64, 128, 256, 512]
    assert [b.conv1.stride[0] for b in first] == [1, 2, 2, 2]
    block = model.layer2[0]
    assert block.conv1.kernel_size == (7,) and block.conv1.padding == (3,) and block.conv1.bias is None
    assert isinstance(block.bn1, nn.BatchNorm1d) and isinstance(block.bn2, nn.BatchNorm1d)
    assert block.dropout.p == 0.2
    assert isinstance(block.se, SELayer)
    assert block.se.fc[0].in_features == 128 and block.se.fc[0].out_features == 8
    # The identity path changes shape only at the first block of stages 2-4.
    assert isinstance(model.layer1[0].downsample, nn.Identity)
    assert isinstance(block.downsample, nn.Sequential) and block.downsample[0].kernel_size == (1,)
    assert model.fc1.in_features == 3 and model.fc1.out_features == 10
    assert model.fc.in_features == 522 and model.fc.out_features == 17


def test_blocks_per_stage() -> None:
    model = meta_model(ArchConfig(blocks=(1, 3, 4, 2)))
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3, model.layer4)] == [1, 3, 4, 2]


def test_width_multiplier_shrinks_stages_and_keeps_the_stem() -> None:
    model = meta_model(ArchConfig(width_multiplier=0.25))
    assert model.conv1.out_channels == 64
    assert [s[-1].conv1.out_channels for s in (model.layer1, model.layer2, model.layer3, model.layer4)] == [
        16,
        32,
        64,
        128,
    ]
    # 64 stem channels into 16-wide stage 1 needs a projection even at stride 1 (E17).
    assert isinstance(model.layer1[0].downsample, nn.Sequential)
    assert model.layer1[0].downsample[0].in_channels == 64
    assert model.fc.in_features == 128 + 10


def test_narrow_stage_still_gets_a_real_se_gate() -> None:
    model = meta_model(ArchConfig(width_multiplier=0.125))
    gate = model.layer1[0].se
    assert gate.fc[0].in_features == 8 and gate.fc[0].out_features == 1


def test_se_reduction_sets_the_bottleneck() -> None:
    model = meta_model(ArchConfig(se_reduction=4))
    assert model.layer4[0].se.fc[0].out_features == 128


def test_depthwise_separable_blocks_follow_listing_2() -> None:
    model = meta_model(ArchConfig(conv_type="depthwise_separable"))
    block = model.layer2[0]
    for conv, in_ch, stride in ((block.conv1, 64, 2), (block.conv2, 128, 1)):
        assert isinstance(conv, DepthwiseSeparableConv1d)
        dw, pw = conv.depthwise, conv.pointwise
        assert (dw.in_channels, dw.out_channels, dw.groups) == (in_ch, in_ch, in_ch)
        assert dw.kernel_size == (7,) and dw.padding == (3,) and dw.stride == (stride,)
        assert (pw.in_channels, pw.out_channels, pw.kernel_size) == (in_ch, 128, (1,))
        assert list(conv) == [dw, pw]  # no norm between
    assert isinstance(model.conv1, nn.Conv1d) and model.conv1.groups == 1  # the stem stays standard


def test_se_bn_and_conv2_switches_remove_exactly_their_layer() -> None:
    base = blocks_of(meta_model(ArchConfig()))[0]
    for field, attr in (("se", "se"), ("bn1", "bn1"), ("bn2", "bn2"), ("conv2", "conv2")):
        block = blocks_of(meta_model(ArchConfig(**{field: False})))[0]
        assert isinstance(block.get_submodule(attr), nn.Identity), field
        assert not isinstance(base.get_submodule(attr), nn.Identity), field
        others = {"se", "bn1", "bn2", "conv2"} - {attr}
        assert all(not isinstance(block.get_submodule(o), nn.Identity) for o in others), field


def test_bn2_stays_without_conv2_as_in_e5() -> None:
    block = blocks_of(meta_model(ArchConfig(conv2=False)))[3]
    assert isinstance(block.conv2, nn.Identity)
    assert isinstance(block.bn2, nn.BatchNorm1d) and block.bn2.num_features == block.conv1.out_channels


def test_bn1_switch_keeps_the_stem_norm() -> None:
    model = meta_model(ArchConfig(bn1=False))
    assert isinstance(model.bn1, nn.BatchNorm1d)


def test_kernels_and_stem_padding() -> None:
    model = meta_model(ArchConfig(block_kernel=5, stem_kernel=7))
    assert model.conv1.kernel_size == (7,) and model.conv1.padding == (3,)
    assert all(b.conv1.kernel_size == (5,) and b.conv1.padding == (2,) for b in blocks_of(model))
    listing1 = meta_model(ArchConfig(stem_kernel=7, stem_padding=7))
    assert listing1.conv1.padding == (7,)
    stem_out = listing1.conv1(torch.zeros(1, 12, 4096, device="meta"))
    assert stem_out.shape[-1] == 2052


def test_metadata_branch_width_and_removal() -> None:
    five = meta_model(ArchConfig(metadata_features=5))
    assert five.fc1.out_features == 5 and five.fc.in_features == 517
    none = meta_model(ArchConfig(metadata_features=0))
    assert none.fc1 is None and not none.uses_metadata and none.fc.in_features == 512


def test_dropout_classes_and_leads() -> None:
    model = meta_model(ArchConfig(dropout=0.0, num_classes=26, in_leads=2))
    assert all(b.dropout.p == 0.0 for b in blocks_of(model))
    assert model.conv1.in_channels == 2 and model.fc.out_features == 26


def test_init_is_kaiming_for_convs_and_unit_for_norms() -> None:
    torch.manual_seed(0)
    model = ECGResNet(ArchConfig())
    conv = model.layer4[1].conv2
    fan_out = conv.out_channels * conv.kernel_size[0]
    assert abs(conv.weight.std().item() - (2.0 / fan_out) ** 0.5) < 0.05 * (2.0 / fan_out) ** 0.5
    assert torch.equal(model.layer1[0].bn1.weight, torch.ones(64))
    assert torch.equal(model.layer1[0].bn1.bias, torch.zeros(64))
