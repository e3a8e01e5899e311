"""Support for end-to-end tests: a real `socialmesh up` in a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from services.devstack import free_stack_ports

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(client: httpx.Client, handle: str | None = None) -> dict:
    from .conftest import unique  # conftest imports this module: import late

    handle = handle or unique()
    r = client.post(
        "/v1/users",
        json={
            "handle": handle,
            "displayName": handle.title(),
            "email": f"{handle}@example.com",
            "password": PASSWORD,
        },
    )
    assert r.status_code == 200, r.text
    return r.json()


def login(client: httpx.Client, handle: str) -> dict:
    r = client.post("/v1/auth:login", json={"handle": handle, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()


def field_violations(body: dict) -> dict[str, str]:
    out = {}
    for detail in body.get("details", []):
        for v in detail.get("fieldViolations", []):
            out[v["field"]] = v["description"]
    return out


def eventually(check: Callable[[], bool], within: float = 20.0) -> None:
    """Waits (polling, synchronously) for an effect seen through the edge."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def person(client: httpx.Client, private: bool = False) -> tuple[str, dict[str, str]]:
    user = register(client)
    headers = bearer(login(client, user["handle"])["accessToken"])
    if private:
        r = client.patch(
            f"/v1/users/{user['userId']}",
            params={"updateMask": "isPrivate"},
            json={"isPrivate": True},
            headers=headers,
        )
        assert r.status_code == 200, r.text
    return user["userId"], headers


@dataclass
class UpProcess:
    proc: subprocess.Popen[str]
    edge: str
    edge_port: int
    base_port: int
    data_dir: Path
    output: list[str]

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def postgres_pid(self) -> int | None:
        pidfile = self.data_dir / "postgres" / "postmaster.pid"
        return int(pidfile.read_text().split()[0]) if pidfile.exists() else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def launch_up(data_dir: Path, log_dir: Path, ports: tuple[int, int, int]) -> subprocess.Popen[str]:
    """`socialmesh up` in a subprocess (stdout and stderr merged), not waited for."""
    edge_port, admin_port, service_base = ports
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    # Every e2e client but the security tests' is 127.0.0.1: per-client limits
    # sized for one person would throttle the whole suite (the limits themselves
    # are tested in-process and per source address in test_security.py).
    env.update(
        {
            "USER_REGISTRATIONS_PER_CLIENT_PER_HOUR": "100000",
            "USER_LOGIN_ATTEMPTS_PER_CLIENT": "100000",
            "USER_LOGIN_FAILURES_PER_CLIENT": "100000",
            "SEARCH_ANONYMOUS_PER_MINUTE": "100000",
        }
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "up",
            "--edge-port",
            str(edge_port),
            "--admin-port",
            str(admin_port),
            "--base-port",
            str(service_base),
            "--data-dir",
            str(data_dir),
            "--log-dir",
            str(log_dir),
            # One loopback client runs the whole suite; the per-client bucket is
            # tested on an edge of its own (test_security.py, L8).
            "--edge-rate-limit-per-client",
            "100000",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def start_up(data_dir: Path, log_dir: Path) -> UpProcess:
    ports = free_stack_ports()
    edge_port, _, service_base = ports
    proc = launch_up(data_dir, log_dir, ports)
    output: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line)
        if "Ctrl-C stops everything" in line:
            return UpProcess(
                proc, f"http://127.0.0.1:{edge_port}", edge_port, service_base, data_dir, output
            )
    proc.kill()
    logs = "".join(p.read_text() for p in log_dir.glob("*.log")) if log_dir.exists() else ""
    raise AssertionError("socialmesh up did not come up:\n" + "".join(output) + logs)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    root = tmp_path_factory.mktemp("e2e")
    up = start_up(root / "data", root / "logs")
    yield up
    up.stop()


@pytest.fixture(scope="session")
def client(stack: UpProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.edge, timeout=20) as c:
        yield c


def spawn_envoy(config: Path, port: int) -> subprocess.Popen[bytes]:
    """An Envoy of a test's own (its own edge settings) on `port`; stop it with terminate()."""
    from services.devstack import envoy_binary

    return subprocess.Popen(
        [
            envoy_binary(),
            "-c",
            str(config),
            "--disable-hot-restart",
            "--log-level",
            "error",
            "--base-id",  # several Envoys on one machine need distinct shared-memory ids
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def own_edge(
    stack: UpProcess, tmp_path: Path, scheme: str = "http", **edge: object
) -> Iterator[str]:
    """A second Envoy in front of the running stack's services, with its own settings."""
    from services import registry
    from services.devstack import edge_yaml, free_port_block, jwt_key_pair

    port = free_port_block(2)
    _, public_key = jwt_key_pair(stack.data_dir / "keys")
    ports = registry.ports(stack.base_port)
    config = tmp_path / "envoy.yaml"
    config.write_text(
        edge_yaml(
            {name: ("127.0.0.1", ports[name]) for name in registry.IMPLEMENTED},
            edge_port=port,
            admin_port=port + 1,
            bind_address="127.0.0.1",
            public_key_file=public_key,
            issuer="socialmesh",
            audience="socialmesh-api",
            **edge,  # type: ignore[arg-type]
        )
    )
    proc = spawn_envoy(config, port)
    try:
        url = f"{scheme}://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1, verify=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "second edge did not come up"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
