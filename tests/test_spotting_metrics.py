"""MEGC spotting metrics: IoU of inclusive frame ranges, one-to-one greedy matching at
IoU >= 0.5, counts pooled over the database before the ratios, and the random baseline."""

import numpy as np
import pytest

from mer.common.errors import MerError
from mer.spotting.expression_types import MACRO, MICRO
from mer.spotting.megc import (
    BaselineScores,
    Match,
    SpotCounts,
    iou,
    match_intervals,
    random_baseline,
    random_intervals,
    spot_counts,
)


def test_identical_intervals_are_a_hit():
    assert iou((3, 12), (3, 12)) == 1.0
    assert match_intervals([(3, 12)], [(3, 12)]) == [Match(predicted=0, truth=0, iou=1.0)]
    assert spot_counts([(3, 12)], [(3, 12)]) == SpotCounts(tp=1, fp=0, fn=0)


def test_iou_exactly_half_is_a_hit_and_just_below_is_not():
    # 10 shared frames of 20, then of 21.
    assert iou((0, 19), (0, 9)) == 0.5
    assert spot_counts([(0, 19)], [(0, 9)]) == SpotCounts(tp=1, fp=0, fn=0)
    assert iou((0, 20), (0, 9)) == pytest.approx(10 / 21)
    assert spot_counts([(0, 20)], [(0, 9)]) == SpotCounts(tp=0, fp=1, fn=1)


def test_touching_intervals_share_no_frame_and_one_shared_frame_counts():
    assert iou((0, 9), (10, 19)) == 0.0
    assert iou((0, 9), (9, 18)) == pytest.approx(1 / 19)
    assert iou((5, 5), (5, 5)) == 1.0  # a single frame is an interval of length 1


def test_one_prediction_over_two_truths_hits_neither():
    # (0, 20) over (0, 9) and (11, 20): IoU 10/21 with each, so no hit at all.
    assert spot_counts([(0, 20)], [(0, 9), (11, 20)]) == SpotCounts(tp=0, fp=1, fn=2)
    # (0, 19) over (0, 9) and (10, 19): IoU exactly 0.5 with each, yet it counts once.
    assert spot_counts([(0, 19)], [(0, 9), (10, 19)]) == SpotCounts(tp=1, fp=0, fn=1)


def test_two_predictions_on_one_truth_are_one_hit_and_one_false_positive():
    counts = spot_counts([(0, 9), (1, 10)], [(0, 9)])
    assert counts == SpotCounts(tp=1, fp=1, fn=0)
    assert counts.precision == 0.5 and counts.recall == 1.0 and counts.f1 == pytest.approx(2 / 3)


def test_empty_predictions_or_truths_score_zero():
    for counts, expected in [
        (spot_counts([], [(0, 9)]), SpotCounts(tp=0, fp=0, fn=1)),
        (spot_counts([(0, 9)], []), SpotCounts(tp=0, fp=1, fn=0)),
        (spot_counts([], []), SpotCounts()),
    ]:
        assert counts == expected
        assert (counts.precision, counts.recall, counts.f1) == (0.0, 0.0, 0.0)


def test_counts_are_pooled_over_videos_before_the_ratios():
    perfect = spot_counts([(0, 9)], [(0, 9)])  # F1 1
    noisy = spot_counts([(100, 109), (200, 209), (300, 309)], [(0, 9)])  # F1 0
    pooled = perfect + noisy
    assert pooled == SpotCounts(tp=1, fp=3, fn=1)
    assert pooled.precision == 0.25
    assert pooled.recall == 0.5
    assert pooled.f1 == pytest.approx(1 / 3)  # 2 / (2 + 3 + 1)
    assert (perfect.f1 + noisy.f1) / 2 == 0.5  # what per-video averaging would give instead


