"""`experiment=microexpstcnn`: the published MicroExpSTCNN baseline, and its input scaling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mer.common.config import compose_train
from mer.data.datamodule import ClipDataModule
from mer.data.scaling import input_scaling
from mer.common.errors import MerError
from mer.commands.train import train
from helpers import runs_of


def test_the_preset_has_the_published_settings():
    cfg = compose_train(["experiment=microexpstcnn"])
    assert cfg.model._target_ == "mer.models.microexpstcnn.MicroExpSTCNN"
    assert (cfg.model.dropout, cfg.model.init, cfg.model.temporal_kernel) == (0.5, "keras", 15)
    assert cfg.optim._target_ == "torch.optim.SGD"
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.01, 0.0, 0.0)
    assert "nesterov" not in cfg.optim
    assert (cfg.data.batch_size, cfg.data.input_scaling) == (16, "mean_max")
    assert (cfg.preprocess.depth, cfg.preprocess.size) == (18, 64)
    assert (cfg.preprocess.layout, cfg.preprocess.eye_mask) == ("face", False)
    assert cfg.trainer.max_epochs == 100
    assert list(cfg.augment.transforms) == []
    assert not cfg.scheduler
    assert cfg.protocol.name == "holdout"


def test_sgd_is_keras_sgd():
    optim = compose_train(["optim=sgd"]).optim
    assert (optim.lr, optim.momentum) == (0.01, 0.0)


def test_the_preset_trains_on_numbers_from_its_training_clips(make_cfg):
    from mlflow.tracking import MlflowClient

    cfg = make_cfg("experiment=microexpstcnn", "debug=fast", "logger.run_name=baseline-preset")
    train(cfg, ["experiment=microexpstcnn"])
    client = MlflowClient(cfg.logger.tracking_uri)
    (run,) = runs_of(client, "attributes.run_name = 'baseline-preset'")
    # The training clips as the run's split file lists them, read from the cache folder it used.
    (split,) = Path(client.download_artifacts(run.info.run_id, "data")).glob("holdout-*.json")
    (fold,) = json.loads(split.read_text())["folds"]
    cache_dir = Path(run.data.tags["mer.cache_dir"])
    entries = [list(cache_dir.glob(f"*__{clip_id}__*.npz")) for clip_id in fold["train"]]
    assert all(len(found) == 1 for found in entries), entries
    pixels = np.concatenate([np.load(found)["clip"].ravel() for (found,) in entries]).astype(np.float64)
    # MicroExpSTCNN's `set -= mean(set); set /= max(set)`, over the training clips alone.
    centred = pixels - pixels.mean()
    expected = (pixels.mean(), centred.max())
    logged = (float(run.data.params["fold.input_offset"]), float(run.data.params["fold.input_scale"]))
    assert logged == pytest.approx(expected) and logged != (0.0, 255.0)


def test_every_dataset_defaults_to_unit_scaling():
    for data in ("builtin", "smic_hs", "casme2", "samm", "smic_e", "megc_composite"):
        assert compose_train([f"data={data}"]).data.input_scaling == "unit"
    assert compose_train(["experiment=paper"]).data.input_scaling == "unit"


def test_mean_max_numbers_come_from_the_clips_given():
    clips = np.array([[[0, 10]], [[20, 50]]], dtype=np.uint8)
    # mean 20; centred values -20, -10, 0, 30: max 30
    assert input_scaling(clips, "mean_max") == (20.0, 30.0)
    assert input_scaling(clips, "unit") == (0.0, 255.0)


def test_bad_scalings_are_refused():
    with pytest.raises(MerError, match="data.input_scaling must be one of unit, mean_max, got 'zscore'"):
        input_scaling(np.zeros((1, 2, 2), np.uint8), "zscore")
    with pytest.raises(MerError, match="data.input_scaling must be one of unit, mean_max"):
        module(scaling="zscore")
    with pytest.raises(MerError, match="not all one value"):
        input_scaling(np.full((2, 3, 3), 7, np.uint8), "mean_max")


def module(scaling: str) -> ClipDataModule:
    return ClipDataModule(None, [], ["a"], {"train": [], "val": [], "test": []}, scaling=scaling)


def batch(values) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(np.asarray(values, dtype=np.uint8)), torch.zeros(1, dtype=torch.long)


def test_unit_scaling_is_exactly_x_over_255():
    clips = np.arange(256, dtype=np.uint8).reshape(1, 1, 4, 8, 8)
    for scaled in (module("unit"), module("unit")):
        scaled.fit_scaling(clips[:, 0])
        out, _ = scaled.on_after_batch_transfer(batch(clips), 0)
        assert torch.equal(out, torch.as_tensor(clips).float() / 255)


def test_mean_max_uses_the_training_numbers_on_every_part():
    train_clips = np.array([[[0, 10]], [[20, 50]]], dtype=np.uint8)
    scaled = module("mean_max")
    scaled.fit_scaling(train_clips)
    train_out, _ = scaled.on_after_batch_transfer(batch(train_clips[:, None]), 0)
    assert train_out.mean().item() == pytest.approx(0.0)
    assert train_out.max().item() == 1.0
    # a held-out clip outside the training range is scaled by the same numbers, not its own
    heldout_out, _ = scaled.on_after_batch_transfer(batch([[[[80, 20]]]]), 0)
    assert torch.allclose(heldout_out, torch.tensor([[[[2.0, 0.0]]]]))
