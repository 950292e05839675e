"""A full disk and half-copied files, for real, under the clip cache and the built-in
data: each run stops with one line naming the file, or rebuilds what it can."""

from __future__ import annotations

import logging
import re
import shutil
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from mer.data.cache import ClipCache
from mer.data.index import index_dataset
from mer.datasets.smic_hs import index_smic_hs
from mer.common.errors import MerError
from mer.preprocess.pipeline import PreprocessSettings
from mer.synthetic.generator import COMPLETE_MARKER, GeneratorSettings, staged_tree
from mer.synthetic.layout_writers import LAYOUTS, generate_layout, generate_smic_hs

SMALL = GeneratorSettings(subjects=2, clips_per_subject=2, min_frames=10, max_frames=10)
ONE_CLIP = GeneratorSettings(subjects=1, clips_per_subject=1, min_frames=10, max_frames=10)
# The spotting corpora's layouts hold long recordings only.
ONE_RECORDING = replace(ONE_CLIP, recording_frames=20)
RECORDING_LAYOUTS = ("casme_sq", "samm_lv", "casme3")


def smallest_settings(layout: str) -> GeneratorSettings:
    return ONE_RECORDING if layout in RECORDING_LAYOUTS else ONE_CLIP


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> Path:
    """4 clips in the SMIC-HS layout; tests copy it or only read it."""
    return generate_smic_hs(tmp_path_factory.mktemp("data") / "smic", SMALL, progress=False)


def smic_config(root: Path) -> OmegaConf:
    return OmegaConf.create({"layout": "smic_hs", "root": str(root), "classes": ["negative", "positive", "surprise"],
                             "generator": {"subjects": SMALL.subjects, "clips_per_subject": SMALL.clips_per_subject,
                                           "min_frames": SMALL.min_frames, "max_frames": SMALL.max_frames}})


@pytest.mark.parametrize("workers", [1, 2])
def test_full_cache_disk_stops_the_build_naming_the_entry(small_tree, small_disk, workers):
    records = index_smic_hs(small_tree)[0][:2]
    cache = ClipCache(small_disk("size=16k"), PreprocessSettings(), small_tree)
    with pytest.raises(MerError) as raised:
        cache.build(records, workers=workers, progress=False)
    message = str(raised.value)
    assert "\n" not in message
    assert any(str(cache.path(r)) in message for r in records), message
    assert "No space left" in message and "paths.cache_dir" in message
    assert not cache.failures_path.exists(), "a full disk is no clip's fault: nothing is recorded as a failed clip"
    assert not list(cache.dir.glob(".*tmp*")), "no temporary files left behind"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bug_in_the_preprocessing_stops_the_build_naming_the_clip_and_the_error(small_tree, tmp_path, workers):
    buggy, good = index_smic_hs(small_tree)[0][:2]
    # A loader's bug, as a worker process meets it: the apex kept as the text of its cell.
    buggy = replace(buggy, apex="12")
    cache = ClipCache(tmp_path, PreprocessSettings(), small_tree)
    with pytest.raises(RuntimeError) as raised:
        cache.build([buggy, good], workers=workers, progress=False)
    message = str(raised.value)
    assert buggy.clip_id in message and str(buggy.path) in message, message
    assert "hit a bug, not bad data" in message and "ufunc 'clip'" in message, message
    assert not cache.failures_path.exists() and not cache.manifest_path.exists(), "a bug is no clip's fault"
    assert not cache.path(buggy).exists()
    # Where the bug is, from the worker process too: its traceback is the error's cause.
    assert "np.clip(apex" in "".join(traceback.format_exception(raised.value))


def test_no_room_for_the_cache_folder_names_it(small_tree, small_disk):
    # tmpfs's own root takes its one inode: creating the cache folder fails with ENOSPC.
    cache = ClipCache(small_disk("size=16k,nr_inodes=1") / "cache", PreprocessSettings(), small_tree)
    with pytest.raises(MerError, match=rf"{re.escape(str(cache.dir))}.*No space left.*paths.cache_dir"):
        cache.build(index_smic_hs(small_tree)[0][:1], workers=1, progress=False)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_truncated_cache_entry_is_rebuilt_with_a_warning(small_tree, tmp_path, caplog):
    record = index_smic_hs(small_tree)[0][0]
    cache = ClipCache(tmp_path, PreprocessSettings(), small_tree)
    cache.dir.mkdir(parents=True)
    np.savez_compressed(cache.path(record), clip=np.zeros((10, 128, 128), np.uint8))
    truncate(cache.path(record))  # as a half-copied cache folder leaves it
    with caplog.at_level(logging.WARNING, logger="mer.data.cache"):
        report = cache.build([record], workers=1, progress=False)
    assert report.ok == [record] and not report.failed
    assert any(str(cache.path(record)) in message for message in caplog.messages), caplog.messages
    clip = cache.load(record)
    assert clip.shape == (10, 128, 128) and clip.any(), "the entry holds the preprocessed clip again"


