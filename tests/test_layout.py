"""The package's layout: modules import only from lower bands (notebook numbers), so there is no import cycle.

Every import of the package counts, lazy ones inside functions included: a cycle through a lazy import still
ties two modules together.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hybrid_replication"
SOURCE = re.compile(r"File to edit: \.\./nbs/(\d+)_\w+\.ipynb")


def notebook_numbers() -> dict[str, int]:
    "Module name -> the number of the notebook it is exported from."
    out = {}
    for path in sorted(PACKAGE.glob("*.py")):
        match = SOURCE.search(path.read_text(encoding="utf-8")[:2000])
        if match:
            out[path.stem] = int(match.group(1))
    return out


def package_imports(path: Path) -> set[str]:
    "The package modules `path` imports anywhere in its code (relative or absolute)."
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("hybrid_replication."):
                found.add(node.module.split(".")[1])
            elif node.module == "hybrid_replication":
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hybrid_replication."):
                    found.add(alias.name.split(".")[1])
    return found


def import_graph() -> dict[str, set[str]]:
    numbers = notebook_numbers()
    return {name: package_imports(PACKAGE / f"{name}.py") & set(numbers) - {name} for name in numbers}


def test_every_module_comes_from_a_numbered_notebook():
    exported = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "_modidx"}
    assert exported == set(notebook_numbers())


def test_modules_import_only_from_lower_bands():
    numbers, graph = notebook_numbers(), import_graph()
    upward = sorted(
        f"{m} ({numbers[m]:02d}) imports {d} ({numbers[d]:02d})"
        for m, ds in graph.items()
        for d in ds
        if numbers[d] >= numbers[m]
    )
    assert not upward, upward


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    "One import cycle of `graph` as a path that returns to its start, or None."
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize(
    "graph, has_cycle",
    [({"a": {"b"}, "b": {"c"}, "c": set()}, False), ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True)],
)
def test_the_cycle_finder_finds_cycles(graph, has_cycle):
    assert (find_cycle(graph) is not None) == has_cycle


def test_lazy_imports_count(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from .train import train\n    import hybrid_replication.core\n")
    assert package_imports(source) == {"train", "core"}


NOTEBOOKS = PACKAGE.parent / "nbs"


def public_definitions_per_export_cell() -> list[tuple[str, list[str]]]:
    "(notebook, public function and class names) of every `#| export` code cell of the library notebooks."
    import json

    out = []
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] != "code" or not source.startswith("#| export"):
                continue
            kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            names = [n.name for n in ast.parse(source).body if isinstance(n, kinds) and not n.name.startswith("_")]
            out.append((nb.name, names))
    return out


def test_one_public_definition_per_export_cell():
    "Private helpers may sit beside the one function they serve; two public definitions get two cells."
    crowded = [(nb, names) for nb, names in public_definitions_per_export_cell() if len(names) > 1]
    assert not crowded, crowded


def long_line_share(limit: int = 120) -> float:
    "The share of lines of the exported modules (nbdev's generated `_modidx.py` aside) longer than `limit`."
    lines = [
        line
        for path in sorted(PACKAGE.glob("*.py"))
        if path.name != "_modidx.py"
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    return sum(len(line) > limit for line in lines) / len(lines)


def test_few_long_lines():
    assert long_line_share(120) < 0.02
