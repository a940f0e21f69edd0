"""The house rules of the layout (docs/architecture.md), checked on the source tree:

- no import cycle among playground/ and ui/ modules (every import counts, lazy ones inside functions too;
  only `if TYPE_CHECKING:` blocks are left out);
- at most five loose modules in playground/ (the rest lives in wings named after their concept);
- tests mirror the package: no loose engine tests, and no `sys.path.insert` in tests (pytest's
  `pythonpath = ["."]` and `python -m` put the repository on the path).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_names() -> dict[str, Path]:
    mods = {}
    for p in [*(ROOT / "playground").rglob("*.py"), *(ROOT / "ui").rglob("*.py")]:
        parts = p.relative_to(ROOT).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def imports_of(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The playground/ui modules `name` imports (a `from a.b import c` counts as a.b.c when c is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_among_playground_and_ui_modules():
    mods = module_names()
    graph = {name: imports_of(name, path, mods) for name, path in mods.items()}
    assert cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_at_most_five_loose_modules_in_playground():
    loose = sorted(p.name for p in (ROOT / "playground").glob("*.py"))
    assert len(loose) <= 5, loose


def test_engine_tests_live_under_tests_lm_and_no_test_edits_sys_path():
    assert not [p.name for p in (ROOT / "tests").glob("test_*.py") if p.name not in {"test_app.py", "test_layout.py"}]
    edits = [p for p in (ROOT / "tests").rglob("*.py") if p.name != "test_layout.py"
             and any(isinstance(n, ast.Attribute) and n.attr == "insert" and ast.unparse(n.value) == "sys.path"
                     for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))]
    assert edits == []
