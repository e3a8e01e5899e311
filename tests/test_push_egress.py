"""The push SSRF guard (services/kit/egress.py, issue 21 T3-M2) with the dev switch off.

Pure checks of what is refused (loopback, metadata, private, CGNAT, multicast,
reserved, IPv4 hidden in IPv6, shorthand numeric hosts, internal names, http),
then real HTTP: the webhook sender never reaches a local server it must not
reach, never follows a redirect, and connects to exactly the address its
resolver checked (so a second DNS answer cannot swap it).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import aiohttp
import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from socialmesh.chat.v1 import chat_pb2

from services.chat.push import PushFailed, PushTarget, WebhookSender
from services.kit import egress
from services.kit.egress import EgressGuard, EgressRefused, refused_by_guard

from .e2e_support import UpProcess, person

PUBLIC = "93.184.215.14"


def dns(answers: dict[str, Sequence[str]]):
    """A resolver answering from a table (no DNS on test machines), one answer list per call."""
    calls: dict[str, int] = {}

    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"{host}: Name or service not known")
        calls[host] = calls.get(host, 0) + 1
        return [answers[host][min(calls[host], len(answers[host])) - 1]]

    return resolve


@dataclass
class Local:
    """A real HTTP server on 127.0.0.1: /hook answers 200, /redirect a 302 to /hook."""

    port: int = 0
    hits: list[tuple[str, str]] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


@pytest_asyncio.fixture
async def local() -> AsyncIterator[Local]:
    state = Local()

    async def hook(request: web.Request) -> web.Response:
        state.hits.append((request.path, request.headers.get("Host", "")))
        return web.Response(status=200)

    async def redirect(request: web.Request) -> web.Response:
        state.hits.append((request.path, request.headers.get("Host", "")))
        raise web.HTTPFound(state.url("/hook"))

    app = web.Application()
    app.router.add_route("*", "/hook", hook)
    app.router.add_route("*", "/redirect", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    yield state
    await runner.cleanup()


def target(url: str) -> PushTarget:
    return PushTarget(1, 2, 3, url, signing_secret="whsec_" + "A" * 44)


EVENT = chat_pb2.ChatEvent(notification=chat_pb2.Notification(notification_id=5))


# ----- what is refused (setting off) -----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://127.8.9.10/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.5/hook",
        "https://172.16.0.1/hook",
        "https://192.168.1.1/hook",
        "https://100.64.0.1/hook",
        "https://224.0.0.1/hook",
        "https://240.0.0.1/hook",
        "https://0.0.0.0/hook",
        "https://[fe80::1]/hook",
        "https://[fc00::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[::ffff:a9fe:a9fe]/hook",
        "https://[64:ff9b::7f00:1]/hook",
        "https://[2002:7f00:1::]/hook",
        "https://2130706433/hook",
        "https://0177.0.0.1/hook",
        "https://0x7f.1/hook",
        "https://redis/hook",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://chat.default.svc.cluster.local/hook",
        "https://printer.local/hook",
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
    ],
)
async def test_internal_targets_are_refused(url: str) -> None:
    guard = EgressGuard(resolve=dns({}))
    with pytest.raises(EgressRefused) as refused:
        await guard.check(url)
    assert refused.value.not_public


@pytest.mark.parametrize(
    "url",
    [
        "http://push.example.com/hook",
        "ftp://push.example.com/hook",
        "https://user:pw@push.example.com/hook",
        "https:///nohost",
    ],
)
async def test_only_plain_https_urls_are_accepted(url: str) -> None:
    with pytest.raises(EgressRefused) as refused:
        await EgressGuard(resolve=dns({"push.example.com": [PUBLIC]})).check(url)
    assert not refused.value.not_public


async def test_names_must_resolve_to_public_addresses_only() -> None:
    guard = EgressGuard(
        resolve=dns(
            {
                "push.example.com": [PUBLIC],
                "loop.example.com": ["127.0.0.1"],
                "meta.example.com": ["169.254.169.254"],
                "mapped.example.com": ["::ffff:10.0.0.1"],
            }
        )
    )
    assert await guard.check("https://push.example.com/hook") == [PUBLIC]
    assert await guard.check(f"https://{PUBLIC}/hook") == [PUBLIC]
    for name in ("loop", "meta", "mapped"):
        with pytest.raises(EgressRefused, match="resolves to"):
            await guard.check(f"https://{name}.example.com/hook")
    with pytest.raises(EgressRefused, match="does not resolve"):
        await guard.check("https://nowhere.example.com/hook")


async def test_one_internal_address_among_public_ones_refuses_the_name() -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return [PUBLIC, "10.1.2.3"]

    with pytest.raises(EgressRefused, match=r"10\.1\.2\.3"):
        await EgressGuard(resolve=mixed).check("https://mixed.example.com/hook")


async def test_a_slow_resolver_counts_as_unresolved(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hangs(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return [PUBLIC]

    monkeypatch.setattr(egress, "RESOLVE_TIMEOUT_SECONDS", 0.05)
    with pytest.raises(EgressRefused, match="does not resolve"):
        await EgressGuard(resolve=hangs).check("https://slow.example.com/hook")


async def test_the_system_resolver_is_checked_too() -> None:
    """A name the real getaddrinfo answers with loopback (`localhost`) is refused."""
    with pytest.raises(EgressRefused, match=r"resolves to .* loopback"):
        await EgressGuard().resolve_public("localhost", 443)


def test_the_dev_switch_is_off_unless_set() -> None:
    assert not EgressGuard.from_env({}).allow_loopback
    assert not EgressGuard.from_env({"PUSH_ALLOW_LOOPBACK_TARGETS": "0"}).allow_loopback
    assert EgressGuard.from_env({"PUSH_ALLOW_LOOPBACK_TARGETS": "1"}).allow_loopback


async def test_the_dev_switch_allows_loopback_only() -> None:
    guard = EgressGuard(allow_loopback=True, resolve=dns({"localhost": ["127.0.0.1"]}))
    await guard.check("http://127.0.0.1:9/hook")
    await guard.check("http://localhost:9/hook")
    for url in ("https://169.254.169.254/x", "https://10.0.0.5/x", "http://push.example.com/x"):
        with pytest.raises(EgressRefused):
            await guard.check(url)


# ----- delivery ------------------------------------------------------------------


async def test_delivery_refuses_loopback_and_never_connects(local: Local) -> None:
    sender = WebhookSender(guard=EgressGuard(resolve=dns({"loop.example.com": ["127.0.0.1"]})))
    try:
        for url in (
            local.url("/hook"),
            local.url("/hook", scheme="https"),
            local.url("/hook", host="[::ffff:127.0.0.1]", scheme="https"),
            local.url("/hook", host="loop.example.com", scheme="https"),
        ):
            with pytest.raises(PushFailed) as failed:
                await sender.send(target(url), EVENT)
            assert "refused" in str(failed.value)
    finally:
        await sender.close()
    assert local.hits == []


async def test_dns_rebinding_after_registration_is_refused_at_delivery(local: Local) -> None:
    """Public when registered, 127.0.0.1 when delivered: the connection is never made."""
    guard = EgressGuard(resolve=dns({"rebind.example.com": [PUBLIC, "127.0.0.1"]}))
    url = local.url("/hook", host="rebind.example.com", scheme="https")
    assert await guard.check(url) == [PUBLIC]
    sender = WebhookSender(guard=guard)
    try:
        with pytest.raises(PushFailed, match="refused"):
            await sender.send(target(url), EVENT)
    finally:
        await sender.close()
    assert local.hits == []


async def test_the_connection_goes_to_the_address_the_resolver_checked(local: Local) -> None:
    """No system DNS knows `pinned.example.com`: reaching the server proves the pin."""
    allowed = EgressGuard(allow_loopback=True, resolve=dns({"pinned.example.com": ["127.0.0.1"]}))
    async with aiohttp.ClientSession(connector=allowed.connector()) as session:
        async with session.get(local.url("/hook", host="pinned.example.com")) as response:
            assert response.status == 200
    assert local.hits == [("/hook", f"pinned.example.com:{local.port}")]
    refused = EgressGuard(resolve=dns({"pinned.example.com": ["127.0.0.1"]}))
    async with aiohttp.ClientSession(connector=refused.connector()) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as failed:
            await session.get(local.url("/hook", host="pinned.example.com"))
    assert "push target refused" in str(refused_by_guard(failed.value))
    assert len(local.hits) == 1


async def test_a_redirect_is_not_followed(local: Local) -> None:
    sender = WebhookSender(guard=EgressGuard(allow_loopback=True))
    try:
        with pytest.raises(PushFailed) as failed:
            await sender.send(target(local.url("/redirect")), EVENT)
    finally:
        await sender.close()
    assert "HTTP 302" in str(failed.value) and not failed.value.retry
    assert [path for path, _ in local.hits] == ["/redirect"]


# ----- through the edge of a real `socialmesh up` (the review's reproduction) ----


def error_reason(body: dict) -> str:
    (info,) = [d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    return str(info["reason"])


@pytest.mark.e2e
def test_the_edge_refuses_internal_push_targets_and_serves_the_vapid_key(
    client: httpx.Client, stack: UpProcess
) -> None:
    """T3-M2's repro: Envoy admin on loopback, metadata names; `up` has the dev switch off."""
    _, headers = person(client)
    for url in (
        f"http://127.0.0.1:{stack.edge_port}/healthcheck/fail",
        "http://localhost:9/hook",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://169.254.169.254/latest/meta-data",
        "https://[::ffff:127.0.0.1]/hook",
        "https://2130706433/hook",
    ):
        r = client.post("/v1/pushEndpoints", json={"url": url}, headers=headers)
        assert r.status_code == 400, (url, r.text)
        assert error_reason(r.json()) == "PUSH_TARGET_NOT_PUBLIC", (url, r.text)
    r = client.post(
        "/v1/pushEndpoints",
        json={"kind": "PUSH_ENDPOINT_KIND_APNS", "deviceToken": "ab" * 32},
        headers=headers,
    )
    assert r.status_code == 400 and error_reason(r.json()) == "PUSH_PROVIDER_NOT_CONFIGURED"
    config = client.get("/v1/push:config")  # anonymous
    assert config.status_code == 200, config.text
    key = config.json()["vapidPublicKey"]  # `up` makes a VAPID pair per data dir
    assert len(base64.urlsafe_b64decode(key + "=")) == 65 and key.startswith("B")
    assert "PUSH_ENDPOINT_KIND_WEB_PUSH" in config.json()["kinds"]
