"""The training benchmark's workers and report run (speed itself is measured by `make bench`)."""

import sys
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import training_speed  # noqa: E402


def test_a_step_worker_times_epochs_and_memory():
    result = training_speed.torch_step("fused", epochs=1)
    assert len(result["epoch_s"]) == 1 and result["epoch_s"][0] > 0 and result["peak_mib"] > 100


def test_report_prints_ratios_against_the_peer_and_the_targets(capsys):
    epoch = lambda seconds: {"epoch_s": [seconds] * 3, "peak_mib": 500.0}  # noqa: E731
    results = {
        "step stock": [epoch(1.0), epoch(1.2)],
        "step fused": [epoch(0.5)],
        "lightning fit": [{"train_epoch_s": [0.55], "full_epoch_s": [0.7], "peak_mib": 700.0, "val_clips": 33}],
        "keras": [epoch(2.0) | {"batch1_s": [0.007], "batch20_s": [0.08]}],
    }
    training_speed.report(results, Namespace(rounds=2, epochs=3), "system")
    out = capsys.readouterr().out
    assert "step stock / peer: 1.82x (target 1.3x): met" in out  # median of 1.0 and 1.2 s
    assert "step fused / peer: 4.00x (target 2.5x): met" in out
    assert "Lightning loop vs bare fused step: +10% time (target within 15%): met" in out
