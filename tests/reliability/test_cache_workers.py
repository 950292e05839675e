"""The clip cache's worker pool starts safely from a process whose torch and OpenCV threads
are busy (a training's, by the time it builds its cache): many fresh builds in a row, each
finishing, under a timeout. Workers forked from such a process could wait forever on a
lock one of those threads held at the fork."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from mer.synthetic.generator import GeneratorSettings
from mer.synthetic.layout_writers import generate_smic_hs

BUILDS = 8
SCRIPT = textwrap.dedent('''
    import sys, threading, time
    from pathlib import Path

    import cv2, numpy as np, torch

    from mer.data.cache import ClipCache
    from mer.datasets.smic_hs import index_smic_hs
    from mer.preprocess.pipeline import PreprocessSettings

    def busy(stop):
        a, image = torch.randn(256, 256), np.random.default_rng(0).integers(0, 255, (480, 640), dtype=np.uint8)
        while not stop.is_set():  # holding torch's and OpenCV's pools often, leaving the workers room to run
            a @ a
            cv2.resize(image, (1280, 960))
            time.sleep(0.005)

    if __name__ == "__main__":
        tree, caches, builds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
        torch.set_num_threads(2)
        cv2.setNumThreads(2)
        stop = threading.Event()
        threads = [threading.Thread(target=busy, args=(stop,), daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        records = index_smic_hs(tree)[0]
        for build in range(builds):
            report = ClipCache(caches / str(build), PreprocessSettings(), tree).build(records, workers=2, progress=False)
            assert len(report.ok) == len(records) and report.preprocessed == len(records), report
            print("built", build, flush=True)
        stop.set()
        # Joined before the interpreter exits: a thread still inside torch or OpenCV then
        # aborts the process ("terminate called without an active exception").
        for thread in threads:
            thread.join()
''')


def test_fresh_caches_build_one_after_another_beside_busy_threads(tmp_path):
    tree = generate_smic_hs(tmp_path / "smic", GeneratorSettings(subjects=2, clips_per_subject=2, min_frames=10,
                                                                max_frames=10), progress=False)
    script = tmp_path / "build_caches.py"
    script.write_text(SCRIPT)
    try:
        done = subprocess.run([sys.executable, str(script), str(tree), str(tmp_path / "caches"), str(BUILDS)],
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as expired:
        raise AssertionError(f"a build hung; the ones before it: {expired.stdout}") from None
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("built") == BUILDS
