"""The tests folder itself: a test module never imports another test module (nor conftest.py), so each
one runs, and reads, alone; what several share lives in helpers.py (builders) or conftest.py (fixtures)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _test_modules_imported(source: str, package: str = "tests") -> set[str]:
    """The test modules (test_*) and conftest that `source`, a module of `package`, imports, at any depth."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            # `from tests import test_x` names a module; `from tests.test_x import y` imports from one.
            modules = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if len(parts) > 1 and parts[0] == package and (parts[1].startswith("test_") or parts[1] == "conftest"):
                found.add(".".join(parts[:2]))
    return found


def test_no_test_module_imports_another_test_module():
    # The walker sees every way of writing such an import, lazy ones inside a function included.
    sneaky = (
        "import tests.test_a\nfrom tests.test_b import x\nfrom tests import test_c\nfrom . import test_d\n"
        "from .test_e import y\nfrom .conftest import z\ndef f():\n    from tests.test_g import w\n"
        "from tests.helpers import fine\nfrom tests import squad_fixtures\nimport testsuite.test_h\n"
    )
    expected = {f"tests.test_{name}" for name in "abcdeg"} | {"tests.conftest"}
    assert _test_modules_imported(sneaky) == expected

    modules = sorted(TESTS.glob("*.py"))
    assert len([path for path in modules if path.name.startswith("test_")]) > 10
    imports = {path.name: _test_modules_imported(path.read_text(encoding="utf-8")) for path in modules}
    assert {name: found for name, found in imports.items() if found} == {}