def test_greedy_matching_takes_the_higher_iou_pair_first():
    # Prediction 0 hits the truth at 10/12, prediction 1 exactly: the exact one is the hit.
    assert match_intervals([(0, 11), (0, 9)], [(0, 9)]) == [Match(predicted=1, truth=0, iou=1.0)]
    # Prediction 0 overlaps truth 0 at 0.6 and truth 1 at 0.8; it takes truth 1 first, and
    # prediction 1 (0.7 with truth 1 only) is left over: greedy, not maximum matching.
    assert iou((0, 9), (0, 5)) == 0.6 and iou((0, 9), (2, 9)) == 0.8 and iou((3, 9), (2, 11)) == 0.7
    matches = match_intervals([(0, 9), (2, 11)], [(0, 5), (2, 9)])
    assert matches == [Match(predicted=0, truth=1, iou=0.8)]


def test_ties_go_to_the_lower_predicted_then_truth_index():
    assert match_intervals([(0, 9), (0, 9)], [(0, 9)]) == [Match(predicted=0, truth=0, iou=1.0)]
    assert match_intervals([(0, 9)], [(0, 9), (0, 9)]) == [Match(predicted=0, truth=0, iou=1.0)]


@pytest.mark.parametrize("bad", [(9, 0), (5, 4)])
def test_interval_ending_before_it_starts_is_rejected(bad):
    with pytest.raises(MerError, match=str(bad).replace("(", r"\(").replace(")", r"\)")):
        iou(bad, (0, 9))
    with pytest.raises(MerError):
        spot_counts([bad], [(0, 9)])
    with pytest.raises(MerError):
        spot_counts([(0, 9)], [bad])


def test_random_intervals_stay_inside_the_video():
    rng = np.random.default_rng(0)
    intervals = random_intervals([1, 5, 30, 500], n_frames=30, rng=rng)
    assert [b - a + 1 for a, b in intervals] == [1, 5, 30, 30]  # 500 clipped to the video
    assert all(0 <= a <= b <= 29 for a, b in intervals)
    assert random_intervals([], n_frames=30, rng=rng) == []


def micro(*intervals):
    return [(interval, MICRO) for interval in intervals]


def test_random_baseline_is_reproducible_for_a_seed():
    videos = [(micro((10, 29), (100, 119)), 200), (micro((0, 49)), 120)]
    first = random_baseline(videos, seed=3, draws=50)
    assert first == random_baseline(videos, seed=3, draws=50)
    assert isinstance(first["overall"], BaselineScores) and first["overall"].draws == 50
    assert 0.0 < first["overall"].f1 < 1.0


def test_random_baseline_is_near_zero_for_tiny_intervals_in_a_long_video():
    videos = [(micro((1000, 1004), (5000, 5004)), 10_000)] * 5
    scores = random_baseline(videos, seed=0, draws=100)["overall"]
    assert scores.precision < 0.01 and scores.recall < 0.01 and scores.f1 < 0.01


def test_random_baseline_is_one_when_each_truth_fills_its_video():
    videos = [(micro((0, 59)), 60), (micro((0, 29)), 30)]
    scores = random_baseline(videos, seed=0, draws=20)
    assert (scores["overall"].precision, scores["overall"].recall, scores["overall"].f1) == (1.0, 1.0, 1.0)
    assert scores["micro"].f1 == 1.0 and scores["macro"].f1 == 0.0  # nothing macro to find, nothing placed


def test_random_baseline_places_each_types_lengths_and_pools_the_overall_from_counts():
    # A macro annotation that fills its video is always found; the micro one in a long video
    # almost never: overall recall is then about 1 hit of 2 per draw.
    videos = [([((0, 99), MACRO)], 100), ([((5000, 5004), MICRO)], 10_000)]
    scores = random_baseline(videos, seed=0, draws=50)
    assert scores["macro"].f1 == 1.0 and scores["micro"].f1 < 0.05
    assert scores["overall"].recall == pytest.approx(0.5, abs=0.03)