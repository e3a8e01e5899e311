"""Push endpoints of every kind against real PostgreSQL and real local HTTP servers.

Registration: the SSRF guard's reason (PUSH_TARGET_NOT_PUBLIC), unconfigured
providers (PUSH_PROVIDER_NOT_CONFIGURED), a webhook's `whsec_` secret. Delivery,
each through the real worker and sender to a local server standing in for the
receiver or provider: a Standard Webhooks signature checked with the secret;
a Web Push body decrypted with the subscription's private key (RFC 8291) and
its VAPID JWT verified (RFC 8292); APNs' ES256 provider JWT and topic; FCM's
OAuth token minted from a service account, then the message JSON. And
GetPushConfig on the real chat service, anonymously.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import grpc
import http_ece
import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from multidict import CIMultiDict
from py_vapid import b64urlencode
from socialmesh.chat.v1 import chat_pb2

from services.chat.eventlog import EventLog, Wakeups
from services.chat.notifications import Notifications, PushProviders
from services.chat.notifications.apns import ApnsConfig
from services.chat.notifications.fcm import FcmConfig
from services.chat.notifications.webpush import VapidConfig
from services.chat.push import PushConfig
from services.kit.db import Database
from services.kit.egress import EgressGuard
from services.kit.errors import FailedPrecondition, InvalidArgument, Reason
from services.kit.ids import IdGenerator
from services.kit.migrations import migrate
from services.kit.pagination import PageTokens

from .helpers import reason_of

CHAT_MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "chat" / "migrations"
IDS = IdGenerator(12)
ME = 9_100_001
APNS_TOKEN = "a1" * 32
FCM_TOKEN = "fcm-registration-token:" + "x" * 40


def table_dns(answers: dict[str, str]):
    async def resolve(host: str, port: int) -> list[str]:
        if host in answers:
            return [answers[host]]
        raise OSError(f"{host}: Name or service not known")

    return resolve


@dataclass
class Provider:
    """A real HTTP server on 127.0.0.1 recording every request; `answer` scripts replies."""

    base: str = ""
    requests: list[tuple[str, Mapping[str, str], bytes]] = field(default_factory=list)
    answer: Callable[[web.Request, bytes], Awaitable[web.Response]] | None = None

    def on(self, path_prefix: str) -> list[tuple[str, Mapping[str, str], bytes]]:
        return [r for r in self.requests if r[0].startswith(path_prefix)]


@pytest_asyncio.fixture
async def provider() -> AsyncIterator[Provider]:
    state = Provider()

    async def record(request: web.Request) -> web.Response:
        body = await request.read()
        state.requests.append((request.path_qs, CIMultiDict(request.headers), body))
        if state.answer is not None:
            return await state.answer(request, body)
        return web.Response(status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


Build = Callable[[PushProviders], Awaitable[Notifications]]


@pytest_asyncio.fixture
async def push_kit(db: Database, redis) -> AsyncIterator[Build]:
    """Builds Notifications with the given providers on a fresh schema migrated like chat's."""
    built: list[Notifications] = []

    async def build(providers: PushProviders) -> Notifications:
        schema = f"chatp_{uuid.uuid4().hex[:10]}"
        async with db.primary.acquire() as conn:
            await migrate(conn, schema, CHAT_MIGRATIONS)

        async def nobody_online(user_ids: Any) -> set[int]:
            return set()

        async def no_messages(user_id: int) -> tuple[int, int]:
            return (0, 0)

        n = Notifications(
            db,
            IDS,
            PageTokens(b"test-page-token-secret-0123456789"),
            events=EventLog(schema),
            wakeups=Wakeups(redis),
            graph=None,  # type: ignore[arg-type]  # no activity is grouped here
            is_online=nobody_online,
            message_unread=no_messages,
            schema=schema,
            push_config=PushConfig(first_backoff_seconds=0.05, poll_seconds=0.05),
            providers=providers,
        )
        built.append(n)
        return n

    yield build
    for n in built:
        await n.stop()


def create(**endpoint: Any) -> chat_pb2.CreatePushEndpointRequest:
    return chat_pb2.CreatePushEndpointRequest(push_endpoint=chat_pb2.PushEndpoint(**endpoint))


def message_event(text: str = "see you at eight") -> chat_pb2.ChatEvent:
    return chat_pb2.ChatEvent(
        message=chat_pb2.Message(message_id=77, conversation_id=42, sender_id=5, text=text)
    )


