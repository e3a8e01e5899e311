"""docs/events.md names exactly the consumer groups the services register.

A group is registered in code as a string literal passed to `.consume(...)`
or, for a consumer class (`kit.consumers.ConsumerGroup`), as a `GROUP = "..."`
in its module or class. The catalogue names a group as "<service> `<group>`"
(`chat `chat-notifications``) or "group `<group>`".
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "services"
CATALOGUE = ROOT / "docs" / "events.md"


def service_names() -> list[str]:
    return sorted(p.parent.name for p in SERVICES.glob("*/service.py"))


def groups_in(source: str) -> set[str]:
    """Groups registered in one module's source."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "consume"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        if (
            any(isinstance(t, ast.Name) and t.id == "GROUP" for t in targets)
            and isinstance(value, ast.Constant)
            and isinstance(value.value, str)
        ):
            found.add(value.value)
    return found


def registered_groups() -> dict[str, set[str]]:
    """Group -> the modules that register it."""
    where: dict[str, set[str]] = {}
    for path in SERVICES.rglob("*.py"):
        for group in groups_in(path.read_text()):
            where.setdefault(group, set()).add(str(path.relative_to(ROOT)))
    return where


def catalogued_groups() -> set[str]:
    text = CATALOGUE.read_text()
    names = "|".join(service_names())
    return set(re.findall(rf"\b(?:{names}|group) `([a-z][a-z0-9-]*)`", text))


def test_the_catalogue_names_every_registered_group_and_no_other() -> None:
    registered = registered_groups()
    # The scan sees both registration styles (a literal and a consumer class).
    assert {"chat-notifications", "chat-media-status", "user-counts"} <= set(registered)
    catalogued = catalogued_groups()
    missing = {g: sorted(where) for g, where in registered.items() if g not in catalogued}
    assert not missing, f"consumer groups registered but not in docs/events.md: {missing}"
    unknown = sorted(catalogued - set(registered))
    assert not unknown, f"docs/events.md names groups no service registers: {unknown}"


def consumer_classes(source: str) -> dict[str, set[str]]:
    """Classes that declare a `GROUP` -> the names they define."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        names: set[str] = set()
        for item in node.body:
            if isinstance(item, ast.Assign):
                names |= {t.id for t in item.targets if isinstance(t, ast.Name)}
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                names.add(item.target.id)
            elif isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(item.name)
        if "GROUP" in names:
            found[node.name] = names
    return found


def test_every_consumer_class_declares_its_start_and_handlers() -> None:
    """The `kit.consumers.ConsumerGroup` shape: GROUP, START and handlers(), one class
    per group, so a servicer registers each one the same way."""
    incomplete: dict[str, list[str]] = {}
    classes = 0
    for path in SERVICES.rglob("*.py"):
        for name, names in consumer_classes(path.read_text()).items():
            classes += 1
            missing = sorted({"GROUP", "START", "handlers"} - names)
            if missing:
                incomplete[f"{path.relative_to(ROOT)}:{name}"] = missing
    assert classes >= 2  # chat's two, at least
    assert not incomplete, f"consumer classes without GROUP, START or handlers(): {incomplete}"


def test_the_scan_sees_each_registration_style() -> None:
    source = (
        'GROUP = "a"\n'
        "class C:\n"
        '    GROUP: ClassVar[str] = "b"\n'
        "async def on_ready(self):\n"
        '    await self.consume("c", handlers, start=Start.LATEST)\n'
        "    await self.consume(job.GROUP, job.handlers(), start=job.START)\n"
        'LOG_GROUP = "not-a-registration"\n'
    )
    assert groups_in(source) == {"a", "b", "c"}
