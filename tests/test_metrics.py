"""UF1 / UAR against hand-computed values, and pooling over folds."""

import pytest

from mer.metrics import scores
from mer.reporting.folds import fold_table

CLASSES = ("negative", "positive", "surprise")


def test_scores_match_a_hand_computed_example():
    # truth:     n n n n p p s s
    # predicted: n n p s p n s s
    truth = [0, 0, 0, 0, 1, 1, 2, 2]
    predicted = [0, 0, 1, 2, 1, 0, 2, 2]
    # negative: TP 2, FP 1, FN 2 -> F1 4/7, recall 1/2
    # positive: TP 1, FP 1, FN 1 -> F1 1/2, recall 1/2
    # surprise: TP 2, FP 1, FN 0 -> F1 4/5, recall 1
    result = scores(truth, predicted, 3)
    assert result["acc"] == pytest.approx(5 / 8)
    assert result["uf1"] == pytest.approx((4 / 7 + 1 / 2 + 4 / 5) / 3)
    assert result["uar"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)


def test_absent_classes_are_left_out_and_never_predicted_ones_count_zero():
    assert scores([0, 0], [0, 0], 3) == {"acc": 1.0, "uf1": 1.0, "uar": 1.0}
    result = scores([0, 1], [0, 0], 3)
    assert result["uar"] == pytest.approx(0.5) and result["uf1"] == pytest.approx((2 / 3 + 0) / 2)


def test_pooled_metrics_differ_from_the_mean_of_folds():
    def row(fold, label, predicted):
        return {"fold": fold, "label": label, "predicted": predicted}

    rows = [row("a", "negative", "negative"), row("a", "positive", "negative"),
            row("b", "surprise", "surprise"), row("b", "surprise", "surprise"), row("b", "positive", "positive")]
    table, pooled, matrix = fold_table(rows, CLASSES)
    assert [r["n"] for r in table] == [2, 3]
    # pooled: negative TP1 FP1 FN0 -> 2/3; positive TP1 FP0 FN1 -> 2/3; surprise TP2 -> 1
    assert pooled["uf1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert pooled["uar"] == pytest.approx((1 + 1 / 2 + 1) / 3)
    assert pooled["acc"] == pytest.approx(4 / 5)
    # fold a: negative 2/3, positive 0 -> uf1 1/3; fold b: 1 -> mean 2/3
    assert pooled["fold_mean_uf1"] == pytest.approx((1 / 3 + 1) / 2)
    assert matrix.sum() == 5 and matrix[1, 0] == 1
