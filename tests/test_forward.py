"""Forward passes at the lengths real records have, and one training step for E1-E18."""

from __future__ import annotations

import pytest
import torch

from ecgnet.arch import ArchConfig
from ecgnet.model import ECGResNet
from ecgnet.thesis import thesis_experiments


@pytest.mark.parametrize("samples", [2048, 4096, 7500])
@pytest.mark.parametrize("name", ["E1", "E11", "E12", "E18"])
def test_forward_accepts_record_lengths(name: str, samples: int) -> None:
    torch.manual_seed(0)
    model = ECGResNet(thesis_experiments()[name].config).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 12, samples), torch.rand(2, 3))
    assert logits.shape == (2, 17)
    assert torch.isfinite(logits).all()


def test_batch_of_one_runs_in_eval_mode_and_trains_on_batch_statistics_in_train_mode() -> None:
    torch.manual_seed(0)
    model = ECGResNet(ArchConfig(width_multiplier=0.25))
    signal, metadata = torch.randn(1, 12, 4096), torch.rand(1, 3)
    with torch.no_grad():
        evaluated = model.eval()(signal, metadata)
    assert evaluated.shape == (1, 17) and torch.isfinite(evaluated).all()

    # BatchNorm1d normalises over batch and time, so one long record is enough statistics.
    model.train()
    running_mean = model.bn1.running_mean.clone()
    trained = model(signal, metadata)
    assert trained.shape == (1, 17) and torch.isfinite(trained).all()
    assert not torch.allclose(trained, evaluated)  # batch statistics, not the running ones
    assert not torch.equal(model.bn1.running_mean, running_mean)
    trained.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_batch_of_one_too_short_for_train_mode_batchnorm_is_an_error_but_evaluates() -> None:
    model = ECGResNet(ArchConfig(width_multiplier=0.25))
    signal, metadata = torch.randn(1, 12, 32), torch.rand(1, 3)
    # 32 samples shrink to one time step by the last stage: one value per channel to normalise.
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        model.train()(signal, metadata)
    with torch.no_grad():
        assert model.eval()(signal, metadata).shape == (1, 17)  # running statistics need no batch


def test_metadata_is_required_only_when_the_branch_exists() -> None:
    with pytest.raises(ValueError, match="metadata branch"):
        ECGResNet(ArchConfig()).eval()(torch.randn(1, 12, 1024))
    no_branch = ECGResNet(ArchConfig(metadata_features=0)).eval()
    assert no_branch(torch.randn(1, 12, 1024)).shape == (1, 17)


def test_metadata_changes_the_output() -> None:
    torch.manual_seed(0)
    model = ECGResNet(ArchConfig(width_multiplier=0.25)).eval()
    signal = torch.randn(1, 12, 2048)
    with torch.no_grad():
        a = model(signal, torch.tensor([[0.5, 1.0, 0.0]]))
        b = model(signal, torch.tensor([[0.8, 0.0, 1.0]]))
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", list(thesis_experiments()))
def test_each_thesis_config_trains_one_step_on_cpu(name: str) -> None:
    torch.manual_seed(0)
    model = ECGResNet(thesis_experiments()[name].config)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003, weight_decay=1e-5)
    signal, metadata = torch.randn(2, 12, 4096), torch.rand(2, 3)
    targets = torch.randint(0, 2, (2, 17)).float()
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(signal, metadata), targets)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("name", [f"E{i}" for i in range(1, 19)])
def test_records_padded_into_one_batch_score_as_each_record_alone(name: str) -> None:
    from ecgnet.data.dataset import minmax_scale

    torch.manual_seed(0)
    model = ECGResNet(thesis_experiments()[name].config).eval()
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)):
        # Trained statistics, not the initial ones: a shift makes padding visible if it leaks.
        norm.running_mean.uniform_(-0.5, 0.5), norm.running_var.uniform_(0.5, 2), norm.bias.data.uniform_(-0.5, 0.5)
    lengths = [1000, 1337, 999, 1501]  # odd and even lengths meet every stride differently
    records = [torch.randn(12, n) * 3 + 1 for n in lengths]
    metadata = torch.rand(len(lengths), 3)
    padded = torch.zeros(len(lengths), 12, max(lengths))
    for row, record in enumerate(records):
        padded[row, :, : record.shape[1]] = record
    with torch.no_grad():
        alone = torch.cat([model(minmax_scale(r[None]), metadata[i : i + 1]) for i, r in enumerate(records)])
        together = model(minmax_scale(padded, torch.tensor(lengths)), metadata, torch.tensor(lengths))
        unmasked = model(minmax_scale(padded), metadata)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(unmasked, alone, rtol=1e-3, atol=1e-3)  # without lengths, padding would count
