"""Micro vs macro and the spotting rule's lengths by seconds at 30 and 200 fps, MEGC's typed scores with the overall from
summed counts, and STRS (MEGC 2023) on hand-made intervals, with the reference code's
departures from its written definition pinned down."""

import numpy as np
import pytest

from mer.common.errors import MerError
from mer.spotting.expression_types import MACRO, MICRO, ExpressionTypes
from mer.spotting.intervals import SpottingSettings, spot
from mer.spotting.megc import SpotCounts, spot_counts, typed_spotting
from mer.spotting.strs import analysis_scores, strs
from mer.spotting.windows import Window


@pytest.mark.parametrize("fps, longest_micro", [(30.0, 16), (200.0, 101)])
def test_micro_is_at_most_half_a_second_from_onset_to_offset(fps, longest_micro):
    types = ExpressionTypes()
    # frames onset..offset inclusive: 16 frames at 30 fps span 15 steps, 0.5 s
    assert types.of(100, 100 + longest_micro - 1, fps) == MICRO
    assert types.of(100, 100 + longest_micro, fps) == MACRO
    assert types.of(0, 0, fps) == MICRO


def test_the_same_frame_count_is_micro_at_200_fps_and_macro_at_30():
    assert ExpressionTypes().of(0, 59, 200.0) == MICRO  # 0.295 s
    assert ExpressionTypes().of(0, 59, 30.0) == MACRO  # 1.97 s
    assert ExpressionTypes(micro_max_s=2.0).of(0, 59, 30.0) == MICRO


def test_micro_vs_macro_needs_a_frame_rate():
    with pytest.raises(MerError, match="frame rate"):
        ExpressionTypes().of(0, 10, None)
    with pytest.raises(MerError, match="micro_max_s"):
        ExpressionTypes(micro_max_s=0)


def test_each_type_is_matched_against_its_own_annotations_and_overall_sums_the_counts():
    truth = [((10, 20), MICRO), ((100, 160), MACRO), ((300, 380), MACRO)]
    predicted = [((11, 21), MICRO),  # hits the micro one
                 ((8, 24), MACRO),  # overlaps the micro one at IoU 11/17, but is macro: a false macro
                 ((105, 165), MACRO),  # hits the first macro
                 ((500, 510), MICRO)]  # nothing there
    scored = typed_spotting(predicted, truth)
    counts = scored.counts
    assert counts[MICRO] == SpotCounts(tp=1, fp=1, fn=0)
    assert counts[MACRO] == SpotCounts(tp=1, fp=1, fn=1)
    # matches index the lists as given: predicted 0 hit truth 0, predicted 2 truth 1
    assert [(m.predicted, m.truth) for m in scored.matches[MICRO]] == [(0, 0)]
    assert [(m.predicted, m.truth) for m in scored.matches[MACRO]] == [(2, 1)]
    overall = scored.overall
    assert overall == SpotCounts(tp=2, fp=2, fn=1)
    assert overall.f1 == pytest.approx(4 / 7)  # 2TP / (2TP + FP + FN), not the mean of 2/3 and 1/2
    assert counts[MICRO].f1 == pytest.approx(2 / 3) and counts[MACRO].f1 == pytest.approx(1 / 2)


def test_an_unknown_type_is_refused():
    with pytest.raises(MerError, match="'blink'"):
        typed_spotting([((0, 5), "blink")], [])


def test_strs_is_spotting_f1_times_the_analysis_f1_over_the_hits():
    spotting = SpotCounts(tp=3, fp=1, fn=1)  # F1 6/8
    # anger: truth on hits 1 and 2, predicted on hit 1: P 1, R 1/2
    # happy: truth on hit 3, predicted on hits 2 and 3: P 1/2, R 1
    analysis = analysis_scores([("anger", "anger"), ("anger", "happy"), ("happy", "happy")])
    assert (analysis.precision, analysis.recall) == (pytest.approx(0.75), pytest.approx(0.75))
    assert analysis.f1 == pytest.approx(0.75)
    assert analysis.uf1 == pytest.approx(2 / 3)  # both per-emotion F1s are 2/3
    assert analysis.uar == pytest.approx(0.75) and analysis.hits == 3
    assert strs(spotting, analysis) == pytest.approx(0.75 * 0.75)


