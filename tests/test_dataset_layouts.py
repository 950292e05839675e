"""Loaders for the licensed layouts (SMIC-E, CASME II, SAMM, the MEGC2019 composite), run
on built-in trees of real faces written in each layout, and their reports on the
quirks and mistakes real annotation files have."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest
from hydra import compose, initialize_config_dir

from mer.common.config import CONFIG_DIR
from mer.datasets.workbook import read_table
from mer.datasets.casme2 import index_casme2
from mer.datasets.composite import MEGC2019_LABELS, index_composite
from mer.synthetic.generator import STILL, GeneratorSettings, clip_plan
from mer.synthetic.layout_writers import SAMM_PREAMBLE, generate_layout, write_annotation
from mer.datasets.samm import index_samm
from mer.datasets.smic_e import index_smic_e
from mer.data.index import index_dataset
from mer.common.errors import MerError
from mer.preprocess.frames import frame_number

SETTINGS = GeneratorSettings(subjects=2, clips_per_subject=3, min_frames=10, max_frames=12, seed=5)
# Still material: the SMIC-E test checks that the annotated interval is where the face
# moves, so nothing else may move.
SMIC_E_SETTINGS = GeneratorSettings(subjects=2, clips_per_subject=3, min_frames=8, max_frames=10, seed=6, **STILL)
CASME2_XLSX = "CASME2-coding-20140508.xlsx"
SAMM_XLSX = "SAMM_Micro_FACS_Codes_v2.xlsx"
SMIC_E_XLSX = "SMIC-HS-E_annotation.xlsx"
SAMM_ALL = ("anger", "contempt", "disgust", "happiness", "surprise")


@pytest.fixture(scope="module")
def megc(tmp_path_factory) -> Path:
    """SMIC-HS, CASME II and SAMM, 6 clips each, as the composite's default roots."""
    return generate_layout("composite", tmp_path_factory.mktemp("layouts") / "megc", SETTINGS, progress=False)


@pytest.fixture(scope="module")
def smic_e(tmp_path_factory) -> Path:
    return generate_layout("smic_e", tmp_path_factory.mktemp("layouts") / "smic_e", SMIC_E_SETTINGS, progress=False)


def sheet(path: Path) -> list[dict]:
    """Rows of a workbook read plainly with openpyxl: the loaders' expectations, found
    without the loaders' own reader."""
    values = list(openpyxl.load_workbook(path).active.iter_rows(values_only=True))
    header = next(i for i, row in enumerate(values) if row[0] == "Subject")
    return [dict(zip(values[header], row)) for row in values[header + 1:]]


def rewrite(source: Path, target: Path, edit=lambda rows: rows, drop: str | None = None, preamble=()) -> Path:
    """A copy of an annotation workbook with rows edited or a column dropped."""
    table = read_table(source, ["Subject", "Filename"])
    rows = edit([dict(cells) for _, cells in table.rows])
    return write_annotation(target, [c for c in table.columns if c != drop], rows, preamble)


def by_reason(skipped, text):
    return [entry for entry in skipped if text in entry[1]]


def test_casme2_clips_onsets_and_apexes_match_the_annotation(megc):
    records, skipped = index_casme2(megc / "CASME2")
    rows = sheet(megc / "CASME2" / CASME2_XLSX)
    assert len(records) == len(rows) == 6
    by_id = {r.clip_id: r for r in records}
    assert any(row["ApexFrame"] == "/" for row in rows), "the generator writes CASME II's '/' apexes"
    for row in rows:
        record = by_id[f"sub{row['Subject']}_{row['Filename']}"]
        assert (record.subject, record.label, record.source) == (f"sub{row['Subject']}", row["Estimated Emotion"], "casme2")
        assert record.path.parent.name == f"sub{row['Subject']}" and record.path.name == row["Filename"]
        # Frame files are numbered absolutely; onset/apex are indices from the clip's first frame.
        assert record.onset == 0 and frame_number(record.frames[record.onset]) == row["OnsetFrame"]
        assert frame_number(record.frames[-1]) == row["OffsetFrame"]
        if row["ApexFrame"] == "/":
            assert record.apex is None
            assert by_reason(skipped, "ApexFrame is '/'")[0][0] == str(record.path)
        else:
            assert frame_number(record.frames[record.apex]) == row["ApexFrame"] and record.apex > 0
    assert len(skipped) == sum(row["ApexFrame"] == "/" for row in rows)
    assert cv2.imread(str(records[0].frames[0])).shape == (480, 640, 3)


