"""A trained spotter: windows of long recordings labelled by the interval their centre lies
in (or `none`), sampled at a stated ratio from a seed; the 3D CNN trained on them by
`experiment=spotter` like any run (LOSO, selection on an inner split); `mer spot-eval`
and `mer predict` spotting with its 1 - P(none) where the checkpoint has the class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from mer.commands.cli import main as mer_main
from mer.common.config import compose_train
from mer.data.index import index_dataset
from mer.data.spot_windows import NONE, WindowSampling, spotting_windows
from mer.datasets.casme_sq import index_casme_sq
from mer.common.errors import MerError
from mer.spotting.intervals import SpottingSettings, spot
from mer.spotting.model import load_trained
from mer.spotting.windows import Window
from mer.commands.train import train
from helpers import runs_of

CLASSES = (NONE, "negative", "positive", "surprise")
LABELS = {"happy": "positive", "disgust": "negative", "anger": "negative"}
# Three people, one recording each, at 30 fps: the smallest tree a LOSO fold with an inner
# split of other subjects can be cut from.
TREE = ["data=builtin_casme_sq", "data.generator.subjects=3", "data.generator.recording_frames=160"]


@pytest.fixture(scope="module")
def spotter_run(tmp_path_factory, shared_dirs):
    """One LOSO fold of `experiment=spotter`, one epoch, on a fresh built-in CAS(ME)^2 tree."""
    tmp = tmp_path_factory.mktemp("spotter")
    store = f"sqlite:///{tmp}/mlflow.db"
    overrides = ["experiment=spotter", *TREE, f"paths.root_dir={tmp}", f"paths.output_dir={tmp}/out",
                 f"paths.cache_dir={shared_dirs['cache']}", f"logger.tracking_uri={store}",
                 f"logger.artifact_location={tmp}/artifacts", "data.preprocess_workers=1",
                 "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "protocol.fold=0",
                 "trainer.max_epochs=1"]
    cfg = compose_train(overrides)
    train(cfg, overrides)
    client = MlflowClient(store)
    (run,) = runs_of(client)
    return tmp, store, run, cfg


def test_windows_are_labelled_by_the_interval_their_centre_lies_in(spotter_run):
    tmp, _, _, cfg = spotter_run
    intervals, _ = index_casme_sq(Path(cfg.data.root), CLASSES, label_map=LABELS)
    sampling = WindowSampling(depth=10, stride=5, none_ratio=2.0, seed=0)
    windows = spotting_windows(intervals, CLASSES, sampling)
    for window in windows:
        centre = window.apex
        inside = [r for r in intervals if r.path == window.path and r.onset <= centre <= r.offset]
        assert window.label == (inside[0].label if inside else NONE)
        assert int(window.clip_id.rsplit("@", 1)[1]) == centre - 5 and window.onset is None
    for path in {r.path for r in intervals}:
        labels = [w.label for w in windows if w.path == path]
        marked = [(r.onset, r.offset) for r in intervals if r.path == path]
        free = sum(not any(a <= start + 5 <= b for a, b in marked) for start in range(0, 160 - 10 + 1, 5))
        expressions = sum(label != NONE for label in labels)
        # `none_ratio` per expression window, as many as there are where a recording has fewer
        assert labels.count(NONE) == min(round(2.0 * expressions), free) and expressions > 0
    # The draw is the seed's: made again, the same windows; another seed, others.
    assert [w.clip_id for w in spotting_windows(intervals, CLASSES, sampling)] == [w.clip_id for w in windows]
    other = spotting_windows(intervals, CLASSES, WindowSampling(depth=10, seed=1))
    assert {w.clip_id for w in other} != {w.clip_id for w in windows}
    # The run's own config makes the same set: whom it trained on is read back from it.
    records, _ = index_dataset(cfg.data, progress=False)
    assert [r.clip_id for r in records] == [w.clip_id for w in windows]


def test_a_spotter_needs_none_first_and_leaves_unlabelled_intervals_out(spotter_run):
    _, _, _, cfg = spotter_run
    intervals, _ = index_casme_sq(Path(cfg.data.root), CLASSES, label_map=LABELS)
    with pytest.raises(MerError, match="start with 'none'"):
        spotting_windows(intervals, CLASSES[1:], WindowSampling(depth=10))
    # Emotions none of the classes name leave their windows neither `none` nor an emotion: out.
    classes = (NONE, "calm")
    unlabelled, _ = index_casme_sq(Path(cfg.data.root), classes)
    assert {r.label for r in unlabelled} == {""}
    with pytest.raises(MerError, match="no window lies in an annotated interval"):
        spotting_windows(unlabelled, classes, WindowSampling(depth=10))
    some = spotting_windows(index_casme_sq(Path(cfg.data.root), (NONE, "surprise"))[0], (NONE, "surprise"),
                            WindowSampling(depth=10))
    inside = [(r.path, r.onset, r.offset) for r in intervals if r.label != "surprise"]
    assert not any(p == w.path and a <= w.apex <= b for w in some for p, a, b in inside)


def test_the_spotter_is_a_tracked_loso_run_with_the_none_class(spotter_run):
    _, store, run, _ = spotter_run
    params = run.data.params
    assert run.info.status == "FINISHED"
    assert (params["windows.none_ratio"], params["windows.stride"], params["windows.seed"]) == ("2.0", "5", "0")
    assert params["protocol"] == "loso" and run.data.tags["mer.selection"].startswith("best val/")
    assert int(params["fold.n_val"]) > 0 and run.data.tags["mer.fold"] == "subject=s15"
    assert load_trained(run_id=run.info.run_id, tracking_uri=store).classes == list(CLASSES)


def model_windows(n: int, expression: range, label: int) -> list[Window]:
    found = []
    for i in range(n):
        p = np.full(4, 0.02)
        if i in expression:
            p[label] = 0.9
        else:
            p[0] = 0.94
        found.append(Window(5 * i, 5 * i + 9, True, motion=9.0 if i % 7 == 0 else 1.0, probabilities=p / p.sum()))
    return found


def test_a_spotters_score_is_one_minus_p_none_and_its_label_an_emotion():
    found = model_windows(60, range(20, 24), label=2)
    spotted = spot(found, CLASSES, SpottingSettings(), 5, 310, fps=30.0)
    assert spotted.threshold == 0.5
    assert [(i.onset, i.offset, i.label) for i in spotted.intervals] == [(102, 122, "positive")]
    # The motion rule on the same windows reports the motion spikes instead.
    rule = spot(found, CLASSES, SpottingSettings(method="rule"), 5, 310, fps=30.0)
    assert [i.onset for i in rule.intervals] == [5 * i + 2 for i in range(0, 60, 7)]
    assert all(i.label != NONE for i in rule.intervals)
    with pytest.raises(MerError, match="spotting.method=model needs a spotter"):
        spot(found, CLASSES[1:], SpottingSettings(method="model"), 5, 310, fps=30.0)


def test_spot_eval_spots_with_the_spotter_on_the_subject_it_held_out(spotter_run, shared_dirs, capsys):
    tmp, store, run, _ = spotter_run
    assert mer_main(["spot-eval", "--run-id", run.info.run_id, *TREE, f"paths.root_dir={tmp}", "progress=false",
                     f"paths.cache_dir={shared_dirs['cache']}", f"logger.tracking_uri={store}",
                     f"logger.artifact_location={tmp}/artifacts"]) == 0
    out = capsys.readouterr().out
    assert "left out 2 of 3 recordings" in out
    client = MlflowClient(store)
    (evaluation,) = client.search_runs([client.get_experiment_by_name("mer-spotting").experiment_id])
    assert evaluation.data.params["spotting.method"] == "auto" and evaluation.data.metrics["videos"] == 1
    (name,) = [a.path for a in client.list_artifacts(evaluation.info.run_id, "predictions")]
    document = json.loads(Path(client.download_artifacts(evaluation.info.run_id, name, str(tmp))).read_text())
    assert document["threshold"] == 0.5 and document["classes"][0] == NONE
    assert all(i["label"] != NONE for i in document["intervals"])
