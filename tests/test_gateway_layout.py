"""The edge package's shape, the gateway/ twin of test_import_rules.py: modules of one job
each (none grows past ~600 lines again, as envoy_config.py did to 1,820), no import
circle between them, and no import of a service (the services may import the gateway's
settings; the gateway spells what it needs of a service and tests compare the two)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = ROOT / "gateway"
MAX_LINES = 600


def gateway_modules() -> dict[str, Path]:
    return {f"gateway.{p.stem}": p for p in sorted(GATEWAY.glob("*.py")) if p.stem != "__init__"}


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `from .routes import ...` inside gateway/
                base = "gateway" + (f".{node.module}" if node.module else "")
                found.add(base)
                if not node.module:
                    found.update(f"gateway.{alias.name}" for alias in node.names)
            elif node.module:
                found.add(node.module)
    return found


def test_no_gateway_module_is_over_600_lines() -> None:
    long = {
        name: n
        for name, path in gateway_modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these by job (gateway/envoy_config.py names the parts): {long}"


def test_gateway_modules_form_no_import_circle() -> None:
    modules = gateway_modules()
    edges = {name: imports_of(path) & set(modules) for name, path in modules.items()}
    circles: list[list[str]] = []

    def visit(name: str, trail: list[str]) -> None:
        for target in sorted(edges[name]):
            if target in trail:
                circles.append([*trail[trail.index(target) :], target])
            elif len(trail) <= len(modules):
                visit(target, [*trail, target])

    for name in modules:
        visit(name, [name])
    assert circles == []


def test_the_gateway_imports_no_service() -> None:
    reaching = {
        name: sorted(i for i in imports_of(path) if i == "services" or i.startswith("services."))
        for name, path in gateway_modules().items()
    }
    assert {name: found for name, found in reaching.items() if found} == {}


def test_the_circle_check_sees_a_circle(tmp_path: Path) -> None:
    """The scan reads relative imports, which is how gateway modules import each other."""
    module = tmp_path / "m.py"
    module.write_text("from .routes import route_config\nfrom . import limits\n")
    assert {"gateway.routes", "gateway.limits"} <= imports_of(module)
