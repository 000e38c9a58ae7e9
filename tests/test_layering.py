"""The packages import in one direction: protocols <- relu_budget <- pi.

Every import statement is read with `ast`, including the ones inside functions (a local
import is still a dependency), so a new back-import fails here wherever it is written.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each package may import only the packages listed after it.
LAYERS = {"protocols": set(), "relu_budget": {"protocols"}, "pi": {"protocols", "relu_budget"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, source: str | None = None) -> list[tuple[int, str, bool]]:
    """(line, imported module, at module level) for every import in a file."""
    tree = ast.parse(path.read_text() if source is None else source, str(path))
    top_level = {id(n) for n in tree.body}
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:      # relative: resolve against the file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module]
        else:
            continue
        found += [(node.lineno, n, id(node) in top_level) for n in names]
    return found


def package_files():
    for pkg in LAYERS:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def test_the_import_scanner_sees_local_and_relative_imports():
    src = "import os\nfrom . import models\n\ndef f():\n    from pi.compiler import compile_plan\n"
    got = imports_of(ROOT / "relu_budget" / "probe.py", src)
    assert (5, "pi.compiler", False) in got and (2, "relu_budget", True) in got and (1, "os", True) in got


def test_imports_go_one_way():
    bad = []
    for f in package_files():
        own = f.relative_to(ROOT).parts[0]
        for line, mod, _ in imports_of(f):
            top = mod.split(".")[0]
            if top in LAYERS and top != own and top not in LAYERS[own]:
                bad.append(f"{f.relative_to(ROOT)}:{line} imports {mod} ({own} may import only "
                           f"{', '.join(sorted(LAYERS[own])) or 'itself'})")
    assert not bad, "back-imports:\n" + "\n".join(bad)


def test_the_compiler_imports_no_optimizer_and_no_module_imports_a_cli():
    bad = []
    for f in package_files():
        name = _module_name(f)
        for line, mod, _ in imports_of(f):
            if name.startswith("pi.") and mod.startswith("relu_budget.optimizers") and not name.startswith("pi.bench"):
                bad.append(f"{f.relative_to(ROOT)}:{line} imports the optimizer {mod}")
            if mod in ("relu_budget.cli", "pi.cli") and name not in ("pi.__main__", "relu_budget.__main__"):
                bad.append(f"{f.relative_to(ROOT)}:{line} imports the command line module {mod}")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_at_module_level():
    modules = {_module_name(f): f for f in package_files()}
    graph = {}
    for name, f in modules.items():
        deps = set()
        for _, mod, top in imports_of(f):
            if not top:
                continue
            # `from a.b import c` may name a submodule a.b.c or an attribute of a.b
            while mod and mod not in modules:
                mod = mod.rpartition(".")[0]
            if mod and mod != name:
                deps.add(mod)
        graph[name] = deps
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in graph[n]:
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_site_kinds_are_defined_once():
    from protocols import plan, site_kinds
    from relu_budget import cost_model, models, policy
    for mod in (plan, models, policy, cost_model):
        assert mod.SITE_KINDS is site_kinds.SITE_KINDS, mod.__name__
    definers = [f.relative_to(ROOT) for f in package_files()
                if any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "SITE_KINDS" for t in n.targets)
                       for n in ast.parse(f.read_text()).body)]
    assert definers == [Path("protocols/site_kinds.py")]
