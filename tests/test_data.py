"""Built-in generator, SMIC-HS loader, holdout split and clip cache."""

import json
import shutil

import cv2
import numpy as np
import pytest

from mer.data.cache import ClipCache
from mer.data.generator import clip_plan
from mer.data.smic import index_smic_hs
from mer.data.splits import holdout_split, load_or_make_split
from mer.errors import MerError
from mer.preprocess.frames import frame_number
from mer.preprocess.pipeline import PreprocessSettings

from conftest import TINY


def test_generator_tree_reads_back_with_right_labels_and_subjects(tiny_tree):
    records, skipped = index_smic_hs(tiny_tree)
    assert skipped == []
    assert len(records) == TINY.subjects * TINY.clips_per_subject
    expected = sorted((f"s{subject}", label) for subject, label in clip_plan(TINY))
    assert sorted((r.subject, r.label) for r in records) == expected
    abbreviations = {"negative": "ne", "positive": "po", "surprise": "sur"}
    for r in records:
        assert r.clip_id.startswith(f"{r.subject}_{abbreviations[r.label]}_")
        assert r.folder.parent.name == r.label and r.folder.parents[2].name == r.subject
        assert TINY.min_frames <= len(r.frames) <= TINY.max_frames
        numbers = [frame_number(f) for f in r.frames]
        assert numbers == sorted(numbers) and numbers[0] >= 100_000
    frame = cv2.imread(str(records[0].frames[0]))
    assert frame.shape == (480, 640, 3) and records[0].frames[0].suffix == ".bmp"
    assert {r.subject for r in records} == {f"s{i}" for i in range(1, 7)}
    assert len({r.label for r in records}) == 3


def test_generated_motion_is_small_but_present(tiny_tree):
    record = index_smic_hs(tiny_tree)[0][0]
    onset, apex = (cv2.imread(str(record.frames[i]), cv2.IMREAD_GRAYSCALE).astype(float) for i in (0, len(record.frames) // 2))
    changed = np.abs(apex - onset) > 25
    assert 0.0005 < changed.mean() < 0.05, "a micro-movement: a small part of the frame moves"


def test_loader_errors_name_the_path(tmp_path):
    with pytest.raises(MerError, match="does not exist"):
        index_smic_hs(tmp_path / "missing")
    with pytest.raises(MerError, match="no SMIC-HS subject folders"):
        index_smic_hs(tmp_path)


def test_holdout_split_is_stratified_seeded_and_saved(tiny_tree, tmp_path):
    records, _ = index_smic_hs(tiny_tree)
    a = holdout_split(records, 0.2, seed=0)
    assert a == holdout_split(records, 0.2, seed=0)
    assert a != holdout_split(records, 0.2, seed=1)
    labels = {r.clip_id: r.label for r in records}
    for label in set(labels.values()):
        members = [c for c in labels if labels[c] == label]
        assert sum(labels[c] == label for c in a["val"]) == round(0.2 * len(members))
    assert set(a["train"]).isdisjoint(a["val"]) and len(a["train"]) + len(a["val"]) == len(records)
    saved, path = load_or_make_split(tmp_path, records, 0.2, 0, True, False)
    assert json.loads(path.read_text())["val"] == a["val"]
    assert load_or_make_split(tmp_path, records, 0.2, 0, True, False)[1] == path
    disjoint = holdout_split(records, 0.2, seed=0, subject_disjoint=True)
    subject = {r.clip_id: r.subject for r in records}
    assert {subject[c] for c in disjoint["val"]}.isdisjoint(subject[c] for c in disjoint["train"])


def test_smic_sized_split_is_the_papers_131_33():
    from mer.data.records import ClipRecord

    records = [ClipRecord(f"c{i}", f"s{i % 20}", label, ()) for i, label in
               enumerate(["negative"] * 70 + ["positive"] * 51 + ["surprise"] * 43)]
    split = holdout_split(records, 0.2, seed=0)
    assert (len(split["train"]), len(split["val"])) == (131, 33)


def test_cache_reuses_clips_and_separates_configs(tiny_tree, tmp_path):
    records = index_smic_hs(tiny_tree)[0][:3]
    cache = ClipCache(tmp_path, PreprocessSettings(), tiny_tree)
    report = cache.build(records, workers=1, progress=False)
    assert len(report.ok) == 3 and not report.failed
    stamps = {p: p.stat().st_mtime_ns for p in cache.dir.glob("*.npz")}
    cache.build(records, workers=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in cache.dir.glob("*.npz")} == stamps, "second build reuses the cache"
    other = ClipCache(tmp_path, PreprocessSettings(margin=0.3), tiny_tree)
    assert other.dir != cache.dir
    assert cache.load(records[0]).shape == (10, 128, 128)
    assert not list(cache.dir.glob(".*tmp*")), "no temporary files left behind"


def test_bad_clip_is_reported_and_the_rest_is_cached(tiny_tree, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(tiny_tree, tree)
    records = index_smic_hs(tree)[0][:4]
    for frame in records[1].frames:
        frame.write_bytes(b"\x00garbage")
    cache = ClipCache(tmp_path / "cache", PreprocessSettings(), tree)
    report = cache.build(records, workers=2, progress=False)
    assert [r.clip_id for r, _ in report.failed] == [records[1].clip_id]
    assert "unreadable or corrupt image" in report.failed[0][1] and str(records[1].folder) in report.failed[0][1]
    assert len(report.ok) == 3
    assert len(list(cache.dir.glob("*.npz"))) == 3, "the cache holds only good clips"
    assert records[1].clip_id in cache.failures_path.read_text()
    assert records[1].clip_id in json.loads(cache.manifest_path.read_text())["failed"]
