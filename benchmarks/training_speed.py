"""Training and inference speed of MER3DCNN on this machine, against a Keras/TensorFlow-CPU
build of the same Table II model (the `peer` extra, installed by `make bench`).

Measured, batch 20 over an epoch of 131 clips of 10x128x128 (the paper's SMIC-HS training
part; every measurement trains on the same clips, real faces from a preprocessing cache
built once before the timings): the bare training step (forward + backward + Adam) for each `model.impl`; the full
Lightning `fit` loop (the project's module, datamodule, trainer, checkpoint and MLflow logger,
clips loaded from a real preprocessing cache); inference at batch 1 and 20; Keras `fit` and
`predict_on_batch`. Each measurement runs in its own process (clean peak memory, no warm
caches shared), the processes are interleaved over rounds because machines are noisy, and
figures are the median and best over rounds of each process's median epoch.

    python benchmarks/training_speed.py [--rounds 5] [--epochs 3] [--allocator auto|system|tcmalloc]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _ratios import ratio_text

CLIPS, BATCH, DEPTH, SIZE = 131, 20, 10, 128
LABELS = ("negative", "positive", "surprise")
CLASSES = len(LABELS)
TARGET_PEER_RATIO = {"step stock": 1.3, "step fused": 2.5}
TARGET_LOOP_OVERHEAD = 0.15


TRAINING_CLIPS = "training_clips.npz"


def synthetic_clips(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((CLIPS, 1, DEPTH, SIZE, SIZE), dtype=np.float32), rng.integers(0, CLASSES, CLIPS)


def training_clips(cache_dir: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The clips every measurement trains on: the Lightning run's 131 training clips from
    the benchmark's cache (real faces; the kernels' speed depends a little on the data), or
    random ones of the same shape where no cache was built (a worker run on its own)."""
    path = Path(cache_dir) / TRAINING_CLIPS
    if not cache_dir or not path.is_file():
        return synthetic_clips()
    with np.load(path) as saved:
        return saved["clips"], saved["labels"]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(call, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


# ---- workers: each prints one JSON line ---------------------------------------------------

def bench_model(impl: str, device: str):
    from mer.models.mer3dcnn import MER3DCNN

    return MER3DCNN(impl=impl, depth=DEPTH, size=SIZE, num_classes=CLASSES).to(device)


def torch_step(impl: str, epochs: int, device: str = "cpu", amp: bool = False, cache_dir: str = "") -> dict:
    import torch

    torch.manual_seed(0)
    model = bench_model(impl, device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = (torch.from_numpy(a).to(device) for a in training_clips(cache_dir))

    def epoch():
        for batch in torch.randperm(CLIPS).split(BATCH):
            optimizer.zero_grad()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
                loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    epoch()  # warm-up: kernel build/load, allocator, oneDNN / cuDNN algorithm choice
    result = {"epoch_s": timed(epoch, epochs), "peak_mib": peak_rss_mib()}
    if device == "cuda":
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def torch_inference(impl: str, epochs: int, device: str = "cpu", cache_dir: str = "") -> dict:
    import torch

    model = bench_model(impl, device).eval()
    x = torch.from_numpy(training_clips(cache_dir)[0][:BATCH]).to(device)

    def infer(batch):
        model(x[:batch])
        if device == "cuda":
            torch.cuda.synchronize()

    result = {}
    with torch.inference_mode():
        for batch, repeats in ((1, 20), (BATCH, 5)):
            infer(batch)
            result[f"batch{batch}_s"] = timed(lambda: infer(batch), repeats)
    return result | {"peak_mib": peak_rss_mib()}


def lightning_fit(cache_dir: str, epochs: int) -> dict:
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from pytorch_lightning.loggers import MLFlowLogger

    from mer.common.config import compose_train
    from mer.data.datamodule import ClipDataModule
    from mer.commands.train import build_module

    records, cache, fold = _bench_cache(Path(cache_dir))
    cfg = compose_train([f"paths.root_dir={cache_dir}", f"paths.output_dir={cache_dir}/run"])
    times: dict[str, list[float]] = {"train": [], "epoch": []}

    class EpochTimer(pl.Callback):
        """Train part: epoch start to validation start. Whole epoch: to the next epoch's
        start (Lightning validates, checkpoints and logs before it)."""

        start = None

        def _close_epoch(self):
            if self.start is not None:
                times["epoch"].append(time.perf_counter() - self.start)

        def on_train_epoch_start(self, trainer, module):
            self._close_epoch()
            self.start = time.perf_counter()

        def on_validation_start(self, trainer, module):
            if not trainer.sanity_checking:
                times["train"].append(time.perf_counter() - self.start)

        def on_train_end(self, trainer, module):
            self._close_epoch()

    pl.seed_everything(0)
    datamodule = ClipDataModule(cache, records, list(LABELS), fold, batch_size=BATCH)
    logger = MLFlowLogger(experiment_name="bench", tracking_uri=f"sqlite:///{cache_dir}/mlflow.db")
    callbacks = [instantiate(c) for c in cfg.callbacks.values()] + [EpochTimer()]
    trainer = instantiate(cfg.trainer, max_epochs=epochs + 1, logger=logger, callbacks=callbacks,
                          enable_progress_bar=False, enable_model_summary=False, default_root_dir=cache_dir)
    trainer.fit(build_module(cfg, datamodule.val_stages), datamodule=datamodule)
    # the first epoch is the warm-up
    return {"train_epoch_s": times["train"][1:], "full_epoch_s": times["epoch"][1:], "peak_mib": peak_rss_mib(),
            "val_clips": len(fold["test"])}


def keras_fit(epochs: int, cache_dir: str = "") -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # this wheel leaves oneDNN off unless asked; with it the peer is several times faster
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    import keras

    keras.utils.set_random_seed(0)
    dropout = 0.3
    model = keras.Sequential([
        keras.Input((DEPTH, SIZE, SIZE, 1)),
        keras.layers.Conv3D(32, 3, activation="relu"),
        keras.layers.MaxPooling3D(3),
        keras.layers.Dropout(dropout),
        keras.layers.MaxPooling3D(2),
        keras.layers.Dropout(dropout),
        keras.layers.Flatten(),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(CLASSES),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y = training_clips(cache_dir)
    x = np.ascontiguousarray(x.transpose(0, 2, 3, 4, 1))  # Keras is channels-last
    times: dict[str, list[float]] = {"epoch": [], "steps": []}

    class EpochTimer(keras.callbacks.Callback):
        """The whole epoch, and its train steps alone: between epochs (and now and then
        between steps) `fit` also reshuffles and re-batches the data, which our bare step
        does not do."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.steps = time.perf_counter(), 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self.step_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.steps += time.perf_counter() - self.step_start

        def on_epoch_end(self, epoch, logs=None):
            times["epoch"].append(time.perf_counter() - self.start)
            times["steps"].append(self.steps)

    model.fit(x, y, batch_size=BATCH, epochs=epochs + 1, shuffle=True, verbose=0, callbacks=[EpochTimer()])
    result = {"epoch_s": times["epoch"][1:], "steps_s": times["steps"][1:], "params": int(model.count_params())}
    for batch, repeats in ((1, 20), (BATCH, 5)):
        model.predict_on_batch(x[:batch])
        result[f"batch{batch}_s"] = timed(lambda: model.predict_on_batch(x[:batch]), repeats)
    return result | {"peak_mib": peak_rss_mib()}


def _bench_cache(root: Path):
    """131 training + 33 held-out records over the carphone clips, cached by the real pipeline."""
    from mer.data.cache import ClipCache
    from mer.datasets.records import ClipRecord
    from mer.preprocess.pipeline import PreprocessSettings
    from preprocess_throughput import carphone_clips

    clips = root / "clips"
    if not clips.is_dir():
        clips.mkdir(parents=True)
        carphone_clips(clips)
    sources = sorted(p for p in clips.iterdir() if p.is_dir())
    records = []
    for i in range(CLIPS + 33):
        folder = sources[i % len(sources)]
        frames = tuple(sorted(folder.glob("*.bmp")))
        records.append(ClipRecord(f"clip{i:03d}", f"s{i % 8}", LABELS[i % CLASSES], folder, frames))
    cache = ClipCache(root / "cache", PreprocessSettings(depth=DEPTH), root)
    report = cache.build(records, progress=False)
    assert not report.failed, report.failed
    ids = [r.clip_id for r in records]
    return records, cache, {"name": "bench", "train": ids[:CLIPS], "val": [], "test": ids[CLIPS:]}


def save_training_clips(root: Path) -> None:
    """The cache's training clips as the float array the workers load (so that the Keras
    worker never imports torch)."""
    records, cache, fold = _bench_cache(root)
    train = records[:CLIPS]
    clips = np.stack([cache.load(r) for r in train])[:, None].astype(np.float32) / np.float32(255)
    labels = np.array([LABELS.index(r.label) for r in train])
    np.savez(root / TRAINING_CLIPS, clips=clips, labels=labels)


WORKERS = {
    "step reference": lambda a: torch_step("reference", a.epochs, cache_dir=a.cache_dir),
    "step stock": lambda a: torch_step("stock", a.epochs, cache_dir=a.cache_dir),
    "step fused": lambda a: torch_step("fused", a.epochs, cache_dir=a.cache_dir),
    "lightning fit": lambda a: lightning_fit(a.cache_dir, a.epochs),
    "infer stock": lambda a: torch_inference("stock", a.epochs, cache_dir=a.cache_dir),
    "infer fused": lambda a: torch_inference("fused", a.epochs, cache_dir=a.cache_dir),
    "keras": lambda a: keras_fit(a.epochs, cache_dir=a.cache_dir),
    # only where torch sees a GPU: cuDNN on the whole batch, channels-last, fp32 and bf16 autocast
    "gpu step": lambda a: torch_step("stock", a.epochs, device="cuda", cache_dir=a.cache_dir),
    "gpu step bf16": lambda a: torch_step("stock", a.epochs, device="cuda", amp=True, cache_dir=a.cache_dir),
    "gpu infer": lambda a: torch_inference("stock", a.epochs, device="cuda", cache_dir=a.cache_dir),
}
GPU_WORKERS = ("gpu step", "gpu step bf16", "gpu infer")


# ---- parent: interleave, then report ------------------------------------------------------

def tcmalloc_path() -> str | None:
    """The shared library's full path, as the dynamic linker's cache lists it (LD_PRELOAD wants one)."""
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for name in ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"):
        for line in listing.splitlines():
            if line.strip().startswith(name) and "=>" in line:
                return line.split("=>")[-1].strip()
    return None


def gpu_present() -> bool:
    # asked in a child process: CUDA initialised here would not survive the cache's forked workers
    probe = "import torch; print(torch.cuda.is_available())"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "True"


def run_worker(name: str, args, env: dict) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--epochs", str(args.epochs), "--cache-dir", args.cache_dir]
    if name == "keras":
        # the peer keeps glibc malloc: tcmalloc made it slower here (60 -> 26-48 clips/s)
        env = {k: v for k, v in env.items() if k != "LD_PRELOAD"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(rounds: list[dict], key: str) -> tuple[float, float] | None:
    """(median, best) over rounds of each round's median time for `key`."""
    per_round = [statistics.median(r[key]) for r in rounds if key in r]
    return (statistics.median(per_round), min(per_round)) if per_round else None


def paired_speedup(results: dict[str, list[dict]], ours: tuple[str, str], other: tuple[str, str]) -> float | None:
    """How many times faster `ours` ran than `other` ((worker, key) pairs): the median over
    rounds of the two times measured in the same round, so that the machine's drift between
    rounds cancels out instead of landing on one side of the ratio."""
    theirs = {r["round"]: statistics.median(r[other[1]]) for r in results.get(other[0], []) if other[1] in r}
    ratios = [theirs[r["round"]] / statistics.median(r[ours[1]])
              for r in results.get(ours[0], []) if ours[1] in r and r["round"] in theirs]
    return statistics.median(ratios) if ratios else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per process, after one warm-up epoch")
    parser.add_argument("--allocator", choices=("auto", "system", "tcmalloc"), default="auto",
                        help="auto: tcmalloc for the PyTorch processes when the library is installed")
    parser.add_argument("--only", nargs="*", choices=list(WORKERS), help="run only these measurements")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    allocator = "system"
    if args.allocator != "system":
        library = tcmalloc_path()
        if library:
            env["LD_PRELOAD"], allocator = library, f"tcmalloc ({library})"
        elif args.allocator == "tcmalloc":
            sys.exit("tcmalloc not found: install Debian's libtcmalloc-minimal4 (make bench does)")
    names = args.only or list(WORKERS)
    if not gpu_present():
        names = [n for n in names if n not in GPU_WORKERS]
    # only looked up: importing TensorFlow here would put its threads into the forked cache workers
    if importlib.util.find_spec("keras") is None:
        names = [n for n in names if n != "keras"]
        print("keras/tensorflow not installed (pip install -e '.[peer]'): no peer figures")

    results: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as scratch:
        args.cache_dir = scratch
        sys.path.insert(0, str(Path(__file__).parent))
        save_training_clips(Path(scratch))  # the cache is built once, outside the timings
        for round_index in range(args.rounds):
            for name in names:
                result = run_worker(name, args, env)
                if "error" in result:
                    print(f"  {name}: failed: {result['error']}")
                else:
                    results[name].append(result | {"round": round_index})
            print(f"round {round_index + 1}/{args.rounds} done", flush=True)
    report(results, args, allocator)



def report(results: dict[str, list[dict]], args, allocator: str) -> None:
    import torch

    print(f"\nbatch {BATCH}, {CLIPS} clips of {DEPTH}x{SIZE}x{SIZE} per epoch; {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), allocator: {allocator}")
    print(f"median / best over {args.rounds} rounds of each process's median of {args.epochs} epochs; "
          "x fit / x steps: times as fast as\nthe peer's whole model.fit epoch / its train steps alone "
          "(median over rounds of the ratio within a round)\n")
    peer_fit, peer_steps = ("keras", "epoch_s"), ("keras", "steps_s")
    rows = [("step reference", "epoch_s", "bare step, Table II layer order"),
            ("step stock", "epoch_s", "bare step, exact rewrite, stock ops"),
            ("step fused", "epoch_s", "bare step, exact rewrite, fused kernels"),
            ("lightning fit", "train_epoch_s", "Lightning fit, train part of the epoch"),
            ("lightning fit", "full_epoch_s", "Lightning fit, whole epoch (+33 val clips, ckpt, MLflow)"),
            ("keras", "epoch_s", "Keras/TensorFlow model.fit, whole epoch (peer)"),
            ("keras", "steps_s", "Keras/TensorFlow model.fit, train steps only (peer)")]
    print(f"{'training':<58}{'clips/s':>9}{'best':>8}{'x fit':>8}{'x steps':>9}{'peak MiB':>10}")
    for name, key, label in rows:
        summary = summarise(results.get(name, []), key)
        if summary is None:
            continue
        ratios = "".join(f"{ratio_text(r) if r else '-':>{w + 1}}"
                         for r, w in ((paired_speedup(results, (name, key), peer_fit), 7),
                                      (paired_speedup(results, (name, key), peer_steps), 8)))
        peak = max(r["peak_mib"] for r in results[name])
        print(f"{label:<58}{CLIPS / summary[0]:>9.1f}{CLIPS / summary[1]:>8.1f}{ratios}{peak:>10.0f}")
    for name, label in (("gpu step", "GPU bare step, stock ops (cuDNN), fp32"),
                        ("gpu step bf16", "GPU bare step, stock ops (cuDNN), bf16 autocast")):
        summary = summarise(results.get(name, []), "epoch_s")
        if summary:
            gpu_peak = max(r["gpu_peak_mib"] for r in results[name])
            print(f"{label:<58}{CLIPS / summary[0]:>9.1f}{CLIPS / summary[1]:>8.1f}{'':>17}{gpu_peak:>10.0f} (GPU)")
    print(f"\n{'inference latency, ms':<58}{'batch 1':>9}{'batch 20':>9}")
    for name, label in (("infer stock", "PyTorch, stock ops"), ("infer fused", "PyTorch, fused kernels"),
                        ("gpu infer", "PyTorch on the GPU, stock ops"), ("keras", "Keras predict_on_batch (peer)")):
        if results.get(name):
            cells = [summarise(results[name], f"batch{b}_s") for b in (1, BATCH)]
            print(f"{label:<58}" + "".join(f"{c[0] * 1e3:>9.1f}" for c in cells))
    print()
    for name, target in TARGET_PEER_RATIO.items():
        fit, steps = (paired_speedup(results, (name, "epoch_s"), peer) for peer in (peer_fit, peer_steps))
        if fit is None or steps is None:
            continue
        verdict = ("met" if min(fit, steps) >= target else "met against the fit epoch only" if fit >= target
                   else "NOT met")
        print(f"{name} vs peer: {ratio_text(fit)} its fit epoch, {ratio_text(steps)} its train steps "
              f"(target {target}x): {verdict}")
    loop_time = paired_speedup(results, ("step fused", "epoch_s"), ("lightning fit", "train_epoch_s"))
    if loop_time is not None:
        overhead = loop_time - 1
        print(f"Lightning loop vs bare fused step: {overhead:+.1%} time (target within "
              f"{TARGET_LOOP_OVERHEAD:.0%}): {'met' if overhead <= TARGET_LOOP_OVERHEAD else 'NOT met'}")


if __name__ == "__main__":
    main()
