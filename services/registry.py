"""Which services exist: the one table `socialmesh up`, `serve`, `seed`, `bench`,
`envoy-config`, the k8s renderer and the tests read.

It lives outside the kit on purpose: the kit is the platform and knows no
individual service. Adding a service takes its contract (`proto/socialmesh/<name>/v1/`),
its package (`services/<name>/`) and ONE row in `SERVICES` (docs/adding-a-service.md).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from services.kit.config import Settings

if TYPE_CHECKING:
    from services.kit.server import ServiceSpec


@dataclass(frozen=True)
class Service:
    name: str
    #: gRPC port on a laptop; `--base-port` moves every service's port together.
    port: int
    #: Module with `build_spec()` and `SERVICE_NAME`; None while the service is a
    #: contract only (nothing serves it yet).
    module: str | None = None
    #: Module holding this service's COPY bulk loader (`socialmesh seed`), if any.
    seeder: str | None = None
    #: Holds the access-token signing key, i.e. mints user tokens.
    mints_tokens: bool = False
    #: Concurrent requests the edge may send it (its circuit breaker); every open
    #: stream counts, so a service holding long-lived streams needs many more.
    edge_max_requests: int = 4096

    @property
    def implemented(self) -> bool:
        return self.module is not None

    @property
    def grpc_service(self) -> str:
        """Full gRPC service name, from the generated descriptor (never spelled by hand)."""
        return _grpc_service(self)

    def load(self) -> ModuleType:
        if self.module is None:
            raise LookupError(f"{self.name} is a contract only: nothing serves it yet")
        return importlib.import_module(self.module)

    def build_spec(self) -> ServiceSpec:
        spec: ServiceSpec = self.load().build_spec()
        return spec

    def load_seeder(self) -> ModuleType:
        if self.seeder is None:
            raise LookupError(f"{self.name} has no seeder")
        return importlib.import_module(self.seeder)


SERVICES: tuple[Service, ...] = (
    Service("user", 50051, "services.user.service", "services.user.seed", mints_tokens=True),
    Service("graph", 50052, "services.graph.service", "services.graph.seed"),
    Service("post", 50053, "services.post.service", "services.post.seed"),
    Service("feed", 50054, "services.feed.service"),
    Service("chat", 50055, "services.chat.service", edge_max_requests=100_000),
    Service("media", 50056, "services.media.service"),
)

BY_NAME: Mapping[str, Service] = {s.name: s for s in SERVICES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
#: What `socialmesh up` starts and `socialmesh serve` accepts.
IMPLEMENTED: tuple[str, ...] = tuple(s.name for s in SERVICES if s.implemented)
#: Default `--base-port`: the first service's port; the others keep their offsets.
BASE_PORT = SERVICES[0].port


def get(name: str) -> Service:
    try:
        return BY_NAME[name]
    except KeyError:
        raise LookupError(f"unknown service {name!r} (known: {', '.join(NAMES)})") from None


def ports(base_port: int = BASE_PORT) -> dict[str, int]:
    """Every service's gRPC port when the first one listens on `base_port`."""
    return {s.name: base_port + s.port - BASE_PORT for s in SERVICES}


def port_span() -> int:
    """How many consecutive ports `ports()` covers from the base port."""
    return max(s.port for s in SERVICES) - BASE_PORT + 1


def settings(name: str, env: Mapping[str, str] | None = None) -> Settings:
    """A service's settings from the environment, peers defaulting to their laptop ports."""
    return Settings.from_env(name, None if env is None else dict(env), default_ports=ports())


@functools.cache
def _grpc_service(service: Service) -> str:
    if service.implemented:
        name: str = service.load().SERVICE_NAME
        return name
    pb2 = importlib.import_module(f"socialmesh.{service.name}.v1.{service.name}_pb2")
    (only,) = pb2.DESCRIPTOR.services_by_name.values()
    full_name: str = only.full_name
    return full_name
