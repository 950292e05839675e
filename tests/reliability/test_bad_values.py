"""Bad values and bad commands end in one line naming the key, before any work; what
identifies a run or a sweep does not depend on the launch folder or the launch second."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_mer
from helpers import runs_of
from mer.common.errors import MerError
from mer.tracking.config_hash import config_hash
from mer.commands.train import train


def test_bad_numbers_are_refused_before_any_work_naming_each_key(train_overrides, tmp_path):
    cache = tmp_path / "fresh-cache"
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), *train_overrides, f"paths.cache_dir={cache}",
                           "optim.lr=abc", "data.batch_size=0", "trainer.max_epochs=-1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == ("error: optim.lr='abc' must be a number > 0; data.batch_size=0 must be "
                                                    "an integer >= 1; trainer.max_epochs=-1 must be an integer >= 1")
    assert runs_of(tmp_path / "mlflow.db") == [] and not cache.exists()


def test_a_window_far_longer_than_the_clips_is_refused_naming_both_keys(make_cfg, caplog):
    cfg = make_cfg("preprocess.depth=200", "debug=fast", "logger.run_name=window-too-long")
    with pytest.raises(MerError, match=r"no clip could be preprocessed"):
        train(cfg, [])
    assert "of 18 clips have fewer than preprocess.depth=200 frames (shortest 10)" in caplog.text
    assert re.search(r"its 1\d frames cannot fill preprocess.depth=200 without repeating each more than "
                     r"preprocess.max_stretch=2 times", caplog.text)


@pytest.mark.parametrize("args", [["data", "summary", "data=nope"], ["data", "summary", "foo=1"],
                                  ["data", "summary", "data=casme2"], ["preview", "clip-folder", "data=nope"]],
                         ids=["unknown option", "unknown key", "missing data.root", "preview"])
def test_the_mer_command_reports_config_errors_in_one_line(args, tmp_path):
    done = run_mer(*args, cwd=tmp_path)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    assert {"data=nope": "Could not find 'data/nope'", "foo=1": "Could not override 'foo'",
            "data=casme2": "data.root"}[args[-1]] in done.stderr


def test_one_config_launched_from_two_folders_is_one_cell(make_cfg, tmp_path):
    def hash_from(folder: Path, *overrides: str) -> str:
        return config_hash(make_cfg(f"paths.root_dir={folder}", f"data.root={folder}/data/builtin_smic", *overrides))

    here, there = tmp_path / "here", tmp_path / "elsewhere"
    assert hash_from(here) == hash_from(there)
    assert hash_from(here) != hash_from(here, "optim.lr=0.01")
    # A dataset outside the launch folder counts by its path, wherever the launch.
    assert (config_hash(make_cfg(f"paths.root_dir={here}", "data.root=/data/SMIC"))
            == config_hash(make_cfg(f"paths.root_dir={there}", "data.root=/data/SMIC"))
            != config_hash(make_cfg(f"paths.root_dir={here}", "data.root=/data/SMIC-copy")))


@pytest.mark.parametrize("setting,enabled", [(None, False), ("false", True)], ids=["default off", "user turns it on"])
def test_mlflow_telemetry_is_off_unless_the_user_turns_it_on(tmp_path, setting, enabled):
    # A clean environment: MLflow itself stays quiet under pytest or CI, which would hide the default.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    if setting is not None:
        env["MLFLOW_DISABLE_TELEMETRY"] = setting
    script = "import mer.tracking.run_lifecycle\nfrom mlflow.telemetry import get_telemetry_client\nprint(get_telemetry_client() is not None)"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == str(enabled), done.stderr[-2000:]
