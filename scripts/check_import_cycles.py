"""List the import cycles of the `gptsovits_train` package (exit 1 when there is one).

Every `import`/`from ... import` of a package module counts, also those inside functions (a lazy import
only hides a cycle until the function runs), and importing `a.b.c` also imports the packages `a` and `a.b`.
A cycle is a strongly connected group of modules; each is printed with the edges that close it.

    python scripts/check_import_cycles.py [--module-level-only]
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "gptsovits_train"


def module_names() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path], module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    targets: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets.add(stem)
            targets.update(f"{stem}.{alias.name}" for alias in node.names)
    edges = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # `a.b.c` imports `a`, `a.b` and `a.b.c`
            prefix = ".".join(parts[:i])
            if prefix in modules and prefix != name and not name.startswith(prefix + "."):
                edges.add(prefix)
    return edges


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module-level-only", action="store_true", help="ignore imports inside functions")
    args = parser.parse_args()
    modules = module_names()
    graph = {name: imports_of(name, path, modules, args.module_level_only) for name, path in modules.items()}
    cycles = strongly_connected(graph)
    n_edges = sum(len(e) for e in graph.values())
    print(f"{len(modules)} modules, {n_edges} import edges, {len(cycles)} cycle(s)")
    for group in cycles:
        members = set(group)
        print(f"cycle of {len(group)} modules:")
        for v in group:
            inside = sorted(graph[v] & members)
            print(f"  {v} -> {', '.join(inside)}")
    return 1 if cycles else 0


if __name__ == "__main__":
    raise SystemExit(main())
