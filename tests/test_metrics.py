"""One definition of acc / UF1 / UAR: every figure `mer` reports (from `scores`, per run
from the LightningModule, per fold and pooled from the fold report) equal to figures
worked out by hand from the counts, including a class predicted but absent."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from mer.common.metrics import scores
from mer.models.module import MicroExpressionModule
from mer.reporting.folds import fold_means, fold_markdown, fold_table

CLASSES = ("negative", "positive", "surprise")
# By hand: F1 = 2TP / (2TP + FP + FN) for each class present or predicted, recall TP / (TP + FN)
# for each class present in the truth; UF1 and UAR are their plain means.
CASES = [
    # A subject whose clips are negative and positive only, one of them predicted surprise.
    # negative TP 1, FN 1 -> F1 2/3, recall 1/2; positive TP 2 -> 1, 1; surprise FP 1 -> F1 0, no recall
    ([0, 0, 1, 1], [0, 2, 1, 1], {"acc": 3 / 4, "uf1": (2 / 3 + 1 + 0) / 3, "uar": (1 / 2 + 1) / 2}),
    # truth:     n n n n p p s s
    # predicted: n n p s p n s s
    # negative TP 2, FP 1, FN 2 -> 4/7, 1/2; positive TP 1, FP 1, FN 1 -> 1/2, 1/2; surprise TP 2, FP 1 -> 4/5, 1
    ([0, 0, 0, 0, 1, 1, 2, 2], [0, 0, 1, 2, 1, 0, 2, 2],
     {"acc": 5 / 8, "uf1": (4 / 7 + 1 / 2 + 4 / 5) / 3, "uar": (1 / 2 + 1 / 2 + 1) / 3}),
    # negative TP 1, FP 1 -> 2/3, recall 1; positive FN 1 -> 0, 0
    ([0, 1], [0, 0], {"acc": 1 / 2, "uf1": (2 / 3 + 0) / 2, "uar": (1 + 0) / 2}),
    # one class, all right: neither of the others has an F1 or a recall
    ([2, 2, 2], [2, 2, 2], {"acc": 1.0, "uf1": 1.0, "uar": 1.0}),
    # all wrong: every F1 and recall is 0
    ([1, 1, 0], [2, 2, 2], {"acc": 0.0, "uf1": 0.0, "uar": 0.0}),
]
# The five pooled, 12 of 20 right: negative TP 4, FP 2, FN 4 -> 4/7, 1/2;
# positive TP 3, FP 1, FN 4 -> 6/11, 3/7; surprise TP 5, FP 5, FN 0 -> 2/3, 1.
POOLED = {"acc": 12 / 20, "uf1": (4 / 7 + 6 / 11 + 2 / 3) / 3, "uar": (1 / 2 + 3 / 7 + 1) / 3}


@pytest.mark.parametrize("truth,predicted,expected", CASES)
def test_scores_equal_the_figures_worked_out_by_hand(truth, predicted, expected):
    assert scores(truth, predicted) == pytest.approx(expected)


class PredictsItsInput(torch.nn.Module):
    """Logits that make the predicted class whatever index the 'clip' holds."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x.long(), len(CLASSES)).float()


@pytest.mark.parametrize("truth,predicted,expected", CASES)
def test_per_run_figures_from_the_module_are_the_hand_computed_ones(truth, predicted, expected):
    module = MicroExpressionModule(PredictsItsInput(), optimizer=lambda params: None, class_names=CLASSES)
    loader = DataLoader(TensorDataset(torch.tensor(predicted), torch.tensor(truth)), batch_size=3)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    (results,) = trainer.test(module, loader, verbose=False)
    for name, value in expected.items():
        assert results[f"test/{name}"] == pytest.approx(value), name
    assert module.epoch_confusion["test"].sum() == len(truth)


def test_per_fold_and_pooled_figures_are_the_hand_computed_ones():
    def rows(fold, truth, predicted):
        return [{"fold": fold, "clip_id": f"{fold}/{i}", "label": CLASSES[t], "predicted": CLASSES[p]}
                for i, (t, p) in enumerate(zip(truth, predicted))]

    all_rows = [row for i, (truth, predicted, _) in enumerate(CASES) for row in rows(f"subject={i}", truth, predicted)]
    table, pooled, matrix = fold_table(all_rows, CLASSES)
    for row, (_, _, expected) in zip(table, CASES):
        assert {k: row[k] for k in ("acc", "uf1", "uar")} == pytest.approx(expected)
    assert pooled == pytest.approx(POOLED)
    assert matrix.sum() == 20
    # The fold mean and the fold table use the same per-fold figures as the fold runs.
    means = fold_means([{f"test/{k}": v for k, v in expected.items()} for _, _, expected in CASES])
    assert means["fold_mean/test/uar"] == pytest.approx((3 / 4 + 2 / 3 + 1 / 2 + 1 + 0) / 5)
    text = fold_markdown(table, {f"pooled/test/{k}": v for k, v in pooled.items()} | means, "loso", "last_epoch")
    assert f"| subject=0 | 4 | 0.7500 | {(2 / 3 + 1) / 3:.4f} | 0.7500 |" in text


def test_pooled_metrics_differ_from_the_mean_of_folds():
    def row(clip_id, fold, label, predicted):
        return {"fold": fold, "clip_id": clip_id, "label": label, "predicted": predicted}

    rows = [row("a1", "a", "negative", "negative"), row("a2", "a", "positive", "negative"),
            row("b1", "b", "surprise", "surprise"), row("b2", "b", "surprise", "surprise"),
            row("b3", "b", "positive", "positive")]
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
