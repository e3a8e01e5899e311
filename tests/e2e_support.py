"""Support for end-to-end tests: a real `socialmesh up` in a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port_block(size: int) -> int:
    """A base port with `size` consecutive free ports after it."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
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


def start_up(data_dir: Path, log_dir: Path) -> UpProcess:
    base = _free_port_block(10)
    edge_port, admin_port, service_base = base, base + 1, base + 2
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    proc = subprocess.Popen(
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
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