def test_samm_header_below_the_preamble_is_found(megc):
    workbook = openpyxl.load_workbook(megc / "SAMM" / SAMM_XLSX).active
    assert workbook.cell(14, 1).value == "Subject" and workbook.cell(14, 10).value == "Estimated Emotion"
    records, skipped = index_samm(megc / "SAMM", SAMM_ALL)
    assert skipped == []
    rows = sheet(megc / "SAMM" / SAMM_XLSX)
    by_id = {r.clip_id: r for r in records}
    assert sorted(by_id) == sorted(row["Filename"] for row in rows)
    assert {r.subject for r in records} == {"006", "007"}
    for row in rows:
        record = by_id[row["Filename"]]
        assert (record.subject, record.label) == (row["Subject"], row["Estimated Emotion"].lower())
        assert frame_number(record.frames[record.onset]) == row["Onset Frame"]
        assert frame_number(record.frames[record.apex]) == row["Apex Frame"]
        assert record.frames[0].name == f"{row['Subject']}_{row['Onset Frame']:05d}.jpg"
    assert cv2.imread(str(records[0].frames[0]), cv2.IMREAD_UNCHANGED).ndim == 2, "SAMM frames are greyscale"


def test_smic_e_onset_counts_from_first_frame_and_apex_is_the_interval_centre(smic_e):
    records, skipped = index_smic_e(smic_e)
    assert skipped == []
    rows = sheet(smic_e / SMIC_E_XLSX)
    by_id = {r.clip_id: r for r in records}
    assert sorted(by_id) == sorted(row["Filename"] for row in rows)
    for row in rows:
        record = by_id[row["Filename"]]
        assert (record.subject, record.label) == (f"s{row['Subject']}", row["Emotion"])
        assert record.path.parent.name == f"s{row['Subject']:02d}"
        assert len(record.frames) == row["LastF"] - row["FirstF"] + 1
        assert record.onset == row["OnsetF"] - row["FirstF"] > 0
        assert frame_number(record.frames[record.onset]) == row["OnsetF"]
        assert record.apex == record.onset + (row["OffsetF"] - row["OnsetF"] + 1) // 2
    # The long video is still before onset and after offset; the movement peaks at the apex.
    for record in records:
        first, apex, last = (cv2.imread(str(record.frames[i]), cv2.IMREAD_GRAYSCALE).astype(float) for i in (0, record.apex, -1))
        assert (np.abs(apex - first) > 25).mean() > 2 * (np.abs(last - first) > 25).mean()


def test_composite_maps_emotions_to_three_classes_and_prefixes_subjects(megc):
    assert MEGC2019_LABELS == {"repression": "negative", "anger": "negative", "contempt": "negative", "disgust": "negative",
                               "fear": "negative", "sadness": "negative", "happiness": "positive", "surprise": "surprise"}
    records, skipped = index_composite(megc)
    assert {r.label for r in records} == {"negative", "positive", "surprise"}
    by_source = {name: [r for r in records if r.source == name] for name in ("smic", "casme2", "samm")}
    assert all(len(part) == 6 for part in by_source.values()) and len(records) == 18
    for name, part in by_source.items():
        assert all(r.subject.startswith(f"{name}_") and r.clip_id.startswith(f"{name}_") for r in part)
    subjects = [{r.subject for r in part} for part in by_source.values()]
    assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
    assert len({r.clip_id for r in records}) == 18
    emotions = {f"casme2_sub{row['Subject']}_{row['Filename']}": row["Estimated Emotion"] for row in sheet(megc / "CASME2" / CASME2_XLSX)}
    emotions |= {f"samm_{row['Filename']}": row["Estimated Emotion"] for row in sheet(megc / "SAMM" / SAMM_XLSX)}
    for record in by_source["casme2"] + by_source["samm"]:
        assert record.label == MEGC2019_LABELS[emotions[record.clip_id].lower()]
    # Each dataset's labels are the motions the generator rendered for it.
    for k, part in enumerate(by_source.values()):
        plan = clip_plan(replace(SETTINGS, seed=SETTINGS.seed + k))
        assert sorted(r.label for r in part) == sorted(label for _, label in plan)
    assert len(skipped) == 1 and "ApexFrame" in skipped[0][1]


