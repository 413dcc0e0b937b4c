"""Classification metrics of the thesis (Table 4.1) and the PhysioNet/CinC Challenge 2021 score.

Classes with no positive example cannot have an AUROC or a recall: they are left out of every
macro average and counted in ``classes_without_positives``. Micro averages pool all
(record, class) pairs, as scikit-learn's ``average="micro"`` does.

    >>> m = classification_metrics(labels, probabilities, class_set("thesis17"))
    >>> m["micro_auroc"], m["macro_auroc"], m["challenge_score"]
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.stats import rankdata

from ecgnet.data.labels import ClassSet, challenge_weight_classes

__all__ = ["auroc", "challenge_score", "classification_metrics", "tune_thresholds"]

SINUS_RHYTHM = "426783006"  # the Challenge's "inactive" (normal) class


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of one binary problem (Mann-Whitney U; ties count one half)."""
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _precision_recall_f1(labels: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, ...]:
    tp = (labels & predicted).sum(axis=0).astype(np.float64)
    predicted_positive = predicted.sum(axis=0)
    actual_positive = labels.sum(axis=0)
    # No predicted positive: precision 0, as scikit-learn's zero_division default gives.
    precision = np.divide(tp, predicted_positive, out=np.zeros_like(tp), where=predicted_positive > 0)
    recall = np.divide(tp, actual_positive, out=np.full_like(tp, np.nan), where=actual_positive > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(tp), where=denominator > 0)
    f1[actual_positive == 0] = np.nan
    return precision, recall, f1


def classification_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: ClassSet,
    thresholds: np.ndarray | float = 0.5,
) -> dict[str, object]:
    """Micro/macro AUROC and precision, macro F1, per-class figures and the Challenge score."""
    labels = np.asarray(labels, dtype=bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities >= np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probabilities.shape[1:])
    has_positives = labels.any(axis=0)
    per_class_auroc = np.array([auroc(labels[:, k], probabilities[:, k]) for k in range(labels.shape[1])])
    precision, recall, f1 = _precision_recall_f1(labels, predicted)
    micro_tp = (labels & predicted).sum()
    score, official = challenge_score(labels, predicted, classes)
    return {
        "micro_auroc": auroc(labels[:, has_positives], probabilities[:, has_positives]),
        "macro_auroc": float(np.nanmean(per_class_auroc[has_positives])) if has_positives.any() else float("nan"),
        "micro_precision": float(micro_tp / predicted.sum()) if predicted.any() else 0.0,
        "macro_precision": float(precision[has_positives].mean()) if has_positives.any() else float("nan"),
        "macro_f1": float(f1[has_positives].mean()) if has_positives.any() else float("nan"),
        "challenge_score": score,
        "challenge_score_kind": "official" if official else "challenge-style",
        "classes_without_positives": int((~has_positives).sum()),
        "records": int(labels.shape[0]),
        "per_class": {
            abbreviation: {
                "code": code,
                "positives": int(labels[:, k].sum()),
                "auroc": _none_if_nan(per_class_auroc[k]),
                "precision": float(precision[k]),
                "recall": _none_if_nan(recall[k]),
            }
            for k, (code, abbreviation) in enumerate(zip(classes.codes, classes.abbreviations, strict=True))
        },
    }


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


@functools.cache
def _challenge_weights() -> np.ndarray:
    from importlib import resources

    text = resources.files("ecgnet").joinpath("configs", "challenge2021_weights.csv").read_text()
    rows = [line.split(",") for line in text.strip().splitlines()[1:]]
    return np.array([[float(v) for v in row[1:]] for row in rows])


def _weight_submatrix(classes: ClassSet) -> tuple[np.ndarray, bool]:
    """Rows/columns of the Challenge weights for ``classes``; True when they are the 26 classes."""
    groups = challenge_weight_classes()
    position = {code: i for i, group in enumerate(groups) for code in group}
    missing = [c for c in classes.codes if c not in position]
    if missing:
        raise ValueError(f"class set {classes.name!r} has codes outside the Challenge table: {missing}")
    index = [position[c] for c in classes.codes]
    official = sorted(index) == list(range(len(groups)))
    return _challenge_weights()[np.ix_(index, index)], official


def _modified_confusion(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    # Each record spreads one unit over the (label, output) pairs of the classes it involves.
    normalization = np.maximum((labels | outputs).sum(axis=1), 1).astype(np.float64)
    return (labels / normalization[:, None]).T @ outputs.astype(np.float64)


def challenge_score(labels: np.ndarray, outputs: np.ndarray, classes: ClassSet) -> tuple[float, bool]:
    """The Challenge 2021 metric, normalised so that perfect = 1 and "sinus rhythm only" = 0.

    Returns (score, official): official only on the Challenge's own 26 classes; on another
    class set the matching part of the weights table gives a "challenge-style" score.
    """
    labels = np.asarray(labels, dtype=bool)
    outputs = np.asarray(outputs, dtype=bool)
    weights, official = _weight_submatrix(classes)
    if SINUS_RHYTHM not in classes.codes:
        raise ValueError(f"class set {classes.name!r} lacks sinus rhythm, the Challenge's inactive class")
    inactive = np.zeros_like(outputs)
    inactive[:, classes.codes.index(SINUS_RHYTHM)] = True
    observed = float(np.sum(weights * _modified_confusion(labels, outputs)))
    correct = float(np.sum(weights * _modified_confusion(labels, labels)))
    baseline = float(np.sum(weights * _modified_confusion(labels, inactive)))
    score = (observed - baseline) / (correct - baseline) if correct != baseline else 0.0
    return score, official


def tune_thresholds(labels: np.ndarray, probabilities: np.ndarray, *, default: float = 0.5) -> list[float]:
    """Per-class decision thresholds that maximise F1 (on validation data, never on test).

    A class without positives keeps ``default``.
    """
    labels = np.asarray(labels, dtype=bool)
    thresholds = []
    for k in range(labels.shape[1]):
        if not labels[:, k].any():
            thresholds.append(float(default))
            continue
        candidates = np.unique(probabilities[:, k])
        predicted = probabilities[:, k][None, :] >= candidates[:, None]
        tp = (predicted & labels[:, k]).sum(axis=1)
        f1 = 2 * tp / (predicted.sum(axis=1) + labels[:, k].sum())
        thresholds.append(float(candidates[int(np.argmax(f1))]))
    return thresholds
