"""`make bench`: every benchmark in this folder, one after the other."""

import runpy
from pathlib import Path

for script in sorted(Path(__file__).parent.glob("*.py")):
    if script.name != "run.py" and not script.name.startswith("_"):  # _*: shared helpers
        print(f"== {script.stem} ==", flush=True)
        runpy.run_path(str(script), run_name="__main__")
