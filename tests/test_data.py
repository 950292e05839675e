"""Built-in generator, SMIC-HS loader, holdout split and clip cache."""

import json
import re
import subprocess
import sys
from pathlib import Path
import shutil

import cv2
import numpy as np
import pytest
import torch

from mer.data.cache import ClipCache
from mer.data.datamodule import ClipDataModule
from mer.synthetic.real_faces import FaceSource
from mer.datasets.records import ClipRecord
from mer.synthetic.generator import clip_plan
from mer.datasets.smic_hs import index_smic_hs
from mer.data.splits import ProtocolSettings, holdout_split, load_or_make_folds, make_folds
from mer.common.errors import MerError
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
        assert r.path.parent.name == r.label and r.path.parents[2].name == r.subject
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
    kept, held = a
    labels = {r.clip_id: r.label for r in records}
    for label in set(labels.values()):
        members = [c for c in labels if labels[c] == label]
        assert sum(labels[c] == label for c in held) == round(0.2 * len(members))
    assert set(kept).isdisjoint(held) and len(kept) + len(held) == len(records)
    document, path = load_or_make_folds(tmp_path, records, ProtocolSettings())
    (fold,) = json.loads(path.read_text())["folds"]
    assert (fold["train"], fold["test"], fold["val"]) == (kept, held, [])
    assert load_or_make_folds(tmp_path, records, ProtocolSettings())[1] == path, "the saved split is reused"
    other_seed = load_or_make_folds(tmp_path, records, ProtocolSettings(split_seed=5))
    assert other_seed[1] != path and other_seed[0]["folds"][0]["test"] != held
    kept_s, held_s = holdout_split(records, 0.2, seed=0, subject_disjoint=True)
    subject = {r.clip_id: r.subject for r in records}
    assert {subject[c] for c in held_s}.isdisjoint(subject[c] for c in kept_s)


def test_smic_sized_split_is_the_papers_131_33():
    records = [ClipRecord(f"c{i}", f"s{i % 20}", label, Path(f"c{i}")) for i, label in
               enumerate(["negative"] * 70 + ["positive"] * 51 + ["surprise"] * 43)]
    kept, held = holdout_split(records, 0.2, seed=0)
    assert (len(kept), len(held)) == (131, 33)


def test_loso_and_kfold_folds_cover_every_clip_once(tiny_tree):
    records, _ = index_smic_hs(tiny_tree)
    subject = {r.clip_id: r.subject for r in records}
    loso = make_folds(records, ProtocolSettings(name="loso", inner_val_fraction=0.25))
    assert [f["name"] for f in loso] == [f"subject=s{i}" for i in range(1, 7)]
    for fold in loso:
        assert {subject[c] for c in fold["test"]} == {fold["name"].split("=")[1]}
        assert fold["name"].split("=")[1] not in {subject[c] for c in fold["train"] + fold["val"]}
        assert fold["val"] and set(fold["val"]).isdisjoint(fold["train"])
    kfold = make_folds(records, ProtocolSettings(name="kfold", k=3))
    for folds in (loso, kfold):
        tests = [c for f in folds for c in f["test"]]
        assert sorted(tests) == sorted(r.clip_id for r in records)
    with pytest.raises(MerError, match="inner_val_fraction"):
        ProtocolSettings(selection="val")


def test_loso_folds_come_in_natural_subject_order(tiny_tree):
    import dataclasses

    records, _ = index_smic_hs(tiny_tree)
    renamed = [dataclasses.replace(r, subject={"s1": "s1", "s2": "s2", "s3": "s11"}.get(r.subject, r.subject))
               for r in records]
    names = [f["name"] for f in make_folds(renamed, ProtocolSettings(name="loso"))]
    assert names == ["subject=s1", "subject=s2", "subject=s4", "subject=s5", "subject=s6", "subject=s11"]


def test_kfold_honours_stratify(tiny_tree):
    from collections import Counter

    records, _ = index_smic_hs(tiny_tree)
    label = {r.clip_id: r.label for r in records}
    total = Counter(label.values())
    stratified = make_folds(records, ProtocolSettings(name="kfold", k=3))
    for fold in stratified:  # every class split evenly over the three parts
        counts = Counter(label[c] for c in fold["test"])
        assert all(abs(counts[c] - total[c] / 3) < 1 for c in total), counts
    plain = make_folds(records, ProtocolSettings(name="kfold", k=3, stratify=False))
    assert [len(f["test"]) for f in plain] == [6, 6, 6] and plain != stratified
    with pytest.raises(MerError, match="protocol.k=7 exceeds the clips of the smallest class"):
        make_folds(records, ProtocolSettings(name="kfold", k=7))


def test_the_paper_split_is_the_one_earlier_versions_saved(tiny_tree, tmp_path):
    # Only k-fold and LOSO moved to scikit-learn; the holdout split's clips are as before
    # (its file name carries the split scheme, so nothing older is picked up by mistake).
    records, _ = index_smic_hs(tiny_tree)
    (fold,) = load_or_make_folds(tmp_path, records, ProtocolSettings())[0]["folds"]
    assert fold["test"] == ["s1_sur_01", "s4_ne_01", "s5_ne_01", "s6_po_01"]  # what earlier versions saved for these clips


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


