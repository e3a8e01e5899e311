"""Production import boundaries, the twin of test_test_layout.py: an AST scan of
every import under services/ (at any depth: function-level and TYPE_CHECKING
imports are edges too), so a circle or a reach into another package's insides
fails here instead of in a newcomer's head.

Rules:

* no import cycle between the modules of one service (chat's notifications <->
  servicer was one);
* within a service only `service.py` (the wiring) imports `servicer.py`: jobs
  never import the RPC adapter;
* a service imports only the kit and itself, never another service's modules;
* the kit imports no service package and no contract of a service
  (`socialmesh.<service>.v1`); the kit's own contracts are
  `socialmesh.{api,events}`;
* the bench (services/bench.py, services/benchkit/) imports no service module
  and spells none of a service's Redis keys.

Today's exceptions are allow-listed below, each with its reason, and printed by
the tests (`pytest -s`): the lists may shrink, never grow.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "services"

#: (kit module, service contract it imports). The review (C3) moves these to a
#: `services/peers/` package; until then they are the only ones allowed.
KIT_CONTRACT_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("services.kit.cards", "socialmesh.graph.v1"): "cards carry graph relationships",
    ("services.kit.cards", "socialmesh.user.v1"): "cards are user records (user_loader)",
    ("services.kit.relcache", "socialmesh.graph.v1"): "cache of graph's relationship answers",
    ("services.kit.backfill", "socialmesh.graph.v1"): "back-fills a copy of graph's edges",
    ("services.kit.relationships", "socialmesh.graph.v1"): "a copy of graph's edges (events)",
    ("services.kit.mediaview", "socialmesh.media.v1"): "media protos shown by other services",
}

#: (bench module, service module it imports). The review (C2) replaces these
#: with a feed-owned `services/feed/probes.py`.
BENCH_IMPORT_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("services.benchkit.fanout", "services.feed.timelines"): "fan-out probe reads timelines",
}

#: (bench module, Redis key prefix it spells) of a service's private keys: the
#: bench reports the kit caches' hit counters per namespace (`_cache_stats`); a
#: stats probe owned by the services would retire these.
BENCH_KEY_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("services.bench", "user:v1"): "reads the user profile cache's hit counters",
    ("services.bench", "user-counts:v1"): "reads the user counts cache's hit counters",
    ("services.bench", "post-cards:v1"): "reads post's card cache hit counters",
    ("services.bench", "post-relationships:v1"): "reads post's relationship cache hit counters",
}

#: Service-private Redis keys start with the service's name (`feed:tl:1`,
#: `user-counts:v1`); a space after the colon is prose ("chat: 3 sends").
KEY = re.compile(r"^(?P<svc>{names})(-[a-z]+)*:(?!\s)")


def service_names() -> list[str]:
    """The services: packages under services/ with a service.py."""
    return sorted(p.parent.name for p in SERVICES.glob("*/service.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {
        module_name(p): p
        for p in SERVICES.rglob("*.py")
        if "migrations" not in p.parts and "__pycache__" not in p.parts
    }


def imports_of(path: Path, name: str, known: set[str] | dict[str, Path]) -> set[str]:
    """Every module `path` (module `name`) imports, at any depth, resolved to the
    longest known module (`from . import x` is the submodule x when there is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            subs = {f"{target}.{a.name}" for a in node.names}
            found |= {s for s in subs if s in known} or {target}
            if not subs <= set(known):
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def service_of(module: str, services: list[str]) -> str | None:
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "services" and parts[1] in services:
        return parts[1]
    return None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def intra_service_edges(edges: dict[str, set[str]], services: list[str]) -> dict[str, set[str]]:
    """Edges between modules of the same service; a submodule's import of its own
    package's __init__ counts like any other module."""
    result: dict[str, set[str]] = defaultdict(set)
    for source, targets in edges.items():
        svc = service_of(source, services)
        if svc is None:
            continue
        for target in targets:
            if service_of(target, services) == svc and target in edges:
                result[source].add(target)
    return result


def test_no_import_cycle_within_a_service() -> None:
    services = service_names()
    assert "chat" in services and "kit" not in services
    found = cycles(intra_service_edges(graph(), services))
    assert not found, f"import cycles between a service's modules: {found}"


def test_only_the_wiring_imports_the_servicer() -> None:
    services = service_names()
    offenders = sorted(
        (source, target)
        for source, targets in graph().items()
        for target in targets
        if (svc := service_of(source, services)) is not None
        and target == f"services.{svc}.servicer"
        and source != f"services.{svc}.service"
    )
    assert not offenders, f"modules importing their service's servicer (RPC adapter): {offenders}"


def test_a_service_imports_no_other_service() -> None:
    services = service_names()
    offenders = sorted(
        (source, target)
        for source, targets in graph().items()
        for target in targets
        if (svc := service_of(source, services)) is not None
        and target.startswith("services.")
        and not target.startswith((f"services.{svc}.", "services.kit."))
        and target not in (f"services.{svc}", "services.kit")
    )
    assert not offenders, f"a service may import only the kit and itself: {offenders}"


def test_the_kit_imports_no_service_and_no_service_contract() -> None:
    services = service_names()
    print("kit -> service contract exceptions (to move to services/peers/):")
    for (module, contract), why in sorted(KIT_CONTRACT_EXCEPTIONS.items()):
        print(f"  {module} -> {contract}: {why}")
    found: set[tuple[str, str]] = set()
    for source, targets in graph().items():
        if not source.startswith("services.kit"):
            continue
        for target in targets:
            parts = target.split(".")
            if target.startswith("services.") and not target.startswith("services.kit"):
                found.add((source, target))
            elif parts[0] == "socialmesh" and len(parts) > 1 and parts[1] in services:
                found.add((source, ".".join(parts[:3])))
    unexpected = sorted(found - set(KIT_CONTRACT_EXCEPTIONS))
    assert not unexpected, f"the kit imports a service or a service's contract: {unexpected}"
    stale = sorted(set(KIT_CONTRACT_EXCEPTIONS) - found)
    assert not stale, f"allow-listed kit imports that no longer exist (remove them): {stale}"


def bench_modules() -> dict[str, Path]:
    return {
        name: path
        for name, path in all_modules().items()
        if name == "services.bench" or name.startswith("services.benchkit")
    }


def bench_keys(path: Path, pattern: re.Pattern[str]) -> set[str]:
    """Service-private Redis key prefixes spelled in `path`'s string literals."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        text: str | None = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                text = first.value
        if text is not None and (match := pattern.match(text)):
            found.add(text[: match.end()] + text[match.end() :].split("{")[0].split(":")[0])
    return found


def test_the_bench_stays_outside_the_services() -> None:
    services = service_names()
    print("bench -> service internals exceptions (to replace with feed/probes.py):")
    for (module, target), why in sorted(
        {**BENCH_IMPORT_EXCEPTIONS, **BENCH_KEY_EXCEPTIONS}.items()
    ):
        print(f"  {module} -> {target}: {why}")
    modules = all_modules()
    imported = {
        (name, target)
        for name, path in bench_modules().items()
        for target in imports_of(path, name, modules)
        if service_of(target, services) is not None
    }
    pattern = re.compile(KEY.pattern.format(names="|".join(services)))
    keys = {
        (name, key) for name, path in bench_modules().items() for key in bench_keys(path, pattern)
    }
    unexpected = sorted(
        (imported - set(BENCH_IMPORT_EXCEPTIONS)) | (keys - set(BENCH_KEY_EXCEPTIONS))
    )
    assert not unexpected, f"the bench reaches into a service's modules or Redis keys: {unexpected}"
    stale = sorted((set(BENCH_IMPORT_EXCEPTIONS) - imported) | (set(BENCH_KEY_EXCEPTIONS) - keys))
    assert not stale, f"allow-listed bench reaches that no longer exist (remove them): {stale}"


def test_the_scan_finds_a_reintroduced_circle(tmp_path: Path) -> None:
    """The checks themselves: chat's old notifications <-> servicer circle (a lazy
    import one way, a TYPE_CHECKING import back) is a cycle and a servicer import."""
    package = tmp_path / "services" / "chat"
    package.mkdir(parents=True)
    (package / "servicer.py").write_text("def on_ready():\n    from . import notifications\n")
    (package / "notifications.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .servicer import ChatServicer\n"
    )
    (package / "sse.py").write_text("from .eventlog import EventLog\n")
    known = {"services.chat.servicer", "services.chat.notifications", "services.chat.sse"}
    edges = {
        name: imports_of(package / f"{name.rsplit('.', 1)[1]}.py", name, known) for name in known
    }
    assert edges["services.chat.servicer"] == {"services.chat.notifications"}
    assert edges["services.chat.notifications"] >= {"services.chat.servicer"}
    assert cycles(intra_service_edges(edges, ["chat"])) == [
        ["services.chat.notifications", "services.chat.servicer"]
    ]
