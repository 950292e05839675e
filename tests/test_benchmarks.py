"""The training benchmark's workers and report run (speed itself is measured by `make bench`)."""

import sys
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import training_speed  # noqa: E402


def test_a_step_worker_times_epochs_and_memory():
    result = training_speed.torch_step("fused", epochs=1)
    assert len(result["epoch_s"]) == 1 and result["epoch_s"][0] > 0 and result["peak_mib"] > 100


def test_report_pairs_each_round_with_the_peer_and_prints_the_targets(capsys):
    def epoch(seconds, round_index):
        return {"epoch_s": [seconds] * 3, "peak_mib": 500.0, "round": round_index}

    results = {
        "step stock": [epoch(1.0, 0), epoch(1.2, 1)],
        "step fused": [epoch(0.5, 0), epoch(0.6, 1)],
        "lightning fit": [{"train_epoch_s": [0.55], "full_epoch_s": [0.7], "peak_mib": 700.0, "round": 0},
                          {"train_epoch_s": [0.9], "full_epoch_s": [1.0], "peak_mib": 700.0, "round": 1}],
        # the peer ran slower in the second round, as a noisy machine does
        "keras": [epoch(2.0, 0) | {"steps_s": [1.5] * 3, "batch1_s": [0.007], "batch20_s": [0.08]},
                  epoch(3.6, 1) | {"steps_s": [1.2] * 3, "batch1_s": [0.007], "batch20_s": [0.08]}],
    }
    training_speed.report(results, Namespace(rounds=2, epochs=3), "system")
    out = capsys.readouterr().out
    # per round 2.0/1.0 and 3.6/1.2 against the fit epoch, 1.5/1.0 and 1.2/1.2 against the steps
    assert "step stock vs peer: 2.50x its fit epoch, 1.25x its train steps (target 1.3x): " \
           "met against the fit epoch only" in out
    assert "step fused vs peer: 5.00x its fit epoch, 2.50x its train steps (target 2.5x): met" in out
    # rounds 0.55/0.5 and 0.9/0.6
    assert "Lightning loop vs bare fused step: +30.0% time (target within 15%): NOT met" in out
    assert "Keras/TensorFlow model.fit, train steps only (peer)" in out


def test_ratios_print_rounded_down_so_a_near_miss_never_reads_as_the_target():
    assert training_speed.ratio_text(1.2999) == "1.29x"
    assert training_speed.ratio_text(1.5 / 1.2) == "1.25x"  # 1.2499999999999998 in floats
    assert training_speed.ratio_text(3.0) == "3.00x"


def test_long_video_report_gives_the_verdict_and_where_the_time_goes(capsys):
    import long_video

    def rounds(seconds, **inside):
        return [{"seconds": s, "frames": 1000, **{k: v[i] for k, v in inside.items()}} for i, s in enumerate(seconds)]

    runs = {
        # 299.97 frames/s: a near miss must read as one
        "torch fused": rounds([3.3337, 4.0, 3.0], model_s=[0.5, 0.4, 0.6]),
        "onnxruntime": rounds([3.2, 3.3, 3.0], model_s=[0.3, 0.3, 0.3]),
        "earlier schedule": rounds([8.0, 8.5, 7.5], model_s=[0.5, 0.5, 0.5]),
        "no model (zeros)": rounds([2.8, 2.9, 2.7], detect_s=[1.2, 1.3, 1.1], landmarks_s=[0.8, 0.8, 0.8]),
        "decode only": rounds([0.5, 0.6, 0.4]),
    }
    speed = {(name, batch): [value, value * 2, value / 2] for batch in (1, 20)
             for name, value in (("torch fused", 50.0), ("torch stock", 10.0), ("onnxruntime", 100.0))}
    long_video.report(runs, speed)
    out = capsys.readouterr().out
    assert "predict, PyTorch fused: 300.0 frames/s, 0.99x the 300 frames/s target: not met; 1.49x SAMM Long " \
           "Videos' 200 frames/s" in out
    assert "predict, onnxruntime: 312.5 frames/s, 1.04x the 300 frames/s target: target met; 1.56x" in out
    # 8.0 / 3.3337 s: 2.3997x
    assert "default schedule against the earlier one (faces.redetect=window faces.detect_scale=1), same run: " \
           "2.39x (target 2.5x: not met)" in out
    # stages, ms/frame: detection 1.2, landmarks 0.8, model 0.5, the rest 3.3337 - 2.5;
    # decode (0.5) overlaps them
    assert "face detection (dlib HOG)                          1.20     36%" in out
    assert "68 landmarks (dlib)                                0.80     24%" in out
    assert "alignment, warp, windows, spotting, waits          0.83     25%" in out
    assert "decode (FrameStream, grey) alone: 0.50 ms/frame" in out
    assert "not met by 0.00 ms/frame over the 3.33 ms/frame budget: face detection (dlib HOG) alone " \
           "takes 1.20 ms/frame (36% of the budget), the other stages 2.13" in out
    assert "torch fused          1      50.0     100.0     5.00x" in out
    assert "onnxruntime         20     100.0     200.0    10.00x" in out
