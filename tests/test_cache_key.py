"""The clip cache's key covers the code that makes a clip: an edit to the preprocessing
makes a new cache folder, an edit elsewhere keeps the clips already made."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mer.data import cache
from mer.data.cache import ClipCache, cache_key, clip_code
from mer.datasets.smic_hs import index_smic_hs
from mer.preprocess.pipeline import PreprocessSettings
from mer.synthetic.generator import GeneratorSettings
from mer.synthetic.layout_writers import generate_smic_hs

PREPROCESS = Path(cache.__file__).parents[1] / "preprocess"
# What preprocess_clip runs, read off the modules by hand: pipeline's imports, theirs, and
# the insightface backend it imports only when that backend is chosen.
CLIP_MODULES = ("pipeline", "align", "faces", "frames", "regions", "temporal", "timing", "insightface_backend")


@pytest.fixture
def package(tmp_path, monkeypatch) -> Path:
    """A copy of mer/preprocess that the key reads instead of the real one."""
    copy = tmp_path / "preprocess"
    shutil.copytree(PREPROCESS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "PREPROCESS_PACKAGE", copy)
    return copy


def key() -> str:
    return cache_key(PreprocessSettings(), Path("/data/smic"), clip_code())


@pytest.mark.parametrize("module", CLIP_MODULES)
def test_a_code_change_in_a_module_a_clip_goes_through_changes_the_key(package, module):
    before = key()
    source = package / f"{module}.py"
    source.write_text(source.read_text() + "\n# a comment alone changes no clip\n")
    assert key() == before, "comments and layout are not code"
    source.write_text(source.read_text() + "\nEDITED = 1\n")
    assert key() != before


@pytest.mark.parametrize("module", ["preview", "__init__"])
def test_a_change_in_a_module_no_clip_goes_through_keeps_the_key(package, module):
    before = key()
    source = package / f"{module}.py"
    source.write_text(source.read_text() + "\nEDITED = 1\n")
    assert key() == before


def test_the_key_covers_what_the_worker_stores(monkeypatch):
    before = key()

    def stores_every_other_frame(job):
        record, settings, path = job
        clip = cache.preprocess_clip(record.open(), settings, record.apex, record.onset)
        np.savez_compressed(path, clip=clip[::2])
        return record, None

    monkeypatch.setattr(cache, "_process", stores_every_other_frame)
    assert key() != before


def test_the_manifest_records_the_code_digest(package, tmp_path):
    built = ClipCache(tmp_path / "cache", PreprocessSettings(), tmp_path)
    built.build([], workers=1, progress=False)
    manifest = json.loads(built.manifest_path.read_text())
    assert {f"mer.preprocess.{m}" for m in CLIP_MODULES} <= set(manifest["code"]["modules"])
    assert "mer.preprocess.preview" not in manifest["code"]["modules"]
    digest = manifest["code"]["digest"]
    (package / "temporal.py").write_text((package / "temporal.py").read_text() + "\nEDITED = 1\n")
    edited = ClipCache(tmp_path / "cache", PreprocessSettings(), tmp_path)
    assert edited.dir != built.dir
    edited.build([], workers=1, progress=False)
    assert json.loads(edited.manifest_path.read_text())["code"]["digest"] != digest


def test_a_tree_written_again_under_the_same_names_is_preprocessed_again(tmp_path):
    """Deleting an old built-in tree and writing the new generator's (what its refusal
    says to do) gives other clips under the same names: none may come from the cache."""
    root = tmp_path / "builtin_smic"
    settings = GeneratorSettings(subjects=2, clips_per_subject=2, min_frames=10, max_frames=10, seed=0)
    generate_smic_hs(root, settings, progress=False)
    first = ClipCache(tmp_path / "cache", PreprocessSettings(), root).build(index_smic_hs(root)[0], 1, progress=False)
    shutil.rmtree(root)
    generate_smic_hs(root, replace(settings, intensity=0.1), progress=False)
    records = index_smic_hs(root)[0]
    again = ClipCache(tmp_path / "cache", PreprocessSettings(), root).build(records, 1, progress=False)
    assert first.preprocessed == again.preprocessed == len(records) == 4
    assert ClipCache(tmp_path / "cache", PreprocessSettings(), root).build(records, 1, progress=False).preprocessed == 0


def test_the_detection_scale_is_in_the_key_and_a_config_saved_before_it_keeps_full_resolution(make_cfg):
    preprocess = make_cfg().preprocess
    assert PreprocessSettings.from_config(preprocess).detect_scale == 0.5
    full = replace(PreprocessSettings(), detect_scale=1.0)
    assert cache_key(full, Path("/data/smic"), clip_code()) != key()
    saved_before = {k: v for k, v in preprocess.items() if k != "detect_scale"}
    assert PreprocessSettings.from_config(saved_before) == replace(PreprocessSettings.from_config(preprocess),
                                                                   detect_scale=1.0)