def test_composite_skips_others_and_takes_each_datasets_annotation(megc, tmp_path):
    def others_and_fear(rows):
        rows[0]["Estimated Emotion"], rows[1]["Estimated Emotion"] = "others", "fear"
        return rows

    edited = rewrite(megc / "CASME2" / CASME2_XLSX, tmp_path / "casme2.xlsx", others_and_fear)
    records, skipped = index_composite(megc, roots={"casme2": "CASME2", "samm": None}, annotations={"casme2": str(edited)})
    assert {r.source for r in records} == {"casme2"} and len(records) == 5
    assert by_reason(skipped, "emotion 'others'") and "row 2" in by_reason(skipped, "emotion 'others'")[0][0]
    fear = sheet(edited)[1]
    assert next(r for r in records if r.clip_id == f"casme2_sub{fear['Subject']}_{fear['Filename']}").label == "negative"
    with pytest.raises(MerError, match="data.roots.samm"):
        index_composite(megc, roots={"samm": "nowhere"})
    with pytest.raises(MerError, match="unknown datasets"):
        index_composite(megc, roots={"casme3": "CASME3"})


def test_a_missing_column_is_fatal_and_named(megc, tmp_path):
    cases = [
        (index_casme2, megc / "CASME2", CASME2_XLSX, "ApexFrame", ()),
        (index_samm, megc / "SAMM", SAMM_XLSX, "Estimated Emotion", SAMM_PREAMBLE),
    ]
    for indexer, root, name, column, preamble in cases:
        broken = rewrite(root / name, tmp_path / name, drop=column, preamble=preamble)
        with pytest.raises(MerError, match=f"column '{column}' is missing") as error:
            indexer(root, annotation=broken)
        assert str(broken) in str(error.value)
    (tmp_path / "not.xlsx").write_text("Subject,Filename\n")
    with pytest.raises(MerError, match="not a readable .xlsx"):
        index_casme2(megc / "CASME2", annotation=tmp_path / "not.xlsx")


def test_bad_rows_are_reported_and_the_rest_is_kept(megc, tmp_path):
    def break_rows(rows):
        rows[0]["Estimated Emotion"] = "others"
        rows[1]["Filename"] = "EP99_99f"
        rows[2]["Filename"] = rows[2]["Filename"].upper()
        rows[3]["ApexFrame"] = "/"
        rows[4]["Subject"] = "09"
        rows[5]["OnsetFrame"] = 99_999
        return rows

    edited = rewrite(megc / "CASME2" / CASME2_XLSX, tmp_path / "edited.xlsx", break_rows)
    rows = sheet(edited)
    records, skipped = index_casme2(megc / "CASME2", ("happiness", "disgust", "repression", "surprise"), annotation=edited)
    assert len(records) == 3
    assert "row 2" in by_reason(skipped, "emotion 'others' is not one of data.classes")[0][0]
    assert "EP99_99f" in by_reason(skipped, "does not exist")[0][1]
    assert "no folder for subject 9" in by_reason(skipped, "subject 9")[0][1]
    def record_of(row):
        return next(r for r in records if r.path.name.lower() == row["Filename"].lower() and r.subject == f"sub{row['Subject']}")

    assert record_of(rows[2]).path.name != rows[2]["Filename"] and by_reason(skipped, "differs in case")
    no_apex = record_of(rows[3])
    assert no_apex.apex is None and by_reason(skipped, "ApexFrame is '/'")
    late = record_of(rows[5])
    assert late.onset is None and late.apex is not None and by_reason(skipped, "OnsetFrame 99999 is outside")


