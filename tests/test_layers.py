"""The package's layers import one way only (top to bottom below), with no cycles, and the
layout picture of docs/layout.md lists every module."""

import ast
from pathlib import Path

from mer.common.config import PACKAGE_DIR, PROJECT_ROOT

# Top to bottom: a module may import from its own layer or any layer below it. The package
# root holds only `__init__`: each module lives in the folder that names its layer.
LAYERS = [
    ("commands", ("mer.commands",)),
    ("spotting", ("mer.spotting",)),
    ("reporting", ("mer.reporting",)),
    ("tracking", ("mer.tracking",)),
    ("data", ("mer.data",)),
    ("synthetic", ("mer.synthetic",)),
    ("datasets", ("mer.datasets",)),
    ("preprocess", ("mer.preprocess",)),
    ("models", ("mer.models",)),
    ("common", ("mer.common", "mer")),
]


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package_dir: Path) -> dict[str, Path]:
    return {module_name(p, package_dir): p for p in package_dir.rglob("*.py")}


MODULES = package_modules(PACKAGE_DIR)


def layer(module: str) -> int:
    matches = [(len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} belongs to no layer: add it to LAYERS and to the docs' layout"
    return max(matches)[1]


def imports(path: Path, modules: dict[str, Path] = MODULES) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mer")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mer") and node.level == 0:
            # `from mer.common import config` imports the module mer.common.config
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names}
    return found


def layering_faults(package_dir: Path) -> list[str]:
    """Each module loose at the package root, and each import from a layer above the importer."""
    modules = package_modules(package_dir)
    loose = [f"{p.name} is loose at the package root: move it into the folder of its layer"
             for p in package_dir.glob("*.py") if p.name != "__init__.py"]
    upward = [f"{importer} ({LAYERS[layer(importer)][0]}) imports {imported} ({LAYERS[layer(imported)][0]})"
              for importer, path in modules.items() for imported in imports(path, modules) if layer(imported) < layer(importer)]
    return loose + upward


def test_every_module_sits_in_its_layer_folder_and_imports_only_downward():
    faults = layering_faults(PACKAGE_DIR)
    assert not faults, "\n".join(faults)


def test_the_layering_check_fires_on_a_loose_module_and_an_upward_import(tmp_path):
    package = tmp_path / "mer"
    for folder in ("common", "data", "commands"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("X = 1\n")
    (package / "commands" / "train.py").write_text("from mer.data.index import build_index\n")
    (package / "data" / "index.py").write_text("import os\n\ndef build_index():\n    from mer.commands.train import fit\n")
    (package / "common" / "files.py").write_text("from mer.data import index\n")
    assert sorted(layering_faults(package)) == [
        "helpers.py is loose at the package root: move it into the folder of its layer",
        "mer.common.files (common) imports mer.data.index (data)",
        "mer.data.index (data) imports mer.commands.train (commands)",
    ]


def test_no_import_cycles():
    graph = {name: {i for i in imports(path) if i in MODULES and i != name} for name, path in MODULES.items()}
    state: dict[str, str] = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in graph[node]:
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [])


def test_the_docs_layout_lists_every_module():
    page = (PROJECT_ROOT / "docs" / "layout.md").read_text()
    block = page.split("# Layout", 1)[1].split("```", 2)[1]
    # A folder line starts at the margin; its modules follow, indented.
    listed, folder = set(), ""
    for line in block.splitlines():
        if not line.strip():
            continue
        entry = line.split()[0]
        if not line.startswith(" "):
            folder = entry if entry.startswith("mer/") else ""
        elif folder and entry.endswith(".py"):
            listed.add(folder + entry)
    actual = {str(p.relative_to(PROJECT_ROOT)) for p in PACKAGE_DIR.rglob("*.py") if p.name != "__init__.py"}
    assert listed == actual, f"missing from docs/layout.md: {sorted(actual - listed)}; gone from the package: {sorted(listed - actual)}"


def test_the_wheel_lists_every_subpackage():
    import tomllib

    listed = set(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {module_name(p.parent) for p in PACKAGE_DIR.rglob("__init__.py")}
    assert listed == packages | {"mer.conf", "mer.sweeps"}, "pyproject.toml's [tool.setuptools] packages"


def test_the_sweep_launcher_imports_neither_torch_nor_lightning():
    """Hydra imports the sweep callbacks in the launching process before any job starts:
    torch and Lightning there would add seconds to every sweep and every SLURM submission."""
    import subprocess
    import sys

    probe = "import sys, mer.commands.sweep_callbacks; print(sorted({'torch', 'pytorch_lightning'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
