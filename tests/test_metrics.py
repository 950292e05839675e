"""One definition of acc / UF1 / UAR: hand-computed values, and every figure `mer` reports
(per run from the LightningModule, per fold and pooled from the fold report) equal to
scikit-learn's on the same predictions, including a class predicted but absent."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from torch.utils.data import DataLoader, TensorDataset

from mer.metrics import scores
from mer.models.module import MicroExpressionModule
from mer.reporting.folds import fold_means, fold_markdown, fold_table

CLASSES = ("negative", "positive", "surprise")
# A subject whose clips are negative and positive only, one of them predicted surprise:
# UAR 0.75 (recall of negative 1/2, positive 1; surprise has no recall), UF1 (2/3 + 1 + 0) / 3.
ABSENT_TRUTH, ABSENT_PREDICTED = [0, 0, 1, 1], [0, 2, 1, 1]
CASES = [
    (ABSENT_TRUTH, ABSENT_PREDICTED),
    ([0, 0, 0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 1, 0, 2, 2]),
    ([0, 1], [0, 0]),
    ([2, 2, 2], [2, 2, 2]),
    ([1, 1, 0], [2, 2, 2]),
]


def sklearn_scores(truth, predicted):
    return {"acc": accuracy_score(truth, predicted),
            "uf1": f1_score(truth, predicted, labels=np.union1d(truth, predicted), average="macro", zero_division=0),
            "uar": balanced_accuracy_score(truth, predicted)}


def test_scores_match_a_hand_computed_example():
    # truth:     n n n n p p s s
    # predicted: n n p s p n s s
    # negative: TP 2, FP 1, FN 2 -> F1 4/7, recall 1/2
    # positive: TP 1, FP 1, FN 1 -> F1 1/2, recall 1/2
    # surprise: TP 2, FP 1, FN 0 -> F1 4/5, recall 1
    result = scores(*CASES[1])
    assert result["acc"] == pytest.approx(5 / 8)
    assert result["uf1"] == pytest.approx((4 / 7 + 1 / 2 + 4 / 5) / 3)
    assert result["uar"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)


def test_the_absent_class_rule():
    result = scores(ABSENT_TRUTH, ABSENT_PREDICTED)
    assert result["uar"] == pytest.approx(0.75)
    assert result["uf1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert scores([0, 0], [0, 0]) == {"acc": 1.0, "uf1": 1.0, "uar": 1.0}


class PredictsItsInput(torch.nn.Module):
    """Logits that make the predicted class whatever index the 'clip' holds."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x.long(), len(CLASSES)).float()


@pytest.mark.parametrize("truth,predicted", CASES)
def test_per_run_figures_from_the_module_equal_scikit_learn(truth, predicted):
    module = MicroExpressionModule(PredictsItsInput(), optimizer=lambda params: None, class_names=CLASSES)
    loader = DataLoader(TensorDataset(torch.tensor(predicted), torch.tensor(truth)), batch_size=3)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    (results,) = trainer.test(module, loader, verbose=False)
    for name, expected in sklearn_scores(truth, predicted).items():
        assert results[f"test/{name}"] == pytest.approx(expected), name
    assert module.epoch_confusion["test"].sum() == len(truth)


def test_per_fold_and_pooled_figures_equal_scikit_learn():
    def rows(fold, truth, predicted):
        return [{"fold": fold, "label": CLASSES[t], "predicted": CLASSES[p]} for t, p in zip(truth, predicted)]

    all_rows = [row for i, case in enumerate(CASES) for row in rows(f"subject={i}", *case)]
    table, pooled, matrix = fold_table(all_rows, CLASSES)
    for row, case in zip(table, CASES):
        assert {k: row[k] for k in ("acc", "uf1", "uar")} == pytest.approx(sklearn_scores(*case))
    truth = [t for case in CASES for t in case[0]]
    predicted = [p for case in CASES for p in case[1]]
    assert pooled == pytest.approx(sklearn_scores(truth, predicted))
    assert matrix.sum() == len(truth)
    # The fold mean and the fold table use the same per-fold figures as the fold runs.
    means = fold_means([{f"test/{k}": v for k, v in sklearn_scores(*case).items()} for case in CASES])
    assert means["fold_mean/test/uar"] == pytest.approx(np.mean([balanced_accuracy_score(*case) for case in CASES]))
    text = fold_markdown(table, {f"pooled/test/{k}": v for k, v in pooled.items()} | means, "loso", "last_epoch")
    assert f"| subject=0 | 4 | 0.7500 | {(2 / 3 + 1) / 3:.4f} | 0.7500 |" in text


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
    assert np.mean([r["uf1"] for r in table]) == pytest.approx((1 / 3 + 1) / 2)
    assert matrix.sum() == 5 and matrix[1, 0] == 1


def test_the_confusion_matrix_shows_its_whole_title():
    import matplotlib.pyplot as plt

    from mer.reporting.confusion import confusion_figure

    title = ("MicroExpSTCNN lr=0.0001 dropout=0.5 epochs=120 seed=3\nmegc_composite, loso (casme2_sub01), held-out clips\n"
             "acc 0.867, UF1 0.869, UAR 0.867")
    figure = confusion_figure([[3, 1, 0], [0, 4, 1], [0, 0, 5]], ["negative", "positive", "surprise"], title)
    figure.canvas.draw()
    shown = figure.axes[0].title
    box, frame = shown.get_window_extent(), figure.bbox
    assert box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y1 <= frame.y1, "the title is cut by the figure's edge"
    assert shown.get_text().replace("\n", " ").split() == title.replace("\n", " ").split()
    plt.close(figure)
