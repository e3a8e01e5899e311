"""Web Push (RFC 8030): payloads encrypted for the browser (RFC 8291), signed by VAPID (RFC 8292).

The browser's push service (its subscription `endpoint`) is a URL the user
handed us, so it passes the same egress guard as a webhook: public
addresses only, pinned at connect, no redirects. pywebpush does the
encryption (aes128gcm) and py_vapid the VAPID JWT; the request goes through
our own guarded session.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02, b64urlencode
from pywebpush import WebPusher
from socialmesh.chat.v1 import chat_pb2

from services.kit.egress import EgressGuard, EgressRefused, GuardedClient

from ..push import USER_AGENT, PushFailed, PushTarget, post_checked
from .summary import push_summary

#: How long the push service keeps an undelivered push (seconds).
TTL_SECONDS = 24 * 3600
#: A VAPID JWT's lifetime; RFC 8292 caps it at 24 h.
VAPID_LIFETIME_SECONDS = 12 * 3600


@dataclass(frozen=True)
class VapidConfig:
    """The server's key pair and contact (`PUSH_VAPID_PRIVATE_KEY`, `PUSH_VAPID_SUBJECT`).

    The private key is base64url (32 raw bytes or DER) or PEM; the subject a
    `mailto:` or `https:` URI the push service can reach the operator at.
    """

    private_key: str
    subject: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> VapidConfig | None:
        """None when `PUSH_VAPID_PRIVATE_KEY` is unset: Web Push is off."""
        key = env.get("PUSH_VAPID_PRIVATE_KEY", "").strip()
        if not key:
            return None
        subject = env.get("PUSH_VAPID_SUBJECT", "").strip() or "mailto:push@socialmesh.invalid"
        return cls(key, subject)

    def vapid(self) -> Vapid02:
        if self.private_key.startswith("-----BEGIN"):
            return Vapid02.from_pem(self.private_key.encode())
        return Vapid02.from_string(self.private_key)

    def public_key(self) -> str:
        """base64url of the uncompressed P-256 point: `applicationServerKey` for browsers."""
        raw = self.vapid().public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return str(b64urlencode(raw))


class WebPushSender:
    """Encrypts a short summary of the event for a subscription, posts it to its push service."""

    def __init__(
        self, config: VapidConfig, *, guard: EgressGuard, timeout_seconds: float = 10.0
    ) -> None:
        self._config = config
        self._vapid = config.vapid()
        self._guard = guard
        self._http = GuardedClient(guard, timeout_seconds=timeout_seconds, user_agent=USER_AGENT)

    def authorization(self, endpoint: str) -> str:
        """`vapid t=<ES256 JWT for the endpoint's origin>, k=<public key>` (RFC 8292)."""
        parts = urlsplit(endpoint)
        claims = {
            "aud": f"{parts.scheme}://{parts.netloc}",
            "exp": int(time.time()) + VAPID_LIFETIME_SECONDS,
            "sub": self._config.subject,
        }
        return str(self._vapid.sign(claims)["Authorization"])

    async def send(self, target: PushTarget, event: chat_pb2.ChatEvent) -> None:
        try:
            self._guard.check_url(target.url)
        except EgressRefused as exc:
            raise PushFailed(f"target refused: {exc}", retry=False) from exc
        summary = push_summary(event)
        payload = json.dumps(summary, separators=(",", ":"), ensure_ascii=False).encode()
        subscription = {
            "endpoint": target.url,
            "keys": {"p256dh": target.p256dh, "auth": target.auth_secret},
        }
        try:
            encrypted = WebPusher(subscription).encode(payload, content_encoding="aes128gcm")
        except Exception as exc:  # keys that no longer decode: retrying cannot help
            raise PushFailed(f"cannot encrypt for this subscription: {exc}", retry=False) from exc
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Encoding": "aes128gcm",
            "TTL": str(TTL_SECONDS),
            "Urgency": "high" if summary["kind"] == "message" else "normal",
            "Authorization": self.authorization(target.url),
        }
        await post_checked(
            self._http.session(), target.url, encrypted["body"], headers, gone_statuses=(404, 410)
        )

    async def close(self) -> None:
        await self._http.close()
