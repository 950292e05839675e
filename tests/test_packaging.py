"""An installed `mer` (a wheel in a fresh venv) carries its configs and sweeps and runs from
any folder, without the checkout."""

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from mer.common.config import PROJECT_ROOT


def test_a_wheel_in_a_fresh_venv_runs_from_any_folder(tmp_path, tiny_tree):
    # Nothing may lead the installed package back to a checkout; a kernel build from the
    # installed sources stays out of the checkout's extension cache.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "wheel"), str(PROJECT_ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "wheel").glob("mer-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True, env=env).stdout.strip())
    # The dependencies come from the project's venv as plain paths (so its editable mer is
    # not on them); mer itself only from the wheel.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=300, env=env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args):
        return subprocess.run([str(env_dir / "bin" / args[0]), *args[1:]], cwd=elsewhere, capture_output=True, text=True,
                              timeout=600, env=env)

    located = run("python", "-c", "import mer.common.config as c; print(c.CONFIG_DIR, c.RESOURCE_ROOT)")
    assert located.stdout.split() == [str(site / "mer" / "conf"), str(site / "mer")], located.stderr[-2000:]
    summary = run("mer", "data", "summary", f"data.root={tiny_tree}")
    assert summary.returncode == 0 and "18 clips, 6 subjects, 3 classes." in summary.stdout, summary.stderr[-2000:]
    composed = run("mer-train", "+sweeps=table3_lr", "--cfg", "job")
    assert composed.returncode == 0 and "name: table3_lr" in composed.stdout, composed.stderr[-2000:]
    assert (site / "mer" / "models" / "kernels" / "mer3dcnn_cpu.cpp").is_file()
    assert (site / "mer" / "conf" / "hydra" / "launcher" / "slurm.yaml").is_file()  # a group two folders down
    # the stock path: packaging is under test here, not a minute of kernel compilation
    trained = run("mer-train", f"data.root={tiny_tree}", "debug=fast", "model.impl=stock", "data.preprocess_workers=1",
                  "trainer.enable_progress_bar=false")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert (elsewhere / "outputs" / "mlflow.db").is_file() and (elsewhere / "data" / "cache").is_dir()
