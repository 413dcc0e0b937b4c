"""Size and thesis figures of named architectures, as rows for tables and JSON."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from ecgnet.thesis import ThesisExperiment, thesis_experiment, thesis_experiments

__all__ = ["arch_config_table", "arch_row", "arch_rows", "arch_table"]

# The thesis's "Micro/Macro Precision" columns are AUPRC (see ecgnet.thesis.ThesisReference).
THESIS_METRICS = ("micro_auroc", "macro_auroc", "micro_auprc", "macro_auprc")


def arch_row(experiment: ThesisExperiment) -> dict[str, Any]:
    """Measured size figures of one named architecture beside the thesis's Table 4.1."""
    from ecgnet.size import describe_size  # here: it builds the network (torch), which reading a study never needs

    size = describe_size(experiment.config, macs=True)
    ref = experiment.reference
    return {
        "name": experiment.name,
        "description": experiment.description,
        "params": size.params,
        "size_mb": round(size.size_mb, 4),
        "state_dict_bytes": size.state_dict_bytes,
        "macs": size.macs,
        "thesis": {
            "size_mb": ref.model_size_mb,
            **{metric: getattr(ref, metric) for metric in THESIS_METRICS},
        },
        "arch": experiment.config.to_dict(),
    }


def arch_rows(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows for the given names (case-insensitive), or for E1-E18 when ``names`` is None."""
    if names is None:
        experiments = list(thesis_experiments().values())
    else:
        experiments = [thesis_experiment(n) for n in names]
    return [arch_row(e) for e in experiments]


def arch_table(rows: list[dict[str, Any]]) -> Table:
    """Sizes measured here beside Table 4.1; fits an 80-column terminal."""
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title="Named architectures: size measured here, metrics as the thesis reported them",
        caption="MB = torch.save(state_dict) bytes / 2**20; MACs for one 12 x 4096 input; µ/M = micro/macro; "
        "ROC/PRC = area under the ROC/precision-recall curve (AUROC/AUPRC, thesis Table 4.1; its "
        '"precision" is AUPRC)',
    )
    table.add_column("exp", no_wrap=True)
    for header in ("params", "MB", "paper MB", "GMACs", "µROC", "MROC", "µPRC", "MPRC"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        thesis = row["thesis"]
        table.add_row(
            row["name"],
            f"{row['params']:,}",
            f"{row['size_mb']:.3f}",
            f"{thesis['size_mb']:.2f}",
            f"{row['macs'] / 1e9:.3f}",
            *(f"{thesis[k]:.2f}" for k in THESIS_METRICS),
        )
    return table


def arch_config_table(arch: dict[str, Any]) -> Table:
    """The architecture fields of one config, one per line."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_header=True)
    table.add_column("field", no_wrap=True)
    table.add_column("value")
    for key, value in arch.items():
        table.add_row(key, str(value))
    return table