@pytest.mark.parametrize("damage", ["truncated", "no clip array", "not a zip"])
def test_unreadable_cache_entry_names_the_file_to_delete(small_tree, tmp_path, damage):
    record = index_smic_hs(small_tree)[0][0]
    cache = ClipCache(tmp_path, PreprocessSettings(), small_tree)
    cache.dir.mkdir(parents=True)
    path = cache.path(record)
    if damage == "not a zip":
        path.write_bytes(b"\x00" * 100)
    else:
        np.savez_compressed(path, **{"clip" if damage == "truncated" else "other": np.ones((10, 128, 128), np.uint8)})
        if damage == "truncated":
            truncate(path)
    with pytest.raises(MerError, match=rf"{re.escape(str(path))}.*delete it") as raised:
        cache.load(record)
    assert "\n" not in str(raised.value)


FRAME_NAMES = {"smic_hs": r"image\d{6}\.bmp", "smic_e": r"image\d{6}\.jpg", "casme2": r"img\d+\.jpg",
               "samm": r"\d{3}_\d{5}\.jpg", "composite": r"image\d{6}\.bmp",
               "casme_sq": r"img\d{3}\.jpg", "samm_lv": r"\d{3}_\d+_\d{4}\.jpg", "casme3": r"color/\d+\.jpg"}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_full_disk_while_generating_names_the_frame_and_leaves_nothing(small_disk, layout):
    disk = small_disk("size=32k")
    with pytest.raises(MerError, match=rf"cannot write {re.escape(str(disk))}/.*/{FRAME_NAMES[layout]}") as raised:
        generate_layout(layout, disk / "data", smallest_settings(layout), progress=False)
    assert "\n" not in str(raised.value)
    assert list(disk.iterdir()) == [], "no partial tree (staged or in place) is left for a later run to trust"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_marks_its_tree_complete(tmp_path, layout):
    root = generate_layout(layout, tmp_path / "data", smallest_settings(layout), progress=False)
    assert (root / COMPLETE_MARKER).is_file()


def test_built_in_tree_without_the_marker_is_neither_used_nor_deleted(small_tree, tmp_path):
    tree = tmp_path / "smic"
    shutil.copytree(small_tree, tree)
    (tree / COMPLETE_MARKER).unlink(missing_ok=True)  # cut short, or written by an older mer
    files = sorted(tree.rglob("*"))
    with pytest.raises(MerError, match=rf"{re.escape(str(tree))} .*incomplete built-in.*delete it.*data.root") as raised:
        index_dataset(smic_config(tree), progress=False)
    assert "\n" not in str(raised.value)
    assert sorted(tree.rglob("*")) == files, "the folder may be the user's: it is left as it was"


def test_marked_tree_is_used_as_it_is_and_a_missing_one_is_written(small_tree, tmp_path):
    records, _ = index_dataset(smic_config(small_tree), progress=False)
    assert len(records) == SMALL.subjects * SMALL.clips_per_subject
    new = tmp_path / "new"
    records, _ = index_dataset(smic_config(new), progress=False)
    assert len(records) == SMALL.subjects * SMALL.clips_per_subject and (new / COMPLETE_MARKER).is_file()


def test_a_tree_written_meanwhile_by_another_process_is_kept(tmp_path):
    """The jobs of a parallel or SLURM sweep all write the built-in data on first use: the
    first to finish keeps its tree, the others drop theirs and use it instead of failing."""
    root = tmp_path / "smic"
    with staged_tree(root) as late:
        (late / "whose").write_text("late")
        with staged_tree(root) as early:
            (early / "whose").write_text("early")
    assert (root / "whose").read_text() == "early" and (root / COMPLETE_MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smic"], "no staging folder is left behind"
