"""The package's layers import one way only (top to bottom below), with no cycles, and the
README's layout picture lists every module."""

import ast
from pathlib import Path

from mer.config import PACKAGE_DIR, PROJECT_ROOT

# Top to bottom: a module may import from its own layer or any layer below it.
LAYERS = [
    ("entry points", ("mer.cli", "mer.entrypoints")),
    ("orchestration", ("mer.training", "mer.evaluation", "mer.sweep_callbacks", "mer.spotting")),
    ("reporting", ("mer.reporting",)),
    ("tracking", ("mer.tracking",)),
    ("data", ("mer.data",)),
    ("synthetic", ("mer.synthetic",)),
    ("datasets", ("mer.datasets",)),
    ("preprocess", ("mer.preprocess",)),
    ("models", ("mer.models",)),
    ("shared", ("mer.config", "mer.distributed", "mer.errors", "mer.files", "mer.interrupts", "mer.metrics", "mer.selection", "mer.value_checks", "mer")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}


def layer(module: str) -> int:
    matches = [(len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} belongs to no layer: add it to LAYERS and to the README's layout"
    return max(matches)[1]


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("mer")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mer") and node.level == 0:
            # `from mer import config` imports the module mer.config
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names}
    return found


def test_no_module_imports_from_a_layer_above_it():
    upward = [f"{importer} ({LAYERS[layer(importer)][0]}) imports {imported} ({LAYERS[layer(imported)][0]})"
              for importer, path in MODULES.items() for imported in imports(path) if layer(imported) < layer(importer)]
    assert not upward, "\n".join(upward)


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


def test_the_readme_layout_lists_every_module():
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
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
    assert listed == actual, f"missing from the README: {sorted(actual - listed)}; gone: {sorted(listed - actual)}"


def test_the_wheel_lists_every_subpackage():
    import tomllib

    listed = set(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {module_name(p.parent) for p in PACKAGE_DIR.rglob("__init__.py")}
    assert listed == packages | {"mer.conf", "mer.sweeps"}, "pyproject.toml's [tool.setuptools] packages"
