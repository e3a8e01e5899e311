"""Graceful drain: an instance rolled out from under steady load through the edge fails nothing.

Two instances of the user service sit behind a real Envoy (one cluster, two
endpoints). While clients keep calling through the edge, one instance stops the
way SIGTERM stops it (health NOT_SERVING, drain, refuse, exit). Envoy retries
what that instance refused (connect-failure, refused-stream; reads also
unavailable and reset) on the other host (`previous_hosts`) and its health check
ejects the stopped one, so no client sees an error.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from gateway.envoy_config import EdgeSettings, Upstream, render_yaml
from services import registry
from services.devstack import DESCRIPTOR_SET, free_port_block
from services.kit.auth import jwks_json, load_public_key
from services.kit.server import ServiceHost

from .conftest import Infra, Mesh
from .e2e_support import spawn_envoy

pytestmark = pytest.mark.e2e


async def start_user_instance(infra: Infra, mesh: Mesh, drain_delay: float) -> ServiceHost:
    host = ServiceHost(
        registry.get("user").build_spec(),
        infra.settings(
            "user",
            {
                **mesh.env,
                "SOCIALMESH_GRPC_PORT": "0",
                "DRAIN_DELAY_SECONDS": str(drain_delay),
                "SHUTDOWN_GRACE_SECONDS": "2",
            },
        ),
    )
    await host.start()
    return host


def edge_config(infra: Infra, mesh: Mesh, user_ports: list[int], port: int) -> str:
    upstreams = []
    for name in registry.IMPLEMENTED:
        service = registry.get(name)
        if name == "user":
            first, *others = user_ports
            upstreams.append(
                Upstream(
                    name=name,
                    host="127.0.0.1",
                    port=first,
                    grpc_service=service.grpc_service,
                    replicas=tuple(("127.0.0.1", p) for p in others),
                )
            )
        else:
            host, _, peer_port = mesh[name].address.rpartition(":")
            upstreams.append(
                Upstream(
                    name=name, host=host, port=int(peer_port), grpc_service=service.grpc_service
                )
            )
    settings = EdgeSettings(
        edge_port=port,
        admin_port=port + 1,
        jwks_json=jwks_json([load_public_key(infra.public_key_file)]),
        descriptor_path=DESCRIPTOR_SET,
    )
    return render_yaml(settings, upstreams)


@pytest.mark.parametrize("drain_delay", [0.0, 5.0])
async def test_rolling_an_instance_under_load_fails_no_request(
    infra: Infra, mesh: Mesh, make_person, tmp_path: Path, drain_delay: float
) -> None:
    person = await make_person()
    leaving = await start_user_instance(infra, mesh, drain_delay)
    staying = await start_user_instance(infra, mesh, 0)
    port = free_port_block(2)
    config = tmp_path / "envoy.yaml"
    config.write_text(edge_config(infra, mesh, [leaving.port, staying.port], port))
    envoy = spawn_envoy(config, port)
    codes: Counter[int] = Counter()
    failures: list[str] = []
    try:
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            deadline = time.monotonic() + 30
            while True:  # wait for the edge and both instances' health checks
                try:
                    r = await client.get("/v1/auth:caller", headers=dict(person.md))
                    if r.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "edge did not come up"
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.5)  # both endpoints healthy

            async def load(seconds: float, rate: float = 80.0) -> None:
                """Open loop: a request every 1/rate s whatever the previous did."""

                async def one() -> None:
                    try:
                        r = await client.get("/v1/auth:caller", headers=dict(person.md))
                        codes[r.status_code] += 1
                        if r.status_code != 200:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                    except httpx.HTTPError:
                        codes[0] += 1

                tasks = []
                start = time.monotonic()
                i = 0
                while (now := time.monotonic()) < start + seconds:
                    tasks.append(asyncio.create_task(one()))
                    i += 1
                    await asyncio.sleep(max(0.0, start + i / rate - now))
                await asyncio.gather(*tasks)

            loading = asyncio.create_task(load(8.0 + drain_delay))
            await asyncio.sleep(2.0)
            await leaving.stop()  # SIGTERM's path, mid-load
            await loading
    finally:
        envoy.terminate()
        envoy.wait(timeout=10)
        await staying.stop()
    assert sum(codes.values()) > 400
    assert codes == Counter({200: sum(codes.values())}), (codes, failures[:5])
