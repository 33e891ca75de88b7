"""The packages' layering: `reader` (the contract and the read side) imports neither the worker nor
the agent layer; `agent_tools` imports `reader`, never the worker; the worker never the agent layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> list[tuple[str, bool]]:
    """Each module `path` imports, and whether at module level (not inside a function)."""
    tree = ast.parse(path.read_text(), str(path))
    nested = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(f)
    }
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [(name, id(node) not in nested) for name in names]
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("reader", ("worker", "agent_tools", "mcp")),
        ("agent_tools", ("worker",)),
        ("worker", ("agent_tools", "mcp")),
    ],
)
def test_a_package_imports_no_layer_above_it(package: str, forbidden: tuple[str, ...]) -> None:
    """No module of `package` imports a forbidden package; the one exception is the reader's command
    line, whose `mcp` subcommand imports the agent layer when it is run, not when it is loaded."""
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name, top_level in _imports(path):
            if name.split(".")[0] in forbidden:
                lazy_cli = path == ROOT / "reader" / "__main__.py" and not top_level
                if not (lazy_cli and name.startswith("agent_tools")):
                    wrong.append(f"{path.relative_to(ROOT)}: {name}")
    assert wrong == []


def test_the_reader_command_line_loads_no_agent_layer_until_mcp_is_asked() -> None:
    """`reader/__main__.py` imports `agent_tools` only inside a function (the `mcp` subcommand)."""
    imports = _imports(ROOT / "reader" / "__main__.py")
    assert [name for name, top in imports if name.startswith("agent_tools")] != []
    assert [name for name, top in imports if name.startswith("agent_tools") and top] == []
