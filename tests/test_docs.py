"""The documentation builds with `mkdocs build --strict` (broken links, missing anchors and
pages left out of the nav fail it), and the bash blocks marked runnable in README.md and
docs/*.md run as written on the built-in faces.

A runnable block is a fenced ```bash block directly after a line `<!-- runnable -->` (an
HTML comment: GitHub and MkDocs show the block as any other). It runs with
`bash -euo pipefail` in a folder of its own, so whatever it writes (`data/`, `outputs/`)
lands there, never in the checkout: `paths.root_dir` is the launch folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = "<!-- runnable -->"
VENV_BIN = Path(sys.executable).parent


def runnable_blocks(page: Path) -> list[tuple[int, str]]:
    """(line of the opening fence, the block's text) for each runnable block of `page`."""
    lines = page.read_text().splitlines()
    blocks = []
    for number, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        fence = number + 1
        assert fence < len(lines) and lines[fence].strip() == "```bash", \
            f"{page.name}:{fence + 1}: {MARKER} must sit directly above a ```bash block"
        end = next((i for i in range(fence + 1, len(lines)) if lines[i].startswith("```")), None)
        assert end is not None, f"{page.name}:{fence + 1}: the runnable block is never closed"
        blocks.append((fence + 1, "\n".join(lines[fence + 1:end])))
    return blocks


BLOCKS = [(page, line, text) for page in PAGES for line, text in runnable_blocks(page)]


def as_script(text: str) -> str:
    """The block with `python train.py` / `python evaluate.py` at a line's start run by this
    interpreter on the checkout's scripts."""
    return re.sub(r"^python (train|evaluate)\.py\b", lambda m: f"{sys.executable} {ROOT / m.group(1)}.py",
                  text, flags=re.MULTILINE)


def test_the_docs_build_strict(tmp_path):
    done = subprocess.run([str(VENV_BIN / "mkdocs"), "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-5000:]
    assert (tmp_path / "site" / "index.html").is_file()


def test_runnable_blocks_are_marked_in_the_readme_and_the_docs():
    pages = {page.name for page, _, _ in BLOCKS if page.parent == ROOT / "docs"}
    assert any(page.name == "README.md" for page, _, _ in BLOCKS), "README.md has no runnable block"
    assert len(pages) >= 3, f"runnable blocks in only {sorted(pages)} of docs/"


def test_the_runnable_blocks_are_found_with_their_lines(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# x\n\n```bash\nnot marked\n```\n\n<!-- runnable -->\n```bash\nmer a\nmer b\n```\n")
    assert runnable_blocks(page) == [(8, "mer a\nmer b")]
    page.write_text("<!-- runnable -->\n\n```bash\nmer a\n```\n")
    with pytest.raises(AssertionError, match="directly above"):
        runnable_blocks(page)
    assert as_script("python train.py debug=fast\n  python evaluate.py x=1") == \
        f"{sys.executable} {ROOT}/train.py debug=fast\n  python evaluate.py x=1"


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("page", "line", "text"), BLOCKS,
                         ids=[f"{page.name}:{line}" for page, line, _ in BLOCKS])
def test_a_runnable_docs_command_succeeds(page, line, text, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_TRACKING_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", as_script(text)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, (f"{page.name}:{line} exited {done.returncode}\n--- block\n{text}\n"
                                  f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-5000:]}")
    assert not (ROOT / "data" / "my_tree").exists(), "a runnable block wrote into the checkout"


def test_the_readme_is_a_first_day_page_with_the_two_commands_first():
    lines = (ROOT / "README.md").read_text().splitlines()
    sections = [line for line in lines if line.startswith("## ")]
    assert len(lines) < 200, f"README.md has {len(lines)} lines: the reference belongs in docs/"
    assert sections[0] == "## Two commands"
    block = "\n".join(lines).split("## Two commands", 1)[1].split("```", 2)[1]
    assert [line.split()[:2] for line in block.splitlines()[1:] if line.strip()] == [["make", "train"], ["make", "test"]]
