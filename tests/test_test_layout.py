"""The test suite's own layout: test modules never import each other, and a fixture is
defined once (shared ones in conftest.py), so a helper or fixture has one definition.

Support code lives in modules that are not test modules: conftest.py (fixtures),
helpers.py, e2e_support.py, edge_support.py, media_support.py, chat_support.py,
feed_support.py and search_support.py.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# Fixture names defined in more than one module on purpose, and where.
ALLOWED_DUPLICATE_FIXTURES: dict[str, set[str]] = {
    # test_chat_notifications runs its own mesh (`net`); its stubs talk to that mesh,
    # not to conftest.py's shared `mesh`.
    "graph": {"conftest.py", "test_chat_notifications.py"},
    "posts": {"conftest.py", "test_chat_notifications.py"},
    "chat": {"conftest.py", "test_chat_notifications.py"},
    # Each module's own running servicer: the chat, media or feed service's.
    "service": {
        "test_chat_service.py",
        "test_media_service.py",
        "test_feed_ranking.py",
        "test_feed_service.py",
    },
}


def modules() -> list[Path]:
    return sorted(TESTS.glob("*.py"))


def modules_of_tests() -> list[Path]:
    return [p for p in modules() if p.name.startswith("test_")]


def imported_test_modules(path: Path) -> set[str]:
    """The test modules `path` imports (relatively or as tests.test_x), at any depth."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1 and module.startswith("test_"):
                found.add(module)
            elif node.level == 0 and module.startswith("tests.test_"):
                found.add(module.removeprefix("tests."))
            elif node.level == 1 and not module:  # from . import test_x
                found |= {a.name for a in node.names if a.name.startswith("test_")}
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("tests.")
                for a in node.names
                if a.name.startswith("tests.test_")
            }
    return found


def fixture_names(path: Path) -> set[str]:
    """The names of the functions decorated with pytest.fixture (with or without args)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for deco in node.decorator_list:
            target = deco.func if isinstance(deco, ast.Call) else deco
            text = ast.unparse(target)
            if text.endswith("fixture"):  # pytest.fixture, pytest_asyncio.fixture
                name = node.name
                if isinstance(deco, ast.Call):
                    for kw in deco.keywords:
                        if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                            name = str(kw.value.value)
                names.add(name)
    return names


def test_no_test_module_imports_another() -> None:
    found = {
        (path.name, imported)
        for path in modules_of_tests()
        for imported in imported_test_modules(path)
    }
    assert not found, (
        "test modules import helpers from other test modules; move them to a support "
        f"module (helpers.py, e2e_support.py, *_support.py): {sorted(found)}"
    )


def test_the_scan_sees_each_form_of_import(tmp_path: Path) -> None:
    """The scan itself: every spelling of an import from a test module is caught."""
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "from .test_a import x\n"
        "import tests.test_b\n"
        "from tests.test_c import y\n"
        "from . import test_d\n"
        "def f():\n"
        "    from .test_e import z\n"
        "from .helpers import eventually\n"
        "from .media_support import upload\n"
    )
    assert imported_test_modules(sample) == {"test_a", "test_b", "test_c", "test_d", "test_e"}


def test_each_fixture_is_defined_once() -> None:
    where: dict[str, set[str]] = defaultdict(set)
    for path in modules():
        for name in fixture_names(path):
            where[name].add(path.name)
    duplicated = {name: files for name, files in where.items() if len(files) > 1}
    unexpected = {
        name: sorted(files)
        for name, files in duplicated.items()
        if not files <= ALLOWED_DUPLICATE_FIXTURES.get(name, set())
    }
    assert not unexpected, (
        "fixtures defined in more than one module: define shared ones once in "
        f"conftest.py (or allow-list a genuinely different one): {unexpected}"
    )
