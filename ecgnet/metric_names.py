"""Names of the figures every evaluation reports: one list for training, trials and objectives.

Kept free of heavy imports, so that reading a study definition does not load scikit-learn.
"""

from __future__ import annotations

__all__ = ["HEADLINE_METRICS", "INT8_METRICS", "THESIS_NAMES"]

# Per split (validation, test), in this order in tables; an objective names one as ``val_<name>``.
HEADLINE_METRICS = (
    "micro_auroc",
    "macro_auroc",
    "micro_auprc",
    "macro_auprc",
    "micro_precision_at_threshold",
    "macro_precision_at_threshold",
    "macro_f1",
    "challenge_score",
)
# What an int8 (quantized) model is scored on, beside its fp32 twin; an objective names one as
# ``val_int8_<name>``. Threshold-free: the thresholds were tuned on the fp32 model's outputs.
INT8_METRICS = ("micro_auroc", "macro_auroc", "micro_auprc", "macro_auprc")
# What the thesis's Table 4.1 called the figures it reported (its "precision" is AUPRC).
THESIS_NAMES = {
    "micro_auroc": "Micro AUROC",
    "macro_auroc": "Macro AUROC",
    "micro_auprc": "Micro Precision",
    "macro_auprc": "Macro Precision",
}
