"""Opaque tracking tokens: what a served item's ranking was, sealed for the client.

A token is AES-GCM over a small JSON record (kind, served position, score,
experiment arm, post, candidate source), with the viewer id as associated data: clients cannot
read the ranking internals, change them, or replay another user's token. The
key is derived from the service's PAGE_TOKEN_SECRET, so every instance can open
every other instance's tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.kit.errors import InvalidArgument


@dataclass(frozen=True)
class Tracking:
    post_id: int
    kind: int
    position: int
    score: float
    arm: str
    #: Where a RANKED item came from (in-network, co-engagement, affinity, trending).
    source: str = ""


class TrackingTokens:
    def __init__(self, secret: bytes) -> None:
        key = hmac.new(secret, b"socialmesh-feed-tracking-v1", hashlib.sha256).digest()
        self._aead = AESGCM(key)

    def seal(self, viewer_id: int, t: Tracking) -> str:
        body = json.dumps(
            [t.post_id, t.kind, t.position, round(t.score, 6), t.arm, t.source],
            separators=(",", ":"),
        ).encode()
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, body, str(viewer_id).encode())
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, viewer_id: int, token: str, field: str) -> Tracking:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body = self._aead.decrypt(raw[:12], raw[12:], str(viewer_id).encode())
            post_id, kind, position, score, arm, *rest = json.loads(body)
            source = str(rest[0]) if rest else ""  # tokens from before sources: none
            return Tracking(int(post_id), int(kind), int(position), float(score), str(arm), source)
        except (ValueError, TypeError, InvalidTag, json.JSONDecodeError) as exc:
            raise InvalidArgument([(field, "invalid or tampered tracking token")]) from exc