async def push_once(n: Notifications, event: chat_pb2.ChatEvent) -> None:
    """Queues the event for ME and runs one round of the real worker."""
    async with n._db.transaction() as conn:
        await n.enqueue_push(conn, [ME], event)
    assert await n.push_worker.run_once() == 1


def local_only() -> EgressGuard:
    """The dev switch on (a local server stands in for the receiver)."""
    return EgressGuard(allow_loopback=True)


# ----- registration --------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.7/hook",
        "https://loop.example.com/hook",
        "https://redis/hook",
    ],
)
async def test_internal_webhook_targets_are_refused_with_a_reason(
    push_kit: Build, url: str
) -> None:
    n = await push_kit(
        PushProviders(guard=EgressGuard(resolve=table_dns({"loop.example.com": "127.0.0.1"})))
    )
    with pytest.raises(InvalidArgument) as refused:
        await n.create_push_endpoint(ME, create(url=url))
    assert refused.value.reason == Reason.PUSH_TARGET_NOT_PUBLIC
    assert [f for f, _ in refused.value.violations] == ["pushEndpoint.url"]


async def test_http_is_refused_without_the_dev_switch(push_kit: Build) -> None:
    n = await push_kit(
        PushProviders(guard=EgressGuard(resolve=table_dns({"push.example.com": "93.184.215.14"})))
    )
    with pytest.raises(InvalidArgument) as refused:
        await n.create_push_endpoint(ME, create(url="http://push.example.com/hook"))
    assert refused.value.violations == [("pushEndpoint.url", "must be https")]
    assert refused.value.reason == Reason.INVALID_ARGUMENT
    with pytest.raises(InvalidArgument) as local:  # the review's repro: internal first
        await n.create_push_endpoint(ME, create(url="http://127.0.0.1:28901/healthcheck/fail"))
    assert local.value.reason == Reason.PUSH_TARGET_NOT_PUBLIC


@pytest.mark.parametrize(
    "endpoint",
    [
        {
            "kind": chat_pb2.PUSH_ENDPOINT_KIND_WEB_PUSH,
            "url": "https://push.example.com/x",
            "web_push_keys": chat_pb2.WebPushKeys(p256dh="x", auth="y"),
        },
        {"kind": chat_pb2.PUSH_ENDPOINT_KIND_APNS, "device_token": APNS_TOKEN},
        {"kind": chat_pb2.PUSH_ENDPOINT_KIND_FCM, "device_token": FCM_TOKEN},
    ],
)
async def test_unconfigured_providers_are_refused(push_kit: Build, endpoint: dict) -> None:
    n = await push_kit(PushProviders(guard=EgressGuard()))
    with pytest.raises(FailedPrecondition) as refused:
        await n.create_push_endpoint(ME, create(**endpoint))
    assert refused.value.reason == Reason.PUSH_PROVIDER_NOT_CONFIGURED


async def test_bad_device_tokens_and_keys_are_invalid(push_kit: Build, tmp_path: Path) -> None:
    n = await push_kit(
        PushProviders(
            guard=EgressGuard(resolve=table_dns({"push.example.com": "93.184.215.14"})),
            vapid=new_vapid(),
            apns=apns_config(tmp_path, "https://apns.invalid"),
        )
    )
    bad = [
        create(kind=chat_pb2.PUSH_ENDPOINT_KIND_APNS, device_token="../../admin"),
        create(
            kind=chat_pb2.PUSH_ENDPOINT_KIND_WEB_PUSH,
            url="https://push.example.com/x",
            web_push_keys=chat_pb2.WebPushKeys(p256dh="AAAA", auth="AAAA"),
        ),
    ]
    for request in bad:
        with pytest.raises(InvalidArgument):
            await n.create_push_endpoint(ME, request)


# ----- webhooks: Standard Webhooks signatures ------------------------------------


async def test_a_delivered_webhook_carries_a_valid_signature(
    push_kit: Build, provider: Provider
) -> None:
    n = await push_kit(PushProviders(guard=local_only()))
    endpoint = await n.create_push_endpoint(ME, create(url=f"{provider.base}/hook"))
    secret = endpoint.signing_secret
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert (await n.create_push_endpoint(ME, create(url=f"{provider.base}/hook"))) == endpoint
    await push_once(n, message_event())
    [(path, headers, body)] = provider.requests
    assert path == "/hook" and json.loads(body)["message"]["text"] == "see you at eight"
    message_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    assert message_id.startswith("msg_") and abs(int(timestamp) - time.time()) < 60
    # Verified as a receiver would (standardwebhooks.com), from the secret alone.
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = hmac.new(base64.b64decode(secret.removeprefix("whsec_")), signed, hashlib.sha256)
    versions = dict(part.split(",", 1) for part in headers["webhook-signature"].split(" "))
    assert hmac.compare_digest(versions["v1"], base64.b64encode(expected.digest()).decode())
    tampered = hmac.new(base64.b64decode(secret[6:]), signed + b" ", hashlib.sha256)
    assert versions["v1"] != base64.b64encode(tampered.digest()).decode()