def test_the_analysis_set_leaves_out_hits_of_other_emotions_and_scores_absent_ones_zero():
    hits = [("anger", "anger"), ("other", "anger"), ("happy", "happy")]
    analysis = analysis_scores(hits, emotions=["anger", "happy", "sad"])
    # "other" is not analysed; sad has no hit: precision and recall 0
    assert analysis.hits == 2
    assert analysis.precision == pytest.approx(2 / 3) and analysis.recall == pytest.approx(2 / 3)
    assert analysis.uf1 == pytest.approx(2 / 3)


def test_where_the_reference_code_differs_from_the_definition():
    # One spotted interval over two overlapping annotations: the reference code counts two
    # hits; MEGC's one-to-one matching counts one hit and one miss.
    assert spot_counts([(0, 9)], [(0, 9), (1, 9)]) == SpotCounts(tp=1, fp=0, fn=1)
    # Its "UAR" is the mean of the per-emotion precisions, not of the recalls.
    analysis = analysis_scores([("anger", "anger"), ("anger", "happy"), ("happy", "happy"), ("happy", "happy")])
    # anger: P 1, R 1/2; happy: P 2/3, R 1
    assert analysis.uar == pytest.approx(0.75)  # mean recall
    assert analysis.precision == pytest.approx(5 / 6)  # what the reference code reports as UAR
    # Every hit of one emotion and right: scikit-learn's confusion matrix is then 1x1 and the
    # reference code scores the emotion 0; it is perfect.
    assert analysis_scores([("anger", "anger"), ("anger", "anger")]).f1 == 1.0


def windows_with_bursts(bursts: dict[int, int], n: int = 200, stride: int = 5) -> list:
    """`n` windows of 10 frames every `stride` frames, still except `bursts`: first window
    index -> number of consecutive moving windows."""
    moving = {i for first, count in bursts.items() for i in range(first, first + count)}
    return [Window(i * stride, i * stride + 9, face=True, motion=5.0 if i in moving else 0.0,
                   probabilities=np.array([0.2, 0.5, 0.3])) for i in range(n)]


def test_the_rules_length_limits_are_seconds_at_the_recordings_rate():
    # an interval runs from its first window's centre to its last one's, widened by half a
    # stride (2 frames) each side: 9 windows starting at frame 200 -> frames 202..247 (46);
    # a lone window at frame 600 -> 602..607 (6)
    windows = windows_with_bursts({40: 9, 120: 1})
    settings, classes = SpottingSettings(max_length_s=1.0), ["negative", "positive", "surprise"]
    at_200 = spot(windows, classes, settings, 5, 1005, fps=200.0).intervals
    at_30 = spot(windows, classes, settings, 5, 1005, fps=30.0).intervals
    # 200 fps: 46 frames are 0.23 s (kept, micro), 6 frames 0.03 s (under min_length_s 0.05)
    assert [(i.onset, i.offset, i.kind) for i in at_200] == [(202, 247, MICRO)]
    # 30 fps: 46 frames are 1.53 s (over max_length_s 1.0), 6 frames 0.2 s (kept, micro)
    assert [(i.onset, i.offset, i.kind) for i in at_30] == [(602, 607, MICRO)]
    assert all(i.label == "positive" for i in at_200 + at_30)


def test_without_the_rate_scores_come_back_but_no_interval():
    intervals, scores, threshold, _, _ = spot(windows_with_bursts({40: 9}), ["a", "b", "c"], SpottingSettings(), 5, 1005)
    assert intervals == [] and len(scores) == 200 and threshold > 0
