"""Loaders for the spotting corpora (CAS(ME)^2, SAMM Long Videos, CAS(ME)^3 part A): on
built-in trees of real faces written in each layout, read back against the workbooks as
openpyxl and xlrd read them plainly, and on hand-made trees carrying the quirks of real
sheets (offset 0, apex -1, onset 0, offsets past the end, int vs padded subjects,
non-integer frame numbers, numbering across 999 -> 1000)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest
import xlrd

from mer.commands.cli import main
from mer.data.index import index_dataset
from mer.datasets.casme3 import index_casme3
from mer.datasets.casme_sq import index_casme_sq
from mer.datasets.records import MACRO, MICRO
from mer.datasets.samm_lv import index_samm_lv
from mer.common.errors import MerError
from mer.preprocess.frames import frame_number
from mer.spotting.evaluation import recordings_in
from mer.synthetic.generator import STILL, GeneratorSettings
from mer.synthetic.layout_writers import SAMM_LV_COLUMNS, generate_layout, write_annotation, write_sheets

CLASSES = ("negative", "positive", "surprise")
LABELS = {"happy": "positive", "happiness": "positive", "disgust": "negative", "anger": "negative",
          "contempt": "negative"}
# Still heads, so the annotated intervals are where the faces move.
SMALL = dict(subjects=2, clips_per_subject=2, min_frames=6, max_frames=8, recording_frames=60, macro_frames=14,
             **STILL)


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("spotting_corpora")
    return {layout: generate_layout(layout, base / layout, GeneratorSettings(**SMALL, fps=fps, seed=seed),
                                    progress=False)
            for layout, fps, seed in (("casme_sq", 30, 1), ("samm_lv", 200, 2), ("casme3", 30, 3))}


def grey(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(float)


def moves_inside(record) -> bool:
    """The face at the apex differs from the onset's more than the recording's first and last frames do."""
    onset, apex = grey(record.frames[record.onset]), grey(record.frames[record.apex])
    first, last = grey(record.frames[0]), grey(record.frames[-1])
    return (np.abs(apex - onset) > 20).mean() > 2 * (np.abs(last - first) > 20).mean()


def test_casme_sq_reads_the_code_sheet_through_its_naming_rules(trees):
    root = trees["casme_sq"]
    book = openpyxl.load_workbook(root / "CAS(ME)^2code_final.xlsx")
    assert book.sheetnames == ["CASFEcode_final", "naming rule1", "naming rule2"]
    code = [row for row in book["CASFEcode_final"].iter_rows(values_only=True)]
    assert isinstance(code[0][2], int), "the code sheet has no header row"
    subjects = {row[2]: row[1] for row in book["naming rule1"].iter_rows(values_only=True)}
    videos = {row[1]: row[0] for row in book["naming rule2"].iter_rows(values_only=True)}
    records, notes = index_casme_sq(root, CLASSES, label_map=LABELS)
    assert len(records) == len(code) == 8
    for row, record in zip(code, records):
        subject, name = subjects[row[0]], row[1].split("_")[0]
        assert record.subject == subject and record.path.parent.name == subject
        assert record.path.name.startswith(f"{subject[1:]}_{videos[name]}")
        assert record.frames[0].name == "img001.jpg" and record.fps == 30
        # img numbers count from 1; indices from 0.
        assert frame_number(record.frames[record.onset]) == row[2] and record.onset == row[2] - 1
        offset = row[4] or row[3]
        assert frame_number(record.frames[record.offset]) == offset
        assert record.kind == {"micro-expression": MICRO, "macro-expression": MACRO}[row[7]]
        assert record.label == LABELS.get(row[6], row[6])
        assert moves_inside(record), record.clip_id
    zero = [row for row in code if row[4] == 0]
    assert zero, "the generator writes CAS(ME)^2's offset-0 rows"
    assert len([n for n in notes if "Offset 0 means 'use the apex'" in n[1] and " row " in n[0]]) == len(zero)


def test_samm_lv_finds_its_header_below_the_preamble_and_takes_micro_emotions_from_samm(trees):
    root = trees["samm_lv"]
    sheet = openpyxl.load_workbook(root / "SAMM_LongVideos_V2_Release.xlsx")["FACS_Movement_Only"]
    assert sheet.cell(10, 1).value == "Subject" and sheet.cell(10, 8).value == "Type"
    rows = [dict(zip(SAMM_LV_COLUMNS, r)) for r in sheet.iter_rows(min_row=11, values_only=True)]
    assert {type(r["Subject"]) for r in rows} == {int, str}, "subjects as numbers and as padded text"
    micro_sheet = openpyxl.load_workbook(root / "SAMM_Micro_FACS_Codes_v2.xlsx").active
    emotions = {r[1]: r[9] for r in micro_sheet.iter_rows(min_row=15, values_only=True)}
    records, notes = index_samm_lv(root, CLASSES, label_map=LABELS)
    kept = [r for r in rows if r["Onset"] != 0]
    assert len(records) == len(kept) == 8
    for row, record in zip(kept, records):
        assert record.subject == f"{int(row['Subject']):03d}" and record.path.name == "_".join(row["Filename"].split("_")[:2])
        assert record.frames[0].name == f"{record.path.name}_0001.jpg" and record.fps == 200
        assert frame_number(record.frames[record.onset]) == row["Onset"]
        assert frame_number(record.frames[record.offset]) == row["Offset"]
        assert record.kind == (MICRO if row["Type"] == "Micro - 1/2" else MACRO)
        # The long-video sheet names no emotion: micro ones come from SAMM's sheet, macro ones stay unlabelled.
        assert record.label == (LABELS.get(emotions[row["Filename"]].lower(), emotions[row["Filename"]].lower())
                                if record.kind == MICRO else "")
        if row["Apex"] == -1:
            assert record.apex == record.onset + (record.offset - record.onset) // 2
        assert moves_inside(record), record.clip_id
    assert cv2.imread(str(records[0].frames[0]), cv2.IMREAD_UNCHANGED).ndim == 2, "SAMM frames are greyscale"
    onset_zero = [n for n in notes if "Onset 0 comes before" in n[1]]
    assert len(onset_zero) == len(rows) - len(kept) and all(n[1].startswith("skipped:") for n in onset_zero)
    assert len([n for n in notes if "Apex -1" in n[1]]) == sum(r["Apex"] == -1 for r in kept) > 0


def test_casme3_reads_the_xls_and_unpadded_frames_from_zero(trees):
    root = trees["casme3"]
    book = xlrd.open_workbook(str(root / "CAS(ME)3_part_A_v2.xls")).sheet_by_index(0)
    rows = [book.row_values(r) for r in range(1, book.nrows)]
    records, notes = index_casme3(root, CLASSES, label_map=LABELS)
    assert notes == [] and len(records) == len(rows) == 8
    for row, record in zip(rows, records):
        assert record.subject == row[0] and record.path.parent.name == row[1] and record.path.name == "color"
        assert record.recording == f"{row[0]}_{row[1]}" and record.frames[0].name == "0.jpg"
        assert (record.onset, record.apex, record.offset) == (row[2], row[3], row[4])
        assert record.kind == (MICRO if row[6] == "Micro-expression" else MACRO)
        assert bool(record.label) == (record.kind == MICRO), "emotions come from the ME label sheet, micro only"
        assert moves_inside(record), record.clip_id
    assert (records[0].path.parent / "depth").is_dir()
    # Recordings group intervals by their frame folder and keep the corpus's rate and names.
    recordings = recordings_in(index_config(root, "casme3"))
    assert sorted(r.name for r in recordings) == sorted({f"{row[0]}_{row[1]}" for row in rows})
    assert all(r.fps == 30 and {t.kind for t in r.truth} == {MICRO, MACRO} for r in recordings)


def index_config(root: Path, layout: str):
    from omegaconf import OmegaConf

    return OmegaConf.create({"name": layout, "layout": layout, "root": str(root), "classes": list(CLASSES),
                             "label_map": LABELS, "generator": None})


def test_each_config_reads_its_layout_and_a_builtin_config_writes_it_first(trees, tmp_path, make_cfg):
    for layout, root in trees.items():
        records, _ = index_dataset(index_config(root, layout), progress=False)
        assert {r.source for r in records} == {layout} and {r.kind for r in records} == {MICRO, MACRO}
    cfg = make_cfg("data=builtin_casme3", f"data.root={tmp_path / 'casme3'}", "data.generator.subjects=1",
                    "data.generator.recording_frames=120", "data.generator.macro_frames=20",
                    "data.generator.head_turn_frames=20")
    records, _ = index_dataset(cfg.data, progress=False)
    assert len(records) == 2 and {r.kind for r in records} == {MICRO, MACRO} and records[0].fps == 30
    assert len(records[0].frames) == 120


def test_mer_generate_writes_a_recording_layout_from_its_builtin_config(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "samm_lv"), "--layout", "samm_lv", "--subjects", "1", "--max-frames",
                 "40", "--recording-frames", "400", "--macro-frames", "60", "--head-turn-frames", "60"]) == 0
    out = capsys.readouterr().out
    # The rest comes from conf/data/builtin_samm_lv.yaml: 200 fps, its micro-expressions' shortest length.
    assert "fps=200" in out and "min_frames=30" in out and "max_frames=40" in out
    records, _ = index_samm_lv(tmp_path / "samm_lv", CLASSES, label_map=LABELS)
    assert len(records[0].frames) == 400 and len(records) == 2


def blank_frames(folder: Path, names) -> None:
    folder.mkdir(parents=True)
    for name in names:
        cv2.imwrite(str(folder / name), np.zeros((8, 8), np.uint8))


def test_casme_sq_quirks_are_handled_or_reported_by_row(tmp_path):
    """Numbering across 999 -> 1000, offset 0, an offset past the end, a non-integer frame,
    codes re-saved as numbers, and rows naming no subject, video or type."""
    blank_frames(tmp_path / "rawpic" / "s15" / "15_0101disgustingteeth", [f"img{n:03d}.jpg" for n in range(995, 1006)])
    code = [[1, "disgust1_1", 998, 1000, 1002, 4, "disgust", "micro-expression", "disgust"],
            [1, "disgust1_2", 996, 999, 0, "4+7", "disgust", "macro-expression", "disgust"],
            [1, "disgust1_3", 1001.6, 1003, 1100, 4, "others", "macro-expression", "others"],
            [2, "disgust1_4", 996, 997, 998, 4, "disgust", "micro-expression", ""],
            [1, "anger9_1", 996, 997, 998, 4, "anger", "micro-expression", ""],
            [1, "disgust1_5", 996, 997, 998, 4, "disgust", "blink", ""]]
    write_sheets(tmp_path / "CAS(ME)^2code_final.xlsx", {"CASFEcode_final": code, "naming rule1": [[15, "s15", 1]],
                                                         "naming rule2": [[101, "disgust1"]]})
    records, notes = index_casme_sq(tmp_path, ("disgust",))
    assert [(r.onset, r.apex, r.offset, r.kind, r.label) for r in records] == [
        (3, 5, 7, MICRO, "disgust"), (1, 4, 4, MACRO, "disgust"), (7, 8, 10, MACRO, "")]
    assert [frame_number(records[0].frames[i]) for i in (3, 4, 5, 6)] == [998, 999, 1000, 1001]

    def note(row):
        return [reason for where, reason in notes if f"row {row} " in where]

    assert note(2) == ["kept: Offset 0 means 'use the apex': offset = Apex 999"]
    assert note(3) == ["kept: Onset 1001.6 is not a whole frame: rounded to 1002",
                       "kept: Offset 1100 is past the recording's last frame 1005: cut there"]
    assert "is not in the 'naming rule1' sheet" in note(4)[0] and "is not in the 'naming rule2' sheet" in note(5)[0]
    assert "type 'blink' is neither micro" in note(6)[0]
    with pytest.raises(MerError, match=r"no usable CAS\(ME\)\^2 intervals .*row 1"):
        write_sheets(tmp_path / "bad.xlsx", {"CASFEcode_final": code[3:], "naming rule1": [[15, "s15", 1]],
                                             "naming rule2": [["0101", "disgust1"]]})
        index_casme_sq(tmp_path, ("disgust",), annotation="bad.xlsx")


def test_samm_lv_quirks_are_handled_or_reported_by_row(tmp_path):
    blank_frames(tmp_path / "SAMM_longvideos" / "006_1", [f"006_1_{n:04d}.jpg" for n in range(1, 21)])
    rows = [{"Subject": "006", "Filename": "006_1_1", "Onset": 3, "Apex": -1, "Offset": 9, "Type": "Micro - 1/2"},
            {"Subject": 6, "Filename": "006_1_2", "Onset": 0, "Apex": -1, "Offset": 20, "Type": "Macro"},
            {"Subject": 6, "Filename": "006_1_3", "Onset": 12, "Apex": 15, "Offset": 40, "Type": "Macro"},
            {"Subject": 7, "Filename": "007_1_1", "Onset": 3, "Apex": 4, "Offset": 5, "Type": "Macro"},
            {"Subject": 6, "Filename": "006_1_4", "Onset": 9, "Apex": 8, "Offset": 4, "Type": "Macro"}]
    # V1 and V3 side by side: the highest version is read.
    write_annotation(tmp_path / "SAMM_LongVideos_V1_Release.xlsx", SAMM_LV_COLUMNS, rows[:1], [""] * 9,
                     sheet_name="FACS_Movement_Only")
    write_annotation(tmp_path / "SAMM_LongVideos_V3_Release.xlsx", SAMM_LV_COLUMNS, rows, [""] * 9,
                     sheet_name="FACS_Movement_Only")
    records, notes = index_samm_lv(tmp_path, CLASSES)
    assert [(r.subject, r.onset, r.apex, r.offset, r.kind) for r in records] == [
        ("006", 2, 5, 8, MICRO), ("006", 11, 14, 19, MACRO)]
    reasons = {where.split(" row ")[1].split(" ")[0]: reason for where, reason in notes}
    assert reasons["11"].startswith("kept: Apex -1 is not inside")
    assert reasons["12"].startswith("skipped: Onset 0 comes before the recording's first frame 1")
    assert reasons["13"] == "kept: Offset 40 is past the recording's last frame 20: cut there"
    assert reasons["14"].startswith("skipped: no recording folder") and "007_1" in reasons["14"]
    assert reasons["15"].startswith("skipped: Offset 4 is no frame at or after Onset 9")
    with pytest.raises(MerError, match="data.emotions=.* does not exist"):
        index_samm_lv(tmp_path, CLASSES, emotions="missing.xlsx")
    with pytest.raises(MerError, match="no SAMM_LongVideos_V"):
        index_samm_lv(tmp_path / "SAMM_longvideos" / "..", CLASSES, annotation="nothing.xlsx")


def test_casme3_reads_an_xlsx_copy_and_names_a_missing_recording_by_row(tmp_path):
    blank_frames(tmp_path / "part_A" / "spNO.3" / "b" / "color", [f"{n}.jpg" for n in range(0, 12)])
    header = ["subject", "filename", "onset", "apex", "offset", "au", "type", "objective class"]
    write_sheets(tmp_path / "CAS(ME)3_part_A_v2.xlsx", {None: [
        header, ["spNO.3", "b", 0, 2, 5, "4", "Micro-expression", 3], ["spNO.3", "c", 0, 2, 5, "4", "Macro-expression", 3]]})
    records, notes = index_casme3(tmp_path, CLASSES)
    assert [(r.clip_id, r.onset, r.apex, r.offset, r.label) for r in records] == [("spNO.3_b#1", 0, 2, 5, "")]
    assert len(notes) == 1 and "row 3 (spNO.3/c)" in notes[0][0] and "no recording folder" in notes[0][1]
    with pytest.raises(MerError, match="holds no part_A/"):
        index_casme3(tmp_path / "part_A", CLASSES)


def test_spot_eval_scores_micro_and_macro_of_a_casme_sq_tree_at_its_own_rate(trees, checkpoint, tmp_path, capsys):
    """The corpus's rate comes from its loader (no fps given); the built-in model saw these
    faces, so the run says so (--allow-seen-subjects)."""
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["spot-eval", "--checkpoint", str(checkpoint), "--allow-seen-subjects", "data=builtin_casme_sq",
                 f"data.root={trees['casme_sq']}", "data.fps=null", "progress=false", f"paths.root_dir={tmp_path}",
                 f"logger.tracking_uri={store}", f"logger.artifact_location={tmp_path}/artifacts"]) == 0
    out = capsys.readouterr().out
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("mer-spotting").experiment_id])
    metrics = run.data.metrics
    code = list(openpyxl.load_workbook(trees["casme_sq"] / "CAS(ME)^2code_final.xlsx")["CASFEcode_final"]
                .iter_rows(values_only=True))
    for kind in (MICRO, MACRO):
        assert metrics[f"spot/{kind}/tp"] + metrics[f"spot/{kind}/fn"] == sum(r[7] == f"{kind}-expression" for r in code)
    assert metrics["videos"] == 4 and run.info.status == "FINISHED"
    predictions = {a.path for a in client.list_artifacts(run.info.run_id, "predictions")}
    document = json.loads(Path(client.download_artifacts(run.info.run_id, sorted(predictions)[0], str(tmp_path)))
                          .read_text())
    assert document["fps"] == 30 and {t["type"] for t in document["truth"]} == {MICRO, MACRO}
    assert "overall" in out and "STRS" in out