# ----- Web Push -----------------------------------------------------------------


def new_vapid() -> VapidConfig:
    key = ec.generate_private_key(ec.SECP256R1())
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    return VapidConfig(str(b64urlencode(raw)), "mailto:ops@socialmesh.test")


@dataclass
class Browser:
    """A subscription's client side: its ECDH key pair and auth secret."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: secrets.token_bytes(16))

    def keys(self) -> chat_pb2.WebPushKeys:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return chat_pb2.WebPushKeys(p256dh=b64urlencode(point), auth=b64urlencode(self.auth))


def public_key_from(b64url: str) -> ec.EllipticCurvePublicKey:
    raw = base64.urlsafe_b64decode(b64url + "=" * (-len(b64url) % 4))
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


async def test_web_push_is_encrypted_for_the_subscription_and_vapid_signed(
    push_kit: Build, provider: Provider
) -> None:
    vapid = new_vapid()
    n = await push_kit(PushProviders(guard=local_only(), vapid=vapid))
    config = n.push_config()
    assert config.vapid_public_key == vapid.public_key()
    assert chat_pb2.PUSH_ENDPOINT_KIND_WEB_PUSH in config.kinds
    browser = Browser()
    endpoint_url = f"{provider.base}/wpush/v2/abc123"
    endpoint = await n.create_push_endpoint(
        ME,
        create(
            kind=chat_pb2.PUSH_ENDPOINT_KIND_WEB_PUSH,
            url=endpoint_url,
            web_push_keys=browser.keys(),
        ),
    )
    assert endpoint.kind == chat_pb2.PUSH_ENDPOINT_KIND_WEB_PUSH and not endpoint.signing_secret
    await push_once(n, message_event())
    [(path, headers, body)] = provider.requests
    assert path == "/wpush/v2/abc123"
    assert headers["Content-Encoding"] == "aes128gcm" and int(headers["TTL"]) > 0
    # RFC 8291: only the subscription's private key and auth secret open it.
    plain = http_ece.decrypt(
        body, private_key=browser.key, auth_secret=browser.auth, version="aes128gcm"
    )
    shown = json.loads(plain)
    assert shown["title"] == "New message" and shown["body"] == "see you at eight"
    assert shown["url"] == "/messages?c=42" and shown["tag"] == "conversation:42"
    with pytest.raises(Exception):  # noqa: B017 - any failure: another key cannot decrypt
        http_ece.decrypt(
            body, private_key=Browser().key, auth_secret=browser.auth, version="aes128gcm"
        )
    # RFC 8292: `vapid t=<JWT>, k=<the server's public key>`.
    scheme, params = headers["Authorization"].split(" ", 1)
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert scheme == "vapid" and fields["k"] == vapid.public_key()
    claims = jwt.decode(
        fields["t"],
        public_key_from(fields["k"]),
        algorithms=["ES256"],
        audience=provider.base,
    )
    assert claims["sub"] == "mailto:ops@socialmesh.test"
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600


async def test_an_expired_subscription_is_removed(push_kit: Build, provider: Provider) -> None:
    async def gone(request: web.Request, body: bytes) -> web.Response:
        return web.Response(status=410)

    provider.answer = gone
    n = await push_kit(PushProviders(guard=local_only(), vapid=new_vapid()))
    await n.create_push_endpoint(
        ME,
        create(
            kind=chat_pb2.PUSH_ENDPOINT_KIND_WEB_PUSH,
            url=f"{provider.base}/wpush/gone",
            web_push_keys=Browser().keys(),
        ),
    )
    await push_once(n, message_event())
    assert n.push_worker.stats["endpoints_gone"] == 1


# ----- APNs ----------------------------------------------------------------------


def apns_config(tmp_path: Path, base_url: str) -> ApnsConfig:
    key = ec.generate_private_key(ec.SECP256R1())
    p8 = tmp_path / "AuthKey_KEY1234567.p8"
    p8.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    config = ApnsConfig.from_env(
        {
            "PUSH_APNS_TEAM_ID": "TEAM123456",
            "PUSH_APNS_KEY_ID": "KEY1234567",
            "PUSH_APNS_KEY_FILE": str(p8),
            "PUSH_APNS_TOPIC": "net.socialmesh.app",
            "PUSH_APNS_BASE_URL": base_url,
        }
    )
    assert config is not None
    return config


async def test_apns_gets_a_provider_jwt_and_the_topic(
    push_kit: Build, provider: Provider, tmp_path: Path
) -> None:
    config = apns_config(tmp_path, provider.base)
    n = await push_kit(PushProviders(guard=EgressGuard(), apns=config))
    endpoint = await n.create_push_endpoint(
        ME, create(kind=chat_pb2.PUSH_ENDPOINT_KIND_APNS, device_token=APNS_TOKEN.upper())
    )
    assert endpoint.kind == chat_pb2.PUSH_ENDPOINT_KIND_APNS and endpoint.url == ""
    await push_once(n, message_event("a secret plan"))
    [(path, headers, body)] = provider.requests
    assert path == f"/3/device/{APNS_TOKEN}"
    assert headers["apns-topic"] == "net.socialmesh.app"
    assert headers["apns-push-type"] == "alert"
    scheme, token = headers["authorization"].split(" ", 1)
    assert scheme == "bearer"
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "KEY1234567", "typ": "JWT"}
    public = serialization.load_pem_private_key(config.private_key_pem.encode(), None).public_key()
    claims = jwt.decode(token, public, algorithms=["ES256"])
    assert claims["iss"] == "TEAM123456" and abs(claims["iat"] - time.time()) < 60
    payload = json.loads(body)
    assert payload["aps"]["alert"]["title"] == "New message"
    assert b"secret plan" not in body  # Apple reads it: no message text


# ----- FCM -----------------------------------------------------------------------


async def test_fcm_gets_an_oauth_token_from_the_service_account(
    push_kit: Build, provider: Provider
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "socialmesh-test",
        "private_key_id": "kid-1",
        "private_key": pem,
        "client_email": "push@socialmesh-test.iam.gserviceaccount.com",
        "token_uri": f"{provider.base}/token",
    }

    async def answer(request: web.Request, body: bytes) -> web.Response:
        if request.path == "/token":
            form = parse_qs(body.decode())
            assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
            claims = jwt.decode(
                form["assertion"][0],
                key.public_key(),
                algorithms=["RS256"],
                audience=account["token_uri"],
            )
            assert claims["iss"] == account["client_email"]
            assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
            return web.json_response({"access_token": "ya29.local-token", "expires_in": 3599})
        return web.json_response({"name": "projects/socialmesh-test/messages/1"})

    provider.answer = answer
    config = FcmConfig.from_env(
        {"PUSH_FCM_SERVICE_ACCOUNT": json.dumps(account), "PUSH_FCM_BASE_URL": provider.base}
    )
    n = await push_kit(PushProviders(guard=EgressGuard(), fcm=config))
    await n.create_push_endpoint(
        ME, create(kind=chat_pb2.PUSH_ENDPOINT_KIND_FCM, device_token=FCM_TOKEN)
    )
    await push_once(n, message_event("a secret plan"))
    await push_once(n, message_event())
    assert len(provider.on("/token")) == 1  # the access token is reused
    sends = provider.on("/v1/projects/socialmesh-test/messages:send")
    assert len(sends) == 2
    _, headers, body = sends[0]
    assert headers["Authorization"] == "Bearer ya29.local-token"
    message = json.loads(body)["message"]
    assert message["token"] == FCM_TOKEN
    assert message["notification"]["title"] == "New message"
    assert message["data"] == {"kind": "message", "tag": "conversation:42", "url": "/messages?c=42"}
    assert b"secret plan" not in body


# ----- the real service ----------------------------------------------------------


async def test_push_config_is_public_and_unconfigured_kinds_are_refused(chat, make_person) -> None:
    config = await chat.GetPushConfig(chat_pb2.GetPushConfigRequest())  # no token
    assert chat_pb2.PUSH_ENDPOINT_KIND_WEBHOOK in config.kinds
    assert chat_pb2.PUSH_ENDPOINT_KIND_APNS not in config.kinds
    person = await make_person()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await chat.CreatePushEndpoint(
            create(kind=chat_pb2.PUSH_ENDPOINT_KIND_APNS, device_token=APNS_TOKEN),
            metadata=person.md,
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(refused.value) == "PUSH_PROVIDER_NOT_CONFIGURED"
