"""The package's import graph: no cycle, and no module imports from a later stage of the data flow.

Every import of a peftqa module counts, at the top of a file or inside a function (a lazy import
hides a cycle from Python, not from a reader). A module or package that is not in STAGES fails the
test: a new one must be given its place.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from peftqa.stages import STAGES as PACKAGE_STAGES

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "peftqa"

STAGES = [names for _, names, _ in PACKAGE_STAGES]
STAGE_OF = {name: number for number, names in enumerate(STAGES) for name in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 2:
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The peftqa modules `path` imports (relative imports resolved; `from peftqa import x` is x).

    Importing a package's submodule runs the package's __init__ first, but that is Python's order, not
    a dependency: only the submodule counts.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("peftqa"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if not module.startswith("peftqa"):
                continue
            # `from package import module` imports that module; any other name comes from `module` itself.
            submodules = {f"{module}.{alias.name}" for alias in node.names} & known
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(module)
    return {module for module in found if module in known and module != name and module != "peftqa"}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _stage(module: str) -> int:
    top = module.split(".")[1] if module != "peftqa" else "__init__"
    if top not in STAGE_OF:
        raise AssertionError(f"{module}: not in src/peftqa/stages.py STAGES; give it its place in the data flow")
    return STAGE_OF[top]


def test_every_module_has_a_stage():
    for module in _graph():
        _stage(module)


def test_no_module_imports_from_a_later_stage():
    graph = _graph()
    upward = [
        f"{module} (stage {_stage(module)}) imports {target} (stage {_stage(target)})"
        for module, targets in graph.items()
        for target in targets
        if _stage(target) > _stage(module)
    ]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    edges = graph
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target) :] + [target]))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_the_walker_sees_lazy_and_relative_imports(tmp_path):
    source = "def f():\n    from peftqa.training.loop import train\n    from . import files\n"
    (tmp_path / "x.py").write_text(source)
    # parse as if it were peftqa/x.py
    found = _imports(tmp_path / "x.py", "peftqa.x", {"peftqa.training.loop", "peftqa.files"})
    assert found == {"peftqa.training.loop", "peftqa.files"}


@pytest.mark.parametrize("module", ["peftqa.nowhere"])
def test_a_module_without_a_stage_fails(module):
    with pytest.raises(AssertionError, match="give it its place"):
        _stage(module)


def test_no_module_is_over_400_lines():
    """One job per module: a module that grows past 400 lines holds two jobs and should be split."""
    roots = [PACKAGE, PACKAGE.parents[1] / "tests", PACKAGE.parents[1] / "benchmarks", PACKAGE.parents[1] / "tools"]
    long = [
        f"{path.relative_to(PACKAGE.parents[1])}: {count} lines"
        for root in roots
        for path in sorted(root.rglob("*.py"))
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > 400
    ]
    assert long == []
