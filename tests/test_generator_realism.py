"""The built-in data is hard the way real recordings are, never by mislabelling: each
nuisance does what its knob says and carries nothing of the class, every draw follows
the seed, and a tree written by another version of the generator is never used."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from omegaconf import OmegaConf

from mer.common.config import compose_train
from mer.data.index import index_dataset
from mer.common.errors import MerError
from mer.synthetic.generator import (COMPLETE_MARKER, GENERATOR_VERSION, STILL, GeneratorSettings, SubjectStyle,
                                     placement, render_frames, rendered_clips, sensor, source_portrait, subject_style)
from mer.preprocess.align import transform_points
from mer.synthetic.layout_writers import generate_smic_hs

ONE = GeneratorSettings(subjects=1, clips_per_subject=1, min_frames=10, max_frames=10, seed=4)
# Nothing moves but the micro-expression, and no noise: what is left is the class's motion.
QUIET = replace(ONE, noise=0, **STILL)
NUISANCES = {"head_motion": 1.0, "illumination": 0.05, "blink_rate": 50.0}


def clip(settings: GeneratorSettings):
    (rendered,) = rendered_clips(settings, [0], progress=False, desc="")
    return rendered


def neutral_frames(settings: GeneratorSettings, label: str = "positive", seed: int = 0) -> list[np.ndarray]:
    return render_frames(source_portrait(0), label, np.zeros(8), np.random.default_rng(seed), settings)


def test_every_draw_follows_the_seed():
    first, again, other = clip(ONE), clip(ONE), clip(replace(ONE, seed=5))
    assert all(np.array_equal(a, b) for a, b in zip(first.frames, again.frames))
    assert not np.array_equal(first.frames[0], other.frames[0])


def test_subjects_keep_their_style_whatever_clips_they_are_given():
    settings = GeneratorSettings(seed=4)
    style = subject_style(settings, 2)
    same = subject_style(replace(settings, clips_per_subject=30), 2)
    assert style.expressiveness == same.expressiveness and np.array_equal(style.gain, same.gain)
    assert subject_style(settings, 3).expressiveness != style.expressiveness
    alike = subject_style(replace(settings, subject_spread=0, timing_spread=0), 2)
    assert (alike.expressiveness, alike.apex_shift, alike.sway, alike.blinking) == (1, 0, 1, 1)
    assert np.array_equal(alike.gain, SubjectStyle().gain) and not alike.turn.any()


def test_the_annotated_apex_is_where_the_face_moves_most_even_off_centre():
    rendered = clip(replace(QUIET, timing_spread=0.3, seed=10))
    assert rendered.apex == 3, "this seed puts the apex off the clip's centre (4.5)"
    moved = [np.abs(f.astype(float) - rendered.frames[0]).mean() for f in rendered.frames]
    assert int(np.argmax(moved)) == rendered.apex


def test_a_still_face_stays_still_without_nuisances():
    frames = neutral_frames(QUIET)
    assert all(np.array_equal(frames[0], f) for f in frames)


@pytest.mark.parametrize("knob", sorted(NUISANCES))
def test_each_nuisance_moves_a_neutral_face(knob):
    frames = neutral_frames(replace(QUIET, **{knob: NUISANCES[knob]}))
    assert not all(np.array_equal(frames[0], f) for f in frames)


def test_blinks_move_the_eyes_not_the_mouth():
    settings = replace(QUIET, blink_rate=NUISANCES["blink_rate"])
    frames = np.stack(neutral_frames(settings)).astype(float)
    rows = np.nonzero((frames != frames[0]).any(axis=(0, 2, 3)))[0]
    landmarks = transform_points(placement(source_portrait(0), np.random.default_rng(0), settings),
                                 source_portrait(0).landmarks)
    assert rows.size and landmarks[17:27, 1].min() - 20 < rows.min() and rows.max() < landmarks[33, 1]  # brows to nose tip


def test_nothing_but_the_expression_depends_on_the_class():
    amplitudes = np.r_[np.zeros(3), np.hanning(6), np.zeros(3)]
    positive, negative = (render_frames(source_portrait(0), label, amplitudes, np.random.default_rng(1), ONE)
                          for label in ("positive", "negative"))
    for a, p, n in zip(amplitudes, positive, negative):
        assert np.array_equal(p, n) == (a == 0), "head, light, blinks and noise are the same draws for every class"


def test_sensor_noise_grows_with_the_signal():
    settings = GeneratorSettings(noise=2.0, shot_noise=0.05)
    for level in (20.0, 200.0):
        noisy = sensor(np.full((200, 200, 3), level, np.float32), np.random.default_rng(0), settings)
        assert noisy.std() == pytest.approx(np.sqrt(2.0**2 + 0.05 * level), rel=0.03)


RECORDING = ("clips_per_subject", "seed", "recording_frames", "head_turn_frames")
SPOTTING_CORPUS = (*RECORDING, "macro_frames", "fps", "min_frames", "max_frames")


@pytest.mark.parametrize(("data", "own"), [("builtin", ()), ("builtin_smic_e", RECORDING),
                                           *((f"builtin_{c}", SPOTTING_CORPUS) for c in ("casme_sq", "samm_lv", "casme3"))])
def test_the_configured_built_in_data_is_what_mer_generate_writes(data, own):
    configured = GeneratorSettings(**compose_train([f"data={data}"]).data.generator)
    assert replace(configured, **{key: getattr(GeneratorSettings(), key) for key in own}) == GeneratorSettings()


def test_negative_realism_knobs_are_refused():
    with pytest.raises(MerError, match="data.generator.head_motion, data.generator.blink_rate must be >= 0"):
        GeneratorSettings(head_motion=-1, blink_rate=-0.1)


def test_a_tree_of_an_older_generator_is_refused_in_one_line_not_used(tmp_path):
    root = generate_smic_hs(tmp_path / "smic", replace(ONE, subjects=2), progress=False)
    assert COMPLETE_MARKER.endswith(f"-v{GENERATOR_VERSION}") and (root / COMPLETE_MARKER).is_file()
    (root / COMPLETE_MARKER).rename(root / ".mer-complete")  # what generator version 1 left
    config = OmegaConf.create({"layout": "smic_hs", "root": str(root), "classes": ["negative", "positive", "surprise"],
                               "generator": {"subjects": 2, "clips_per_subject": 1, "min_frames": 10, "max_frames": 10}})
    with pytest.raises(MerError, match=r"older mer.*delete it.*data\.root") as raised:
        index_dataset(config, progress=False)
    assert "\n" not in str(raised.value)
    assert (root / ".mer-complete").is_file(), "the old tree is left as it was"
