"""`socialmesh up` as an operator meets it, the service registry, and what the wheel ships.

The `up` tests run the real command in subprocesses. To keep full starts few, one
stack (`running`) is shared by the tests that need a healthy stack; the test that
kills one of its processes is the last of them in this file. Ctrl-C during start-up
launches its own `up` and interrupts it while the services are still starting.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis
from google.protobuf import descriptor_pb2

from services import registry
from services.devstack import (
    DESCRIPTOR_SET,
    StartupError,
    check_ports,
    free_stack_ports,
    lock_data_dir,
)
from services.kit.auth import load_private_key, load_public_key

from .e2e_support import UpProcess, launch_up, start_up

ROOT = Path(__file__).resolve().parent.parent
SIGINT_EXIT = 128 + signal.SIGINT


# ----------------------------------------------------------------------------- registry


def test_registry_rows_are_consistent() -> None:
    assert len(set(registry.NAMES)) == len(registry.NAMES)
    assert len({s.port for s in registry.SERVICES}) == len(registry.SERVICES)
    assert registry.BASE_PORT == min(s.port for s in registry.SERVICES)
    assert set(registry.ports(40000).values()) <= set(range(40000, 40000 + registry.port_span()))
    minters = [s for s in registry.SERVICES if s.mints_tokens]
    assert len(minters) == 1 and minters[0].implemented
    for service in registry.SERVICES:
        if service.implemented:
            spec = service.build_spec()
            assert spec.name == service.name
            assert spec.grpc_services == (service.grpc_service,)
        else:
            assert service.seeder is None, service.name
        if service.seeder:
            assert service.load_seeder().__name__ == service.seeder


def test_every_service_of_the_contracts_is_registered_under_its_grpc_name() -> None:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes()).file
    in_contracts = {
        f.package.split(".")[1]: f"{f.package}.{s.name}"
        for f in files
        if f.package.startswith("socialmesh.")
        for s in f.service
    }
    assert in_contracts == {s.name: s.grpc_service for s in registry.SERVICES}


def test_settings_default_to_registry_ports_and_the_env_overrides_them() -> None:
    defaults = registry.settings("graph", {})
    assert defaults.grpc_port == registry.get("graph").port
    assert defaults.service_addresses == {
        name: f"127.0.0.1:{port}" for name, port in registry.ports().items()
    }
    overridden = registry.settings(
        "graph",
        {"SOCIALMESH_GRPC_PORT": "6000", "SOCIALMESH_USER_ADDR": "dns:///user.socialmesh:50051"},
    )
    assert overridden.grpc_port == 6000
    assert overridden.service_addresses["user"] == "dns:///user.socialmesh:50051"
    assert overridden.service_addresses["post"] == f"127.0.0.1:{registry.get('post').port}"


# ----------------------------------------------------------------------------- pre-flight


def test_check_ports_names_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=rf"port {port} \(graph\) is not free"):
            check_ports({"edge": free_stack_ports()[0], "graph": port})
    with pytest.raises(StartupError, match=r"port 1234 is given to both edge and user"):
        check_ports({"edge": 1234, "user": 1234})


def test_data_dir_lock_is_exclusive_until_released(tmp_path: Path) -> None:
    fd = lock_data_dir(tmp_path)
    try:
        with pytest.raises(StartupError, match=rf"in use by .* \(pid {os.getpid()}\)"):
            lock_data_dir(tmp_path)
    finally:
        os.close(fd)
    os.close(lock_data_dir(tmp_path))


# ----------------------------------------------------------------------------- `up`


def run_up(data_dir: Path, log_dir: Path, ports: tuple[int, int, int]) -> tuple[int, str]:
    """Runs `up` expecting it to exit by itself; returns (exit code, output)."""
    proc = launch_up(data_dir, log_dir, ports)
    try:
        output, _ = proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # let it stop whatever it started
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        pytest.fail(f"`socialmesh up` did not exit by itself:\n{output}")
    return proc.returncode, output


def serving(processes: list[psutil.Process]) -> dict[str, psutil.Process]:
    """The `socialmesh serve <name>` processes among these, by service name."""
    found = {}
    for process in processes:
        try:
            cmdline = process.cmdline()
        except psutil.Error:  # gone, or a zombie
            continue
        if "serve" in cmdline:
            found[cmdline[cmdline.index("serve") + 1]] = process
    return found


def serve_processes(up: UpProcess) -> dict[str, psutil.Process]:
    return serving(up.descendants())


def stop_and_reap(proc: subprocess.Popen[str], seen: list[psutil.Process]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs(seen, timeout=10)
    for leftover in alive:
        leftover.kill()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    root = tmp_path_factory.mktemp("devstack")
    up = start_up(root / "data", root / "logs")
    seen = up.descendants()
    yield up
    stop_and_reap(up.proc, seen)


@pytest.fixture
def healthy(running: UpProcess) -> UpProcess:
    assert running.proc.poll() is None, "the shared stack is gone (the kill test runs last)"
    assert set(serve_processes(running)) == set(registry.IMPLEMENTED)
    return running


@pytest.mark.e2e
@pytest.mark.parametrize("clash", ["edge", "service"])
def test_second_up_on_busy_ports_fails_naming_the_port(
    healthy: UpProcess, tmp_path: Path, clash: str
) -> None:
    edge, admin, base = free_stack_ports()
    if clash == "edge":
        edge, port, role = healthy.edge_port, healthy.edge_port, "edge"
    else:
        base, port, role = healthy.base_port, healthy.base_port, registry.NAMES[0]
    code, output = run_up(tmp_path / "data", tmp_path / "logs", (edge, admin, base))
    assert code == 1, output
    assert f"port {port} ({role}) is not free" in output
    assert "socialmesh is up" not in output
    assert httpx.get(f"{healthy.edge}/healthz", timeout=5).status_code == 200


@pytest.mark.e2e
def test_second_up_on_the_same_data_dir_is_refused(healthy: UpProcess, tmp_path: Path) -> None:
    code, output = run_up(healthy.data_dir, tmp_path / "logs", free_stack_ports())
    assert code == 1, output
    assert f"data dir {healthy.data_dir} is in use" in output
    assert f"(pid {healthy.proc.pid})" in output
    assert "socialmesh is up" not in output
    # The first stack's Redis and PostgreSQL were neither shared nor shut down.
    (redis_url,) = [line.split()[-1] for line in healthy.output if line.strip().startswith("Redis")]
    assert redis.Redis.from_url(redis_url).ping()
    assert healthy.postgres_pid() is not None and psutil.pid_exists(healthy.postgres_pid() or 0)
    assert httpx.get(f"{healthy.edge}/healthz", timeout=5).status_code == 200


@pytest.mark.e2e
def test_each_service_gets_its_identity_key_and_every_public_key(healthy: UpProcess) -> None:
    keys = healthy.data_dir / "keys" / "services"
    public_dir = keys / "public"
    assert sorted(p.name for p in public_dir.glob("*.pem")) == sorted(
        f"{name}.pem" for name in registry.NAMES
    )
    for name in registry.NAMES:
        private = load_private_key(keys / f"{name}.key.pem")
        assert private.public_key() == load_public_key(public_dir / f"{name}.pem"), name
    for name, proc in serve_processes(healthy).items():
        env = proc.environ()
        assert env["SERVICE_KEY_FILE"] == str(keys / f"{name}.key.pem"), name
        assert env["SERVICE_PUBLIC_KEYS_DIR"] == str(public_dir), name
        assert ("JWT_PRIVATE_KEY_FILE" in env) == registry.get(name).mints_tokens, name


@pytest.mark.e2e
def test_a_dead_process_makes_up_exit_non_zero_with_its_log_tail(healthy: UpProcess) -> None:
    """Runs last among the `running` tests: it ends the shared stack."""
    victim = registry.IMPLEMENTED[-1]
    seen = healthy.descendants()
    last_words = (healthy.data_dir.parent / "logs" / f"{victim}.log").read_text().splitlines()
    assert last_words, "the service logs something when it starts"
    serve_processes(healthy)[victim].kill()
    try:
        healthy.proc.wait(timeout=60)
    finally:
        stop_and_reap(healthy.proc, seen)
    assert healthy.proc.stdout is not None
    output = "".join(healthy.output) + healthy.proc.stdout.read()
    assert healthy.proc.returncode == 1, output
    assert f"{victim} was killed by SIGKILL; the last lines of its log" in output
    assert last_words[-1].strip() in output  # the tail of its log is repeated
    assert not [p for p in seen if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert healthy.postgres_pid() is None  # the embedded PostgreSQL was stopped too


@pytest.mark.e2e
def test_ctrl_c_while_starting_stops_promptly_and_cleans_up(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc = launch_up(data_dir, tmp_path / "logs", free_stack_ports())
    seen: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            seen = psutil.Process(proc.pid).children(recursive=True)
            if serving(seen):
                break  # PostgreSQL and Redis are up; the services are starting
            time.sleep(0.1)
        else:
            pytest.fail("`socialmesh up` never started a service")
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
        took = time.monotonic() - interrupted
    finally:
        stop_and_reap(proc, seen)
    assert "socialmesh is up" not in output
    assert proc.returncode == SIGINT_EXIT, output
    assert "SIGINT while starting" in output
    assert took < 20, f"took {took:.1f}s to stop"
    _, alive = psutil.wait_procs(seen, timeout=1)
    assert not alive
    assert not (data_dir / "postgres" / "postmaster.pid").exists()


# ----------------------------------------------------------------------------- packaging


def test_envoy_config_works_from_an_installed_wheel(tmp_path: Path) -> None:
    """The descriptor set is package data: `envoy-config` runs outside a checkout."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for package in ("services", "gateway", "gen"):
        shutil.copytree(ROOT / package, source / package, ignore=junk)
    dist, site = tmp_path / "dist", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    # No build isolation: the venv's setuptools builds it, offline.
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)]
    subprocess.run(build, check=True, timeout=300)
    (wheel,) = dist.glob("socialmesh-*.whl")
    assert "socialmesh/socialmesh.binpb" in zipfile.ZipFile(wheel).namelist()

    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    env = {"PYTHONPATH": str(site), "PATH": str(Path(sys.executable).parent)}
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import services.devstack as d; print(d.__file__, d.DESCRIPTOR_SET)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where  # not this checkout
    assert Path(where[1]).is_file()
    rendered = subprocess.run(
        [sys.executable, "-m", "services.cli", "envoy-config", "--data-dir", str(tmp_path / "d")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rendered.returncode == 0, rendered.stderr[-3000:]
    assert "grpc_json_transcoder" in rendered.stdout


def test_test_dependencies_are_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev = {
        re.split(r"[\[<>=!~ ]", req)[0].lower() for req in project["optional-dependencies"]["dev"]
    }
    assert "psutil" in dev  # tests/e2e_support.py and this file import it


def test_children_die_with_their_parent_without_a_preexec_fork(tmp_path: Path) -> None:
    """`up`'s children get SIGTERM when it dies, through an exec wrapper rather than a
    preexec_fn (which forks a process running gRPC: grpc/grpc#43055)."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from services.devstack import die_with_parent\n"
            "child = subprocess.Popen(die_with_parent(['sleep', '60']))\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    deadline = time.monotonic() + 10
    while psutil.Process(child_pid).cmdline()[:1] != ["sleep"]:  # exec'd into the program
        assert time.monotonic() < deadline
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(child_pid) and psutil.Process(child_pid).status() != "zombie":
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.05)
