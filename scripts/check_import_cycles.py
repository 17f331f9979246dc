"""Fail if any module of chainrule imports itself through others: no import cycle, module by module.

python scripts/check_import_cycles.py    # make lint; exit 1 and print each cycle when there is one

Every import counts, one inside a function too (grimp reads them all); imports under
`if TYPE_CHECKING:` do not, since they never run. A cycle through a package's `__init__` counts as
well, which import-linter's `acyclic_siblings` contract would not see (it compares siblings only).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping, Sequence

import grimp

ROOT = "chainrule"


def edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    """Each chainrule module and the chainrule modules it imports."""
    return {
        module: graph.find_modules_directly_imported_by(module) & graph.modules for module in graph.modules
    }


def reachable(imports: Mapping[str, set[str]], start: str) -> set[str]:
    """The modules `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = list(imports[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(imports[module])
    return seen


def cycles(imports: Mapping[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another (a module in a cycle reaches itself).

    Reachability from every module: quadratic, and instant for a few hundred modules.
    """
    reach = {module: reachable(imports, module) for module in imports}
    groups = {
        frozenset(other for other in reach[module] if module in reach[other])
        for module in imports
        if module in reach[module]
    }
    return sorted(sorted(group) for group in groups)


def shortest_cycle(
    graph: grimp.ImportGraph, imports: Mapping[str, set[str]], component: list[str]
) -> list[str]:
    """The shortest loop of imports from the component's first module back to itself."""
    start = component[0]
    chains = [graph.find_shortest_chain(importer=module, imported=start) for module in imports[start]]
    return [start, *min((chain for chain in chains if chain is not None), key=len)]


def describe(graph: grimp.ImportGraph, loop: Sequence[str]) -> str:
    """Each import of `loop` with its line, so the one to move is easy to find."""
    lines = ["import cycle:"]
    for importer, imported in itertools.pairwise(loop):
        detail = graph.get_import_details(importer=importer, imported=imported)[0]
        lines.append(f"  {importer} -> {imported} (l.{detail['line_number']}: {detail['line_contents']})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    del argv
    graph = grimp.build_graph(ROOT, exclude_type_checking_imports=True, cache_dir=None)
    imports = edges(graph)
    found = cycles(imports)
    for component in found:
        print(describe(graph, shortest_cycle(graph, imports, component)), file=sys.stderr)
    if found:
        print("break each cycle (move the shared piece down a layer); see ARCHITECTURE.md", file=sys.stderr)
        return 1
    print("import cycles: none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
