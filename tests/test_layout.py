"""The package's layers (README, "How it is built"): imports only ever point down, lazy imports
inside functions included, so the algorithm never reaches for the host side and nothing below
the command line reaches for it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "purejaxdqn"
LAYERS = ["envs", "config", "algorithm", "host", "cli", "entry"]  # bottom to top


def layer(module: str) -> int:
    """purejaxdqn.host.runner -> the index of "host"; the entry points and the face are on top."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("train", "evaluate"):
        return LAYERS.index("entry")
    return LAYERS.index(parts[1])


def imports(path: Path) -> set[str]:
    """Every purejaxdqn module `path` imports, wherever in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("purejaxdqn"):
            if node.module != "purejaxdqn":
                found.add(node.module)
                continue
            for alias in node.names:  # `from purejaxdqn import x`: a subpackage, or a name of the face
                if alias.name in LAYERS:
                    found.add(f"purejaxdqn.{alias.name}")
                elif alias.name != "__version__":  # the face defines only the version itself
                    found.add("purejaxdqn")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("purejaxdqn"))
    return found


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_imports_point_down():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = module_of(path)
        for other in imports(path):
            if layer(other) > layer(me):
                upward.append(f"{me} imports {other}")
    assert not upward, upward


def test_every_module_is_in_a_layer():
    for path in PACKAGE.rglob("*.py"):
        assert 0 <= layer(module_of(path)) < len(LAYERS), path
