"""Metrics against hand-worked values and scikit-learn; the Challenge score's fixed points."""

from __future__ import annotations

import csv
from importlib.resources import files

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, roc_auc_score

from ecgnet.data.labels import class_set
from ecgnet.metrics import auroc, challenge_score, classification_metrics, tune_thresholds

THESIS = class_set("thesis17")
CHALLENGE = class_set("challenge2021")


def test_auroc_hand_worked_with_ties() -> None:
    # positives score 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4, 0.8>0.1, 0.4=0.4 half, 0.4>0.1)
    assert auroc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)
    assert np.isnan(auroc([0, 0], [0.1, 0.2]))


def test_precision_and_f1_hand_worked() -> None:
    classes = class_set("thesis17")
    labels = np.zeros((4, 17), dtype=bool)
    probabilities = np.zeros((4, 17))
    labels[[0, 1], 0] = True  # SR positives: records 0, 1
    probabilities[[0, 2], 0] = 0.9  # predicted SR: 0 (TP), 2 (FP) -> precision 1/2, recall 1/2
    labels[3, 1] = True  # SB positive: record 3
    probabilities[3, 1] = 0.7  # TP -> precision 1, recall 1
    metrics = classification_metrics(labels, probabilities, classes)
    assert metrics["micro_precision_at_threshold"] == pytest.approx(2 / 3)
    assert metrics["macro_precision_at_threshold"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics["macro_f1"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics["classes_without_positives"] == 15
    assert metrics["per_class"]["SR"] == {
        "code": "426783006", "positives": 2, "auroc": 0.5, "auprc": 0.5, "precision_at_threshold": 0.5,
        "recall": 0.5,
    }  # fmt: skip
    assert metrics["per_class"]["AF"]["auroc"] is None


def test_metrics_agree_with_scikit_learn_on_random_data() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random((300, 17)) < 0.15
    labels[:, 16] = False  # one class without positives is left out of macro averages
    probabilities = np.clip(labels * 0.3 + rng.random((300, 17)) * 0.7, 0, 1)
    metrics = classification_metrics(labels, probabilities, THESIS)
    kept = labels.any(axis=0)
    predicted = probabilities >= 0.5
    assert metrics["micro_auroc"] == pytest.approx(
        roc_auc_score(labels[:, kept], probabilities[:, kept], average="micro")
    )
    assert metrics["macro_auroc"] == pytest.approx(
        roc_auc_score(labels[:, kept], probabilities[:, kept], average="macro")
    )
    assert metrics["micro_precision_at_threshold"] == pytest.approx(precision_score(labels, predicted, average="micro"))
    assert metrics["macro_precision_at_threshold"] == pytest.approx(
        precision_score(labels[:, kept], predicted[:, kept], average="macro", zero_division=0)
    )
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(labels[:, kept], predicted[:, kept], average="macro", zero_division=0)
    )


def test_auprc_is_average_precision_over_classes_with_positives() -> None:
    rng = np.random.default_rng(2)
    labels = rng.random((300, 17)) < 0.2
    labels[:, 3] = False  # no positives: left out of micro and macro, as the base code does
    probabilities = np.clip(labels * 0.25 + rng.random((300, 17)) * 0.75, 0, 1)
    metrics = classification_metrics(labels, probabilities, THESIS)
    kept = labels.any(axis=0)
    assert metrics["micro_auprc"] == pytest.approx(
        average_precision_score(labels[:, kept], probabilities[:, kept], average="micro")
    )
    assert metrics["macro_auprc"] == pytest.approx(
        average_precision_score(labels[:, kept], probabilities[:, kept], average="macro")
    )
    # Pooling every class (scikit-learn's micro on all columns) gives another figure here.
    assert metrics["micro_auprc"] != pytest.approx(average_precision_score(labels, probabilities, average="micro"))
    assert metrics["per_class"]["SB"]["auprc"] == pytest.approx(
        average_precision_score(labels[:, 1], probabilities[:, 1])
    )
    assert metrics["per_class"][THESIS.abbreviations[3]]["auprc"] is None
    # AUPRC is not precision at the threshold: the thesis's "precision" columns are AUPRC.
    assert metrics["micro_auprc"] != pytest.approx(metrics["micro_precision_at_threshold"])


@pytest.mark.parametrize("classes", [THESIS, CHALLENGE], ids=lambda c: c.name)
def test_challenge_score_is_one_for_perfect_and_zero_for_normal_only(classes) -> None:
    rng = np.random.default_rng(1)
    labels = rng.random((200, len(classes))) < 0.1
    assert challenge_score(labels, labels, classes)[0] == pytest.approx(1.0)
    normal_only = np.zeros_like(labels)
    normal_only[:, classes.codes.index("426783006")] = True
    assert challenge_score(labels, normal_only, classes)[0] == pytest.approx(0.0)
    assert challenge_score(labels, np.zeros_like(labels), classes)[0] < 0  # silence is worse


def test_challenge_score_is_official_only_on_the_challenge_classes() -> None:
    labels = np.eye(26, dtype=bool)
    assert classification_metrics(labels, labels * 1.0, CHALLENGE)["challenge_score_kind"] == "official"
    assert classification_metrics(labels[:17, :17], labels[:17, :17] * 1.0, THESIS)["challenge_score_kind"] == (
        "challenge-style"
    )


def weights_csv() -> dict[str, dict[str, float]]:
    """The Challenge's weights.csv as row code -> column header -> reward, read straight from the file."""
    rows = list(csv.reader(files("ecgnet").joinpath("configs", "challenge2021_weights.csv").open()))
    return {row[0]: dict(zip(rows[0][1:], map(float, row[1:]), strict=True)) for row in rows[1:]}


def test_challenge_score_gives_af_predicted_as_afl_the_partial_credit_of_weights_csv() -> None:
    af_code, afl_code, sr_code = "164889003", "164890007", "426783006"
    rewards = weights_csv()[af_code]
    assert rewards[afl_code] == 0.5 and rewards[sr_code] == 0.25  # the figures the hand calculation uses
    labels = np.zeros((1, 26), dtype=bool)
    outputs = np.zeros((1, 26), dtype=bool)
    af, afl, sr = (CHALLENGE.codes.index(code) for code in (af_code, afl_code, sr_code))
    labels[0, af] = outputs[0, afl] = True
    # One record labelled AF, predicted AFL. observed: A[af, afl] = 1/2 -> 0.5 * 0.5;
    # correct: 1 * 1; inactive (sinus rhythm only): A[af, sr] = 1/2 -> 0.25 / 2.
    expected = (0.5 * 0.5 - 0.25 / 2) / (1.0 - 0.25 / 2)
    assert challenge_score(labels, outputs, CHALLENGE)[0] == pytest.approx(expected) == pytest.approx(1 / 7)
    sinus_only = np.zeros_like(outputs)
    sinus_only[0, sr] = True
    assert challenge_score(labels, sinus_only, CHALLENGE)[0] == pytest.approx(0.0)  # the inactive baseline


def test_thresholds_are_tuned_to_the_best_f1() -> None:
    labels = np.array([[1, 0], [1, 0], [0, 0], [0, 0]], dtype=bool)
    probabilities = np.array([[0.3, 0.1], [0.35, 0.2], [0.2, 0.3], [0.1, 0.4]])
    assert tune_thresholds(labels, probabilities, default=0.5) == [0.3, 0.5]
