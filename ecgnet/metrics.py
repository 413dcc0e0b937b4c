"""Classification metrics of the thesis (Table 4.1) and the PhysioNet/CinC Challenge 2021 score.

The thesis took its figures from its base code (UTU dl-ecg-classifier), which computes
scikit-learn's ``roc_auc_score`` and ``average_precision_score`` and logs the latter as
"precision": the thesis's micro/macro precision columns are areas under the precision-recall
curve (``micro_auprc``, ``macro_auprc`` here), not precision at a threshold. Precision at the
decision threshold is kept apart as ``micro_precision_at_threshold`` and
``macro_precision_at_threshold``.

As in the base code, classes with no positive example are left out before any area is
computed (their AUROC and AUPRC are undefined): micro areas pool the (record, class) pairs of
the classes that have positives, macro areas average over those classes. Scikit-learn's own
``average="micro"`` would pool every class; the two agree when every class has a positive.
Left-out classes are counted in ``classes_without_positives``.

    >>> m = classification_metrics(labels, probabilities, class_set("thesis17"))
    >>> m["micro_auroc"], m["macro_auprc"], m["challenge_score"]
"""

from __future__ import annotations

import functools

import numpy as np
from sklearn.metrics import average_precision_score, multilabel_confusion_matrix, roc_auc_score

from ecgnet.data.labels import ClassSet, challenge_weight_classes
from ecgnet.metric_names import HEADLINE_METRICS

__all__ = ["HEADLINE_METRICS", "auroc", "challenge_score", "classification_metrics", "tune_thresholds"]

SINUS_RHYTHM = "426783006"  # the Challenge's "inactive" (normal) class


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of one binary problem (ties count one half); NaN when one class is absent."""
    labels = np.asarray(labels, dtype=bool).ravel()
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64).ravel()))


def _per_column(function, labels: np.ndarray, scores: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``function`` (a scikit-learn area) of each of ``columns``, in one call; NaN for the others."""
    values = np.full(labels.shape[1], np.nan)
    if columns.sum() == 1:  # one column: scikit-learn reads a 2-D single column as one binary problem
        values[columns] = function(labels[:, columns].ravel(), scores[:, columns].ravel())
    elif columns.any():
        values[columns] = function(labels[:, columns], scores[:, columns], average=None)
    return values


def classification_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: ClassSet,
    thresholds: np.ndarray | float = 0.5,
) -> dict[str, object]:
    """The ``HEADLINE_METRICS``, per-class figures and the Challenge score's kind."""
    labels = np.asarray(labels, dtype=bool)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities >= np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probabilities.shape[1:])
    kept = labels.any(axis=0)
    two_classes = kept & ~labels.all(axis=0)  # an AUROC needs negatives too
    nan = float("nan")
    per_class_auroc = _per_column(roc_auc_score, labels, probabilities, two_classes)
    per_class_auprc = _per_column(average_precision_score, labels, probabilities, kept)
    # One confusion matrix per class gives scikit-learn's precision, recall and F1 (zero_division=0
    # for precision and F1) without its input checks three times over.
    confusion = multilabel_confusion_matrix(labels, predicted)
    tp, fp, fn = confusion[:, 1, 1], confusion[:, 0, 1], confusion[:, 1, 0]
    precision = _ratio(tp, tp + fp, 0.0)
    recall = _ratio(tp, tp + fn, nan)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn, 0.0)
    score, official = challenge_score(labels, predicted, classes)
    pooled = labels[:, kept]
    return {
        "micro_auroc": _micro(roc_auc_score, pooled, probabilities[:, kept]) if _both(pooled) else nan,
        "macro_auroc": _nanmean(per_class_auroc[kept]),
        "micro_auprc": _micro(average_precision_score, pooled, probabilities[:, kept]) if kept.any() else nan,
        "macro_auprc": _nanmean(per_class_auprc[kept]),
        "micro_precision_at_threshold": float(_ratio(tp.sum(), (tp + fp).sum(), 0.0)),
        "macro_precision_at_threshold": float(precision[kept].mean()) if kept.any() else nan,
        "macro_f1": float(f1[kept].mean()) if kept.any() else nan,
        "challenge_score": score,
        "challenge_score_kind": "official" if official else "challenge-style",
        "classes_without_positives": int((~kept).sum()),
        "records": int(labels.shape[0]),
        "per_class": {
            abbreviation: {
                "code": code,
                "positives": int(labels[:, k].sum()),
                "auroc": _none_if_nan(per_class_auroc[k]),
                "auprc": _none_if_nan(per_class_auprc[k]),
                "precision_at_threshold": float(precision[k]),
                "recall": _none_if_nan(recall[k]),
            }
            for k, (code, abbreviation) in enumerate(zip(classes.codes, classes.abbreviations, strict=True))
        },
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty: float) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.full_like(numerator, empty), where=denominator > 0)


def _both(labels: np.ndarray) -> bool:
    return bool(labels.any() and not labels.all())


def _micro(function, labels: np.ndarray, scores: np.ndarray) -> float:
    return float(function(labels.ravel(), scores.ravel()))


def _nanmean(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


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
