"""A trained model ready for new videos: its network, its own preprocessing and input
scaling (both read from the checkpoint, never re-typed), and a classifier that turns
uint8 windows into class probabilities through PyTorch or onnxruntime."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mer.data.scaling import NetworkInput
from mer.common.errors import MerError
from mer.common.files import file_sha256, json_digest
from mer.preprocess.pipeline import PreprocessSettings

BACKENDS = ("torch", "onnx")


@dataclass
class TrainedModel:
    net: torch.nn.Module
    run_cfg: DictConfig
    classes: list[str]
    settings: PreprocessSettings
    network_input: NetworkInput  # the input scaling and data.input the network was trained with
    checkpoint: Path
    checkpoint_sha256: str
    run_id: str | None
    # The store given for the run; a checkpoint file's own run is looked up there first.
    tracking_uri: str

    @property
    def preprocess_sha256(self) -> str:
        return json_digest(self.settings.as_dict())

    def provenance(self) -> dict:
        """What a prediction needs to be traced back: the exact weights, preprocessing and code."""
        from mer.tracking.provenance import package_versions

        return {"checkpoint": str(self.checkpoint), "checkpoint_sha256": self.checkpoint_sha256,
                "run_id": self.run_id, "preprocess": self.settings.as_dict(),
                "preprocess_sha256": self.preprocess_sha256, "input_offset": self.network_input.offset,
                "input_scale": self.network_input.scale, "input": self.network_input.input, "versions": package_versions()}


def input_scaling_of(stored: dict, run_cfg: DictConfig, path: Path) -> tuple[float, float]:
    state = stored.get("ClipDataModule") or {}
    if "input_offset" in state:
        return float(state["input_offset"]), float(state["input_scale"])
    if OmegaConf.select(run_cfg, "data.input_scaling", default="unit") == "unit":
        return 0.0, 255.0
    raise MerError(f"{path} was trained with data.input_scaling=mean_max but predates checkpoints that keep its "
                   "numbers; give --run-id instead (its params fold.input_offset/fold.input_scale hold them)")


def load_trained(checkpoint: Path | None = None, run_id: str | None = None,
                 tracking_uri: str = "sqlite:///outputs/mlflow.db", download_dir: Path | None = None) -> TrainedModel:
    """From a checkpoint file, or the checkpoint an MLflow run logged (downloaded to
    `download_dir`, by default a folder of that run's under the system's temporary one)."""
    from mlflow.tracking import MlflowClient

    from mer.models.checkpoint_io import checkpoint_from_run, load_checkpoint

    if (checkpoint is None) == (run_id is None):
        raise MerError("give exactly one of --checkpoint FILE or --run-id ID")
    client = MlflowClient(tracking_uri) if run_id else None
    if run_id:
        # One folder per run, downloaded afresh each time: repeated calls do not pile up copies.
        folder = download_dir or Path(tempfile.gettempdir()) / "mer-checkpoints" / run_id
        folder.mkdir(parents=True, exist_ok=True)
        checkpoint = checkpoint_from_run(client, run_id, folder)
    checkpoint = Path(checkpoint)
    module, run_cfg, stored = load_checkpoint(checkpoint)
    try:
        offset, scale = input_scaling_of(stored, run_cfg, checkpoint)
    except MerError:
        if not run_id:
            raise
        params = client.get_run(run_id).data.params
        offset, scale = float(params["fold.input_offset"]), float(params["fold.input_scale"])
    network_input = NetworkInput(offset, scale, OmegaConf.select(run_cfg, "data.input", default="frames"))
    return TrainedModel(module.net.eval(), run_cfg, list(run_cfg.data.classes), PreprocessSettings.from_config(run_cfg.preprocess),
                        network_input, checkpoint, file_sha256(checkpoint), run_id or stored.get("mer_run_id"), tracking_uri)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class TorchClassifier:
    """Probabilities from the PyTorch network (its fastest path: the fused CPU kernels)."""

    name = "torch"

    def __init__(self, model: TrainedModel):
        self.net, self.network_input = model.net, model.network_input

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        """(N, depth, size, size) uint8 -> (N, classes) float64."""
        with torch.inference_mode():
            x = self.network_input(torch.from_numpy(np.ascontiguousarray(clips))[:, None])
            return softmax(self.net(x).double().numpy())


class OnnxClassifier:
    """Probabilities from onnxruntime, on a network exported (and checked) by `export_checked`."""

    name = "onnx"

    def __init__(self, path: Path, network_input: NetworkInput, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.network_input = network_input

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        x = self.network_input(torch.from_numpy(np.ascontiguousarray(clips))[:, None]).numpy()
        return softmax(self.session.run(["logits"], {"clips": x})[0].astype(np.float64))


@dataclass(frozen=True)
class OnnxCheck:
    path: Path
    max_abs_difference: float  # of class probabilities, ONNX vs PyTorch, on the check batch
    batch: int


def export_checked(model: TrainedModel, path: Path, check_batch: int = 8, seed: int = 0) -> OnnxCheck:
    """Export to ONNX (dynamic batch), then run the same random uint8 windows through both
    runtimes: the largest probability difference is printed and stored in the file's
    metadata with the checkpoint's hash, so a served model can be traced and trusted."""
    import onnx

    from mer.models.export import export_onnx

    settings = model.settings
    export_onnx(model.net, path, settings.depth, settings.size)
    clips = np.random.default_rng(seed).integers(0, 256, (check_batch, settings.depth, settings.size, settings.size),
                                                 dtype=np.uint8)
    difference = float(np.abs(OnnxClassifier(path, model.network_input)(clips)
                              - TorchClassifier(model)(clips)).max())
    stored = onnx.load(str(path))
    for key, value in {"mer.checkpoint_sha256": model.checkpoint_sha256, "mer.preprocess_sha256": model.preprocess_sha256,
                       "mer.preprocess": json.dumps(settings.as_dict(), sort_keys=True),
                       "mer.input_offset": repr(model.network_input.offset), "mer.input_scale": repr(model.network_input.scale),
                       "mer.input": model.network_input.input,
                       "mer.classes": json.dumps(model.classes),
                       "mer.max_abs_probability_difference": repr(difference)}.items():
        entry = stored.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(stored, str(path))
    return OnnxCheck(Path(path), difference, check_batch)


def onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def classifier_for(model: TrainedModel, backend: str, onnx_dir: Path) -> tuple[TorchClassifier | OnnxClassifier, dict]:
    """The classifier and what to record about it. ONNX files are kept per checkpoint hash in
    `onnx_dir`, exported and checked once."""
    if backend not in BACKENDS:
        raise MerError(f"backend={backend!r} is unknown; choose one of {list(BACKENDS)}")
    if backend == "torch":
        return TorchClassifier(model), {"backend": "torch", "impl": getattr(model.net, "impl", "stock")}
    path = Path(onnx_dir) / f"{model.checkpoint_sha256[:16]}.onnx"
    if not path.is_file() or onnx_metadata(path).get("mer.checkpoint_sha256") != model.checkpoint_sha256:
        # Exported beside, then renamed: a half-written file never passes for a checked one.
        partial = path.with_suffix(".partial.onnx")
        check = export_checked(model, partial)
        partial.replace(path)
        print(f"exported {path}: ONNX and PyTorch probabilities differ by at most {check.max_abs_difference:.2e}")
    import onnxruntime

    difference = float(onnx_metadata(path)["mer.max_abs_probability_difference"])
    return (OnnxClassifier(path, model.network_input),
            {"backend": "onnx", "onnx_file": str(path), "onnxruntime": onnxruntime.__version__,
             "onnx_max_abs_probability_difference": difference})
