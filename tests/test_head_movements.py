"""Head movements are not expressions: the spotting rule tells them apart by the raw face
position (the outer eye corners), leaves them out of its threshold and rejects the
candidates holding them; `mer predict` on real faces finds a micro-expression beside a
head turn and blinks, and a still recording's first windows are scored like the rest."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mer.commands.cli import main as mer_main
from mer.datasets.smic_e import index_smic_e
from mer.preprocess.regions import head_shift
from mer.spotting.intervals import SpottingSettings, spot
from mer.spotting.windows import Window
from mer.synthetic.generator import STILL, GeneratorSettings
from mer.synthetic.layout_writers import generate_layout

# Still heads but for a 1.3 s turn, blinking twice a second (several blinks per recording).
TURNING = GeneratorSettings(subjects=2, clips_per_subject=1, min_frames=12, max_frames=16, recording_frames=240,
                            head_turn_frames=130, seed=21, **{**STILL, "blink_rate": 2.0})


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = min(a[1], b[1]) - max(a[0], b[0]) + 1
    return max(inter, 0) / (max(a[1], b[1]) - min(a[0], b[0]) + 1)


def test_head_shift_is_the_eye_corners_mean_move_in_interocular_distances():
    eyes = np.array([[100.0, 200.0], [180.0, 200.0]])  # 80 px apart
    assert head_shift(eyes, eyes + [8.0, 0.0]) == pytest.approx(0.1)
    # a narrowing (a yaw) moves both corners 4 px towards the middle
    assert head_shift(eyes, eyes + [[4.0, 0.0], [-4.0, 0.0]]) == pytest.approx(0.05)


def windows(n: int, moving: dict[int, float], head: range, shift_px: float) -> list[Window]:
    """`n` windows 5 frames apart; `moving`: window -> motion (else 1.0); the head slides
    `shift_px` per window through `head`, and its motion is the motion the turn makes."""
    eyes = np.array([[100.0, 200.0], [180.0, 200.0]])
    found, x = [], 0.0
    for i in range(n):
        x += shift_px if i in head else 0.0
        motion = moving.get(i, 8.0 if i in head else 1.0 + 0.01 * (i % 3))
        found.append(Window(5 * i, 5 * i + 9, True, motion, np.array([0.2, 0.5, 0.3]), eyes + [x, 0.0]))
    return found


def test_a_turn_is_rejected_and_sets_no_threshold_while_an_expression_beside_it_is_spotted():
    # 100 windows at 100 fps; windows 20-59 the head turns (4 px = 0.05 IOD per window);
    # windows 80-82 an expression moves the regions (motion 3) with the head still.
    found = windows(100, {80: 3.0, 81: 3.0, 82: 3.0}, range(20, 60), 4.0)
    spotted = spot(found, ["negative", "positive", "surprise"], SpottingSettings(), 5, 510, fps=100.0)
    assert [(i.onset, i.offset) for i in spotted.intervals] == [(402, 417)]
    (rejected,) = spotted.rejected
    assert rejected.reason.startswith("head movement") and rejected.onset < 20 * 5 + 10 and rejected.offset > 59 * 5
    # Had the turn's windows set the threshold (spread of motions 1 and 8), the expression would be under it.
    assert spotted.threshold < 3.0
    assert np.nanmax(spotted.head) == pytest.approx(0.2)  # 4 windows apart (0.2 s at stride 5): 16 px / 80 px
    still = spot(windows(100, {80: 3.0, 81: 3.0, 82: 3.0}, range(0), 0.0), ["a", "b", "c"], SpottingSettings(), 5, 510,
                 fps=100.0)
    assert [(i.onset, i.offset) for i in still.intervals] == [(402, 417)] and still.rejected == []


def test_the_head_limit_is_a_key_and_refuses_nonsense():
    loose = spot(windows(100, {}, range(20, 60), 4.0), ["a", "b", "c"], SpottingSettings(max_head_shift=0.5), 5, 510,
                 fps=100.0)
    assert [i.kind for i in loose.intervals] == ["macro"] and loose.rejected == []  # a 2 s "expression"
    with pytest.raises(Exception, match="max_head_shift"):
        SpottingSettings(max_head_shift=0)


@pytest.fixture(scope="module")
def turning(tmp_path_factory) -> Path:
    return generate_layout("smic_e", tmp_path_factory.mktemp("turning") / "smic_e", TURNING, progress=False)


def changed_frames(frames, threshold: float, pixels: int) -> np.ndarray:
    """Frames differing from the first by more than `threshold` grey levels in over `pixels` pixels,
    read plainly with OpenCV."""
    first = cv2.imread(str(frames[0]), cv2.IMREAD_GRAYSCALE).astype(np.int16)
    return np.array([(np.abs(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).astype(np.int16) - first) > threshold).sum()
                     > pixels for f in frames])


def test_predict_finds_the_micro_expression_beside_a_head_turn_and_blinks(turning, checkpoint, tmp_path):
    records, _ = index_smic_e(turning)
    assert len(records) == 2
    for record in records:
        frames = record.frames
        # The turn moves the whole face: most of the face box changes. Blinks and the
        # micro-expression change a few hundred pixels.
        turn = np.flatnonzero(changed_frames(frames, 30, 20_000))
        assert 60 <= len(turn) <= 130, "the recording holds a head turn"
        local = np.flatnonzero(changed_frames(frames, 30, 40) & ~changed_frames(frames, 30, 20_000))
        blinks = [i for i in local if not record.onset - 2 <= i <= record.offset + 2 and not turn[0] - 5 <= i <= turn[-1] + 5]
        assert len(blinks) >= 3, "the recording holds a blink away from the expression and the turn"
        out = tmp_path / record.clip_id
        assert mer_main(["predict", str(record.path), "--checkpoint", str(checkpoint), "--fps", "100", "-o", str(out),
                         "progress=false"]) == 0
        document = json.loads((out / f"{record.path.name}.json").read_text())
        (found,) = document["intervals"]
        assert found["type"] == "micro" and iou((found["onset_frame"], found["offset_frame"]),
                                                (record.onset, record.offset)) >= 0.5
        assert any(r["reason"].startswith("head movement") and r["onset_frame"] <= turn[len(turn) // 2] <= r["offset_frame"]
                   for r in document["rejected"])


def test_a_still_recordings_first_windows_are_scored_like_the_rest(checkpoint, tmp_path):
    """No expression at all (intensity 0), no sway, no blink: nothing is spotted, not even at the start."""
    root = generate_layout("smic_e", tmp_path / "still", GeneratorSettings(
        subjects=1, clips_per_subject=1, recording_frames=150, seed=3, **{**STILL, "intensity": 0.0}), progress=False)
    (record,) = index_smic_e(root)[0]
    assert mer_main(["predict", str(record.path), "--checkpoint", str(checkpoint), "--fps", "100", "-o",
                     str(tmp_path / "out"), "progress=false"]) == 0
    document = json.loads((tmp_path / "out" / f"{record.path.name}.json").read_text())
    assert document["intervals"] == [] and document["rejected"] == []
    motion = np.array([w["motion"] for w in document["windows"]])
    assert np.abs(motion[:5] - np.median(motion)).max() < 0.2 * np.median(motion)