def test_a_compressed_cache_holds_the_same_clips_in_less_space(tiny_tree, tmp_path, make_cfg):
    assert make_cfg().data.cache_compression is False  # the default: clips written 10 ms faster each
    records = index_smic_hs(tiny_tree)[0][:2]
    plain, packed = (ClipCache(tmp_path / name, PreprocessSettings(), tiny_tree, compress=name == "packed")
                     for name in ("plain", "packed"))
    for cache in (plain, packed):
        cache.build(records, workers=1, progress=False)
    for record in records:
        assert np.array_equal(plain.load(record), packed.load(record))
        assert packed.path(record).stat().st_size < 0.8 * plain.path(record).stat().st_size


def test_datamodule_batches_are_the_cached_clips_as_floats(tiny_tree, tmp_path):
    records = index_smic_hs(tiny_tree)[0][:3]
    cache = ClipCache(tmp_path, PreprocessSettings(), tiny_tree)
    cache.build(records, workers=1, progress=False)
    ids = [r.clip_id for r in records]
    datamodule = ClipDataModule(cache, records, ["negative", "positive", "surprise"],
                                {"train": ids, "val": [], "test": ids[:1]}, batch_size=2)
    datamodule.setup()
    batch = next(iter(datamodule.test_dataloader()))
    assert batch[0].dtype == torch.uint8, "bytes cross the loader (and to a GPU)"
    clips, labels = datamodule.on_after_batch_transfer(batch, 0)
    assert clips.dtype == torch.float32 and clips.shape == (1, 1, 10, 128, 128)
    np.testing.assert_allclose(clips[0, 0].numpy(), cache.load(records[0]) / 255.0, atol=1e-7)


def test_bad_clips_are_reported_and_the_rest_is_cached(tiny_tree, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(tiny_tree, tree)
    good = index_smic_hs(tree)[0][:3]
    corrupt, mixed = index_smic_hs(tree)[0][3:5]
    for frame in corrupt.frames:
        frame.write_bytes(b"\x00garbage")
    cv2.imwrite(str(mixed.frames[len(mixed.frames) // 2]), np.zeros((240, 320, 3), np.uint8))
    empty_video = tmp_path / "empty.avi"
    empty_video.write_bytes(b"")
    bad = [corrupt, mixed, ClipRecord("empty_video", "s9", "positive", empty_video),
           ClipRecord("missing", "s9", "surprise", tmp_path / "no_such_clip")]
    cache = ClipCache(tmp_path / "cache", PreprocessSettings(), tree)
    report = cache.build([*good, *bad], workers=2, progress=False)
    reasons = {r.clip_id: why for r, why in report.failed}
    assert sorted(reasons) == sorted(r.clip_id for r in bad)
    assert "unreadable or corrupt image" in reasons[corrupt.clip_id] and str(corrupt.path) in reasons[corrupt.clip_id]
    assert "differ in size" in reasons[mixed.clip_id]
    assert "no frames could be decoded" in reasons["empty_video"]
    assert "does not exist" in reasons["missing"]
    assert sorted(r.clip_id for r in report.ok) == sorted(r.clip_id for r in good)
    assert len(list(cache.dir.glob("*.npz"))) == 3, "the cache holds only good clips"
    assert all(r.clip_id in cache.failures_path.read_text() for r in bad)
    assert sorted(json.loads(cache.manifest_path.read_text())["failed"]) == sorted(reasons)


def test_augmentation_is_clip_consistent_and_off_for_the_paper(make_cfg):
    from hydra.utils import instantiate

    assert not instantiate(make_cfg("experiment=paper").datamodule.augment), "no transforms: no augmentation"
    augmenter = instantiate(make_cfg("augment=light", "seed=0").datamodule.augment)
    frame = cv2.cvtColor(cv2.resize(FaceSource("astronaut", "skimage", "data/astronaut.png").load_bgr(), (128, 128)), cv2.COLOR_BGR2GRAY)
    clip = np.repeat(frame[None], 10, axis=0)
    outputs = [augmenter(clip) for _ in range(8)]
    assert all(out.shape == clip.shape and out.dtype == np.uint8 for out in outputs)
    changed = [out for out in outputs if not np.array_equal(out, clip)]
    assert changed, "some draws must transform the clip"
    for out in changed:
        # Noise is drawn per frame; geometry and brightness are shared: frames stay alike.
        assert np.abs(out.astype(float) - out[0]).mean() < 6


def test_jobs_started_together_preprocess_a_cache_once(tiny_tree, tmp_path):
    """`mer data prepare` twice at once on a new cache folder (a SLURM array's first jobs):
    one preprocesses every clip while the other waits for its lock, then finds them."""
    mer = Path(sys.executable).parent / "mer"
    command = [str(mer), "data", "prepare", f"data.root={tiny_tree}", f"paths.root_dir={tmp_path}",
               f"paths.cache_dir={tmp_path / 'cache'}", "data.preprocess_workers=1"]
    jobs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [job.communicate(timeout=600) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    counts = sorted(int(re.search(r"\((\d+) preprocessed now", out).group(1)) for out, _ in outputs)
    assert counts == [0, 18], outputs
