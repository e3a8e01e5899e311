"""APNs: token-based (ES256 provider JWT) pushes to Apple devices over HTTP/2.

Configured by env: PUSH_APNS_TEAM_ID, PUSH_APNS_KEY_ID, PUSH_APNS_KEY_FILE
(the .p8 key; or PUSH_APNS_KEY with its PEM text), PUSH_APNS_TOPIC (the app's
bundle id) and PUSH_APNS_BASE_URL (default production; the sandbox, or a local
stand-in in tests). The base URL is the operator's, not a user's, so it does
not go through the egress guard; the device token is hex, checked at
registration, and only ever a path segment.

Apple reads what it carries: the alert says what kind of news it is, never
its text (`push_summary(private=True)`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
from socialmesh.chat.v1 import chat_pb2

from ..push import PushFailed, PushTarget, raise_for_push_status
from .summary import push_summary

DEFAULT_BASE_URL = "https://api.push.apple.com"
#: Apple refuses provider tokens older than an hour and rate-limits new ones
#: (at most one per 20 minutes): one is reused for 50 minutes.
TOKEN_REUSE_SECONDS = 50 * 60
#: APNs reasons (400/410 bodies) meaning the token will never work again.
GONE_REASONS = frozenset({"BadDeviceToken", "Unregistered", "DeviceTokenNotForTopic"})


@dataclass(frozen=True)
class ApnsConfig:
    team_id: str
    key_id: str
    private_key_pem: str
    topic: str
    base_url: str = DEFAULT_BASE_URL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApnsConfig | None:
        """None unless team id, key id, key and topic are all set."""
        key = env.get("PUSH_APNS_KEY", "")
        key_file = env.get("PUSH_APNS_KEY_FILE", "")
        if not key and key_file:
            key = Path(key_file).read_text()
        team, key_id, topic = (
            env.get("PUSH_APNS_TEAM_ID", ""),
            env.get("PUSH_APNS_KEY_ID", ""),
            env.get("PUSH_APNS_TOPIC", ""),
        )
        if not (key and team and key_id and topic):
            return None
        base = env.get("PUSH_APNS_BASE_URL", "") or DEFAULT_BASE_URL
        return cls(team, key_id, key, topic, base.rstrip("/"))


class ApnsSender:
    """POSTs `/3/device/<token>` with a provider JWT and the app's topic."""

    def __init__(self, config: ApnsConfig, *, timeout_seconds: float = 10.0) -> None:
        self._config = config
        self._timeout = timeout_seconds
        self._client: httpx.AsyncClient | None = None
        self._token: tuple[str, float] | None = None

    def provider_token(self) -> str:
        """The ES256 JWT (`kid` = key id, `iss` = team id, `iat`), reused for 50 minutes."""
        now = time.time()
        if self._token is None or now - self._token[1] > TOKEN_REUSE_SECONDS:
            token = jwt.encode(
                {"iss": self._config.team_id, "iat": int(now)},
                self._config.private_key_pem,
                algorithm="ES256",
                headers={"kid": self._config.key_id},
            )
            self._token = (token, now)
        return self._token[0]

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # HTTP/2, as APNs requires (plain-http stand-ins in tests speak 1.1).
            self._client = httpx.AsyncClient(
                http2=True, timeout=self._timeout, follow_redirects=False
            )
        return self._client

    async def send(self, target: PushTarget, event: chat_pb2.ChatEvent) -> None:
        summary = push_summary(event, private=True)
        body = {
            "aps": {
                "alert": {"title": summary["title"]},
                "sound": "default",
                "thread-id": summary["tag"],
            },
            "kind": summary["kind"],
            "url": summary["url"],
        }
        headers = {
            "authorization": f"bearer {self.provider_token()}",
            "apns-topic": self._config.topic,
            "apns-push-type": "alert",
            "apns-priority": "10",
        }
        url = f"{self._config.base_url}/3/device/{target.device_token}"
        try:
            response = await self._http().post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise PushFailed(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code in (400, 410):
            reason = _reason(response)
            if reason in GONE_REASONS or response.status_code == 410:
                raise PushFailed(f"APNs {response.status_code} {reason}", retry=False, gone=True)
            raise PushFailed(f"APNs {response.status_code} {reason}", retry=False)
        if response.status_code == 403:
            # The provider token was refused (expired, wrong key): mint a new one.
            self._token = None
            raise PushFailed(f"APNs 403 {_reason(response)}")
        raise_for_push_status(response.status_code)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("reason", ""))
    except ValueError:
        return ""
