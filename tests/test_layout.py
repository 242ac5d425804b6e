"""The layout's contract: no import cycles in src/, and imports pointing one way (CLIs -> studies -> lab -> nn).

Every import is found with `ast`, wherever it is written: at module level, inside functions (the lazy imports
that keep `--help` fast) and under `if TYPE_CHECKING:` -- a cycle through any of them is still a cycle a
reader has to untangle. Two graphs are checked: modules (src.lab.job -> src.lab.records ...) and packages
(src.lab -> src.nn ...), the latter also against ALLOWED below.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIS = ("src.train", "src.gradcheck", "src.register", "src.__main__")
LOWER = ("src.nn", "src.files", "src.cli_args", "src.shutdown", "src.plots", "src.data", "src.lab")
# package -> the packages it may import besides itself. Everything else is against the direction.
ALLOWED: dict[str, set[str]] = {
    "src": set(),
    "src.nn": set(),
    "src.files": set(),
    "src.cli_args": {"src.files"},  # argparse types with one-line errors, for every CLI (src.data's included)
    "src.shutdown": set(),  # every CLI's quick exit (src.data's included)
    "src.plots": set(),
    "src.data": {"src.plots", "src.files", "src.cli_args", "src.shutdown"},
    "src.lab": {"src.nn", "src.data", "src.plots", "src.files"},
    "src.studies": {*LOWER},
    "src.report": {"src.studies", *LOWER},
    **{cli: {"src.studies", "src.report", *LOWER} for cli in CLIS},
    "src.__main__": {"src.train"},
    "hydra_plugins": {"src.lab"},
}


def modules(root: Path, top: str) -> dict[str, Path]:
    """{dotted module name: file} of every .py file of package `top` under `root` (packages as their __init__)."""
    out = {}
    for path in sorted((root / top).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported module of `known`, line) for every import statement of the file, wherever it is written."""
    package = name if _is_package(path) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import src.lab.job.x` is not a module: its deepest existing parent
                t = t.rpartition(".")[0]
            if t and t != name:
                yield t, node.lineno


def package_of(module: str) -> str:
    """src.lab.job -> src.lab; src.files -> src.files; hydra_plugins.x -> hydra_plugins."""
    parts = module.split(".")
    return parts[0] if parts[0] != "src" else ".".join(parts[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def import_graph(root: Path, tops: tuple[str, ...]) -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    """Module graph of the packages `tops` under `root`, and where each edge is written (file:line)."""
    known: dict[str, Path] = {}
    for top in tops:
        known |= modules(root, top)
    graph: dict[str, set[str]] = {m: set() for m in known}
    where: dict[tuple[str, str], str] = {}
    for name, path in known.items():
        for target, line in imports(name, path, known):
            graph[name].add(target)
            where.setdefault((name, target), f"{path.relative_to(root)}:{line}")
    return graph, where


def violations(graph: dict[str, set[str]], where: dict[tuple[str, str], str],
               allowed: dict[str, set[str]]) -> list[str]:
    out = []
    for a, targets in graph.items():
        pa = package_of(a) if package_of(a) in allowed else a
        for b in targets:
            pb = package_of(b)
            if pa in (pb, b) or pb == "src":
                continue
            if pa not in allowed:
                out.append(f"{where[a, b]}: {a} is in no known package; add it to tests/test_layout.py ALLOWED")
            elif pb not in allowed[pa] and b not in allowed[pa]:
                out.append(f"{where[a, b]}: {a} imports {b}, against the direction ({pa} may import: "
                           f"{', '.join(sorted(allowed[pa])) or 'nothing of src'})")
    return out


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    pg: dict[str, set[str]] = {}
    for a, targets in graph.items():
        pg.setdefault(package_of(a), set()).update(package_of(b) for b in targets if package_of(b) != package_of(a))
    return pg


# ------------------------------------------------------------------------------------------------ the project


@pytest.fixture(scope="module")
def project() -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    return import_graph(ROOT, ("src", "hydra_plugins"))


def test_no_module_cycles(project: tuple[dict[str, set[str]], dict[tuple[str, str], str]]) -> None:
    graph, where = project
    found = cycles(graph)
    detail = ["; ".join(f"{where[a, b]} ({a} -> {b})" for a in c for b in graph[a] if b in c) for c in found]
    assert not found, "import cycles:\n" + "\n".join(detail)


def test_no_package_cycles(project: tuple[dict[str, set[str]], dict[tuple[str, str], str]]) -> None:
    graph, _ = project
    assert not cycles(_package_graph(graph))


def test_imports_point_one_way(project: tuple[dict[str, set[str]], dict[tuple[str, str], str]]) -> None:
    graph, where = project
    bad = violations(graph, where, ALLOWED)
    assert not bad, "\n".join(bad)


def test_the_walk_sees_every_kind_of_import(project: tuple[dict[str, set[str]], dict[tuple[str, str], str]]) -> None:
    graph, _ = project
    assert "src.lab.job" in graph["src.lab.packing"]  # written inside a function
    assert "src.plots.data" in graph["src.data.store"]  # inside a function, and `from pkg import mod` resolved
    assert {"src.lab.sweeper"} <= graph["hydra_plugins.nnlab_sweeper.vectorized_sweeper"]
    assert not any(t.startswith("src.") and not t.startswith("src.nn") for m, ts in graph.items()
                   if m.startswith("src.nn") for t in ts), "src.nn imports nothing of nnlab"


def test_the_checker_fails_on_a_cycle_and_a_wrong_direction(tmp_path: Path) -> None:
    """The checks above can fail: a synthetic package with a cycle through a TYPE_CHECKING import."""
    pkg = tmp_path / "src"
    (pkg / "lab").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "lab" / "__init__.py").write_text("")
    (pkg / "studies.py").write_text("")
    (pkg / "lab" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (pkg / "lab" / "b.py").write_text("def f():\n    from src.lab import a\n    import src.studies\n")
    graph, where = import_graph(tmp_path, ("src",))
    assert cycles(graph) == [["src.lab.a", "src.lab.b"]]
    bad = violations(graph, where, {"src.lab": set(), "src.studies": {"src.lab"}})
    assert len(bad) == 1 and "src/lab/b.py:3: src.lab.b imports src.studies, against the direction" in bad[0]
