"""Clip folders and annotation rows as users' copies of the datasets really hold them:
stray images, macOS hidden files, rows kept with a workaround next to rows skipped."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mer.common.config import CONFIG_DIR
from mer.data.prepare import prepare_data
from mer.datasets.smic_hs import index_smic_hs
from mer.datasets.workbook import read_table
from mer.synthetic.generator import GeneratorSettings
from mer.synthetic.layout_writers import generate_layout, write_annotation

SMALL = GeneratorSettings(subjects=2, clips_per_subject=2, min_frames=10, max_frames=10)
CASME2_XLSX = "CASME2-coding-20140508.xlsx"


@pytest.fixture(scope="module")
def smic_hs(tmp_path_factory) -> Path:
    return generate_layout("smic_hs", tmp_path_factory.mktemp("layouts") / "smic", SMALL, progress=False)


@pytest.fixture(scope="module")
def casme2(tmp_path_factory) -> Path:
    return generate_layout("casme2", tmp_path_factory.mktemp("layouts") / "casme2", SMALL, progress=False)


def first_clip(tree: Path) -> Path:
    return sorted((tree / "HS").glob("s*/micro/*/*"))[0]


def test_an_image_without_a_frame_number_is_left_out_with_a_warning(smic_hs, tmp_path, caplog):
    tree = shutil.copytree(smic_hs, tmp_path / "smic")
    clip = first_clip(tree)
    frames = sorted(clip.iterdir())
    cover = clip / "cover.jpg"
    shutil.copyfile(frames[0], cover)
    with caplog.at_level(logging.WARNING):
        records, skipped = index_smic_hs(tree)
    assert len(records) == 4 and skipped == []
    record = next(r for r in records if r.path == clip)
    assert sorted(record.frames) == frames
    assert [m for m in caplog.messages if "cover.jpg" in m] == [
        f"{cover}: image file name has no frame number at its end; left out of the clip"]


def test_hidden_files_in_a_clip_folder_are_not_frames(smic_hs, tmp_path, caplog):
    tree = shutil.copytree(smic_hs, tmp_path / "smic")
    clip = first_clip(tree)
    frames = sorted(clip.iterdir())
    # AppleDouble files carry the image's name and suffix but hold Finder metadata, not pixels.
    for frame in frames:
        (clip / f"._{frame.name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    (clip / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    with caplog.at_level(logging.WARNING):
        records, skipped = index_smic_hs(tree)
    assert len(records) == 4 and skipped == []
    record = next(r for r in records if r.path == clip)
    assert list(record.frames) == frames
    assert len(record.open().read(range(len(frames)))) == 10
    assert caplog.messages == []


def test_rows_report_kept_or_skipped_with_the_workbook_path(casme2, tmp_path, caplog):
    tree = shutil.copytree(casme2, tmp_path / "CASME2")
    workbook = tree / CASME2_XLSX
    table = read_table(workbook, ["Subject", "Filename"])
    rows = [dict(cells) for _, cells in table.rows]
    rows[1]["Estimated Emotion"] = "sadness"
    rows[2]["ApexFrame"] = "/"
    write_annotation(workbook, table.columns, rows)
    clip = tree / "CASME2_RAW_selected" / f"sub{rows[2]['Subject']}" / rows[2]["Filename"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache",
                                          "data=casme2", f"data.root={tree}", "data.preprocess_workers=1",
                                          "protocol=loso"])
    with caplog.at_level(logging.WARNING, logger="mer.data.prepare"):
        data = prepare_data(cfg, progress=False)
    assert len(data.records) == 3
    reports = [r.getMessage() for r in caplog.records if r.name == "mer.data.prepare"]
    assert reports == [
        f"{workbook} row 3 ({rows[1]['Filename']}): skipped: emotion 'sadness' is not one of data.classes "
        "['happiness', 'disgust', 'repression', 'surprise', 'others']",
        f"{clip}: kept: ApexFrame is '/', not a frame number: left unset",
    ]