def test_frame_gaps_are_reported_and_indices_follow_the_frame_numbers(megc, tmp_path):
    tree = shutil.copytree(megc / "CASME2", tmp_path / "CASME2")
    rows = [row for row in sheet(tree / CASME2_XLSX) if row["ApexFrame"] != "/"]
    folder = lambda row: tree / "CASME2_RAW_selected" / f"sub{row['Subject']}" / row["Filename"]
    (folder(rows[0]) / f"img{rows[0]['OnsetFrame'] + 2}.jpg").unlink()
    (folder(rows[1]) / f"img{rows[1]['ApexFrame']}.jpg").unlink()
    records, skipped = index_casme2(tree)
    assert len(records) == 6
    gapped = next(r for r in records if r.path == folder(rows[0]))
    assert frame_number(gapped.frames[gapped.apex]) == rows[0]["ApexFrame"]
    assert any(w == str(folder(rows[0])) and "jump" in why for w, why in skipped)
    hole = next(r for r in records if r.path == folder(rows[1]))
    assert frame_number(hole.frames[hole.apex]) == rows[1]["ApexFrame"] + 1
    assert any(w == str(folder(rows[1])) and "has no frame file" in why for w, why in skipped)


def test_smic_e_missing_videos_and_renumbered_annotations(smic_e, tmp_path):
    def quirks(rows):
        missing = dict(rows[0], Filename="s1_ne_09")  # listed in the annotation, absent on disk
        renumbered = rows[1]
        for column in ("OnsetF", "OffsetF", "FirstF", "LastF"):
            renumbered[column] += 100
        rows[2]["OffsetF"] = rows[2]["OnsetF"] - 1
        return [*rows, missing]

    edited = rewrite(smic_e / SMIC_E_XLSX, tmp_path / "smic_e.xlsx", quirks)
    rows = sheet(edited)
    records, skipped = index_smic_e(smic_e, annotation=edited)
    assert len(records) == 5
    assert "s1_ne_09" in by_reason(skipped, "does not exist")[0][0]
    assert by_reason(skipped, "comes before OnsetF")
    renumbered = next(r for r in records if r.clip_id == rows[1]["Filename"])
    assert renumbered.onset == rows[1]["OnsetF"] - rows[1]["FirstF"] and by_reason(skipped, "FirstF")


def test_fatal_layout_problems_name_the_path(tmp_path, megc):
    with pytest.raises(MerError, match="does not exist"):
        index_casme2(tmp_path / "missing")
    with pytest.raises(MerError, match="holds no CASME2_RAW_selected"):
        index_casme2(tmp_path)
    tree = shutil.copytree(megc / "SAMM" / "SAMM", tmp_path / "SAMM")
    with pytest.raises(MerError, match=f"{SAMM_XLSX} not found.*data.annotation"):
        index_samm(tree)
    with pytest.raises(MerError, match="data.annotation=.*does not exist"):
        index_samm(megc / "SAMM", annotation="nope.xlsx")


def test_yaml_configs_pass_their_keys_to_the_indexers(megc, smic_e, tmp_path):
    def records(*overrides):
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"paths.root_dir={tmp_path}", *overrides])
        return index_dataset(cfg.data, progress=False)

    assert len(records("data=casme2", f"data.root={megc / 'CASME2'}")[0]) == 6
    assert len(records("data=smic_e", f"data.root={smic_e}")[0]) == 6
    samm, skipped = records("data=samm", f"data.root={megc / 'SAMM'}")
    assert {r.label for r in samm} <= {"anger", "contempt", "happiness", "surprise"}
    assert len(samm) + len(by_reason(skipped, "emotion 'Disgust'")) == 6
    mapped, _ = records("data=samm", f"data.root={megc / 'SAMM'}", "data.label_map={disgust: other}")
    assert len(mapped) == 6
    composite, _ = records("data=megc_composite", f"data.root={megc}", "data.roots.samm=null")
    assert {r.source for r in composite} == {"smic", "casme2"}
    generated, _ = records("data=casme2", f"data.root={tmp_path / 'new'}",
                           "data.generator={subjects: 1, clips_per_subject: 2, min_frames: 10, max_frames: 10}")
    assert len(generated) == 2 and (tmp_path / "new" / CASME2_XLSX).is_file()
