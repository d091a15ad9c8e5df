"""Every module imports on its own in a fresh interpreter, the aptnn modules import each other without a cycle,
and importing aptnn has no process-wide side effects (malloc tuning is for the entry points)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = {"aptnn": ROOT / "aptnn", "aptnn.drivers": ROOT / "drivers"}  # drivers/ is installed as aptnn.drivers


def _modules() -> dict[str, Path]:
    """Module name → file, for every .py file of the package (drivers/ under aptnn.drivers)."""
    out = {}
    for prefix, tree in TREES.items():
        for path in sorted(tree.rglob("*.py")):
            parts = list(path.relative_to(tree).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([prefix, *parts])] = path
    return out


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_in_a_fresh_interpreter(module):
    res = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert res.returncode == 0, f"import {module} failed:\n{res.stderr[-3000:]}"


def _module_level_imports(tree: ast.Module):
    """Import statements run when the module is imported: not inside functions, classes or TYPE_CHECKING."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if "TYPE_CHECKING" not in test:
                todo += node.body
            todo += node.orelse
        elif isinstance(node, (ast.Try, ast.With)):
            todo += node.body
            todo += getattr(node, "orelse", []) + getattr(node, "finalbody", [])
            for handler in getattr(node, "handlers", []):
                todo += handler.body


def _resolve(name: str) -> str | None:
    """The aptnn module a dotted name refers to (the longest known prefix), or None outside aptnn."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Module → the aptnn modules its module-level imports load by name (``from P import m`` counts m when it is a
    module, else P; the implicit import of parent packages is left out)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        is_package = path.name == "__init__.py"
        edges = set()
        for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative import
                    anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                           for alias in node.names]
            edges |= {t for t in map(_resolve, targets) if t and t != module}
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle_among_aptnn_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_import_graph_sees_the_cli_modules():
    graph = import_graph()
    assert "aptnn.cli.errors" in graph["aptnn.cli.model"]  # from aptnn.cli.errors import …
    assert "aptnn.cli.options" in graph["aptnn.cli.model"]  # from aptnn.cli import options
    assert "aptnn.cli" not in graph["aptnn.cli.model"]


def test_importing_aptnn_has_no_process_wide_side_effects():
    code = ("import os, sys\n"
            "env = dict(os.environ)\n"
            "import aptnn, aptnn.cli, aptnn.drivers.ipi.cli, aptnn.runtime\n"
            "assert aptnn.runtime._applied is None, 'malloc tuned at import'\n"
            "assert dict(os.environ) == env, 'environment changed at import'\n"
            "assert 'torch' not in sys.modules, 'import aptnn loaded torch'\n"
            "from aptnn.runtime import tune_malloc\n"
            "tune_malloc()\n"
            "assert aptnn.runtime._applied is not None\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def test_no_module_reads_the_version_from_the_package_init():
    for module, path in MODULES.items():
        for node in _module_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "aptnn":
                assert "__version__" not in {a.name for a in node.names}, f"{module}: use aptnn._version"
