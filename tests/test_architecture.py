"""The parts stay parts: no module imports itself back through others (the layers between the parts are the
import-linter contracts in pyproject.toml, checked by ``make lint``)."""

from __future__ import annotations

import grimp


def import_circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while (top := stack.pop()) != module:
                component.append(top)
            component.append(module)
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return circles


def test_the_package_has_no_import_circle():
    # imports under TYPE_CHECKING never run; a compiled extension (metrics._jf) counts as its package
    graph = grimp.build_graph("dinosavi", exclude_type_checking_imports=True)
    assert import_circles(graph) == []


def test_a_circle_is_found():
    graph = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")]:
        graph.add_import(importer=a, imported=b)
    assert import_circles(graph) == [["p.a", "p.b", "p.c"]]
