"""FCM (HTTP v1): pushes to Android/iOS apps with an OAuth bearer minted from a service account.

Configured by env: PUSH_FCM_SERVICE_ACCOUNT_FILE (the service-account JSON;
or PUSH_FCM_SERVICE_ACCOUNT with its text) and PUSH_FCM_BASE_URL (default
https://fcm.googleapis.com; a local stand-in in tests). The access token comes
from the account's `token_uri` (RFC 7523 JWT bearer grant, RS256) and is
reused until a minute before it expires. Both URLs are the operator's, not a
user's, so they do not go through the egress guard.

Google reads what it carries: a generic title and ids, never a message's text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from socialmesh.chat.v1 import chat_pb2

from ..push import PushFailed, PushTarget, raise_for_push_status
from .summary import push_summary

DEFAULT_BASE_URL = "https://fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class FcmConfig:
    service_account: Mapping[str, Any]
    base_url: str = DEFAULT_BASE_URL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FcmConfig | None:
        """None unless a service account (with project, email, key and token URI) is given."""
        text = env.get("PUSH_FCM_SERVICE_ACCOUNT", "")
        path = env.get("PUSH_FCM_SERVICE_ACCOUNT_FILE", "")
        if not text and path:
            text = Path(path).read_text()
        if not text:
            return None
        account = json.loads(text)
        for key in ("project_id", "client_email", "private_key", "token_uri"):
            if not account.get(key):
                raise ValueError(f"the FCM service account has no {key}")
        base = env.get("PUSH_FCM_BASE_URL", "") or DEFAULT_BASE_URL
        return cls(account, base.rstrip("/"))


class FcmSender:
    """POSTs `/v1/projects/<project>/messages:send` with a cached OAuth access token."""

    def __init__(self, config: FcmConfig, *, timeout_seconds: float = 10.0) -> None:
        self._config = config
        self._client = httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False)
        self._token: tuple[str, float] | None = None

    def assertion(self) -> str:
        """The signed JWT the token endpoint trades for an access token."""
        account = self._config.service_account
        now = int(time.time())
        return jwt.encode(
            {
                "iss": account["client_email"],
                "scope": SCOPE,
                "aud": account["token_uri"],
                "iat": now,
                "exp": now + 3600,
            },
            account["private_key"],
            algorithm="RS256",
            headers={"kid": str(account.get("private_key_id", ""))},
        )

    async def access_token(self) -> str:
        if self._token is not None and time.time() < self._token[1]:
            return self._token[0]
        try:
            response = await self._client.post(
                str(self._config.service_account["token_uri"]),
                data={"grant_type": GRANT_TYPE, "assertion": self.assertion()},
            )
            response.raise_for_status()
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PushFailed(f"FCM token: {type(exc).__name__}: {exc}") from exc
        lifetime = float(answer.get("expires_in", 3600))
        self._token = (str(answer["access_token"]), time.time() + lifetime - 60)
        return self._token[0]

    async def send(self, target: PushTarget, event: chat_pb2.ChatEvent) -> None:
        summary = push_summary(event, private=True)
        message = {
            "message": {
                "token": target.device_token,
                "notification": {"title": summary["title"]},
                "data": {"kind": summary["kind"], "tag": summary["tag"], "url": summary["url"]},
                "android": {"collapse_key": summary["tag"] or summary["kind"]},
            }
        }
        project = self._config.service_account["project_id"]
        url = f"{self._config.base_url}/v1/projects/{project}/messages:send"
        headers = {"Authorization": f"Bearer {await self.access_token()}"}
        try:
            response = await self._client.post(url, json=message, headers=headers)
        except httpx.HTTPError as exc:
            raise PushFailed(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 401:
            self._token = None  # revoked or expired early: mint a new one next time
        # 404 UNREGISTERED: the app was uninstalled or the token rotated.
        raise_for_push_status(response.status_code, gone_statuses=(404,))

    async def close(self) -> None:
        await self._client.aclose()
