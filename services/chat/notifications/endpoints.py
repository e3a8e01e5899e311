"""Which push endpoints a user may register, per kind, and what is stored for each.

Webhook and Web Push URLs are fetched from inside the cluster, so they pass
the egress guard here (INVALID_ARGUMENT PUSH_TARGET_NOT_PUBLIC when a name or
address is internal) and again at every delivery (DNS can change). A kind
whose provider is not configured is FAILED_PRECONDITION
PUSH_PROVIDER_NOT_CONFIGURED.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from socialmesh.chat.v1 import chat_pb2

from services.kit.egress import EgressRefused
from services.kit.errors import FailedPrecondition, InvalidArgument, Reason

from ..push import KIND_APNS, KIND_FCM, KIND_WEB_PUSH, KIND_WEBHOOK
from .senders import PushProviders

FIELD = "push_endpoint"
#: APNs device tokens are hex (32 bytes today; Apple may lengthen them).
APNS_TOKEN = re.compile(r"^[0-9a-fA-F]{64,200}$")
#: FCM registration tokens: URL-safe characters, a few hundred of them.
FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:.\-]{20,4096}$")
_KIND_NAMES: dict[int, str] = {
    KIND_WEB_PUSH: "Web Push",
    KIND_APNS: "APNs",
    KIND_FCM: "FCM",
}


@dataclass(frozen=True)
class NewEndpoint:
    """A validated registration: `key` is its per-user identity (the url column)."""

    kind: int
    key: str
    url: str = ""
    p256dh: str = ""
    auth_secret: str = ""
    device_token: str = ""


async def validate_endpoint(
    endpoint: chat_pb2.PushEndpoint, providers: PushProviders
) -> NewEndpoint:
    """Checks one registration request; raises InvalidArgument / FailedPrecondition."""
    kind = int(endpoint.kind) or KIND_WEBHOOK
    if kind not in (KIND_WEBHOOK, KIND_WEB_PUSH, KIND_APNS, KIND_FCM):
        raise InvalidArgument([(f"{FIELD}.kind", f"unknown push endpoint kind {kind}")])
    if kind not in providers.kinds():
        raise FailedPrecondition(
            f"{_KIND_NAMES.get(kind, 'this kind of')} push is not configured on this server",
            reason=Reason.PUSH_PROVIDER_NOT_CONFIGURED,
        )
    if kind in (KIND_WEBHOOK, KIND_WEB_PUSH):
        await _check_url(endpoint.url, providers)
        if kind == KIND_WEBHOOK:
            return NewEndpoint(kind, endpoint.url, url=endpoint.url)
        p256dh, auth = _web_push_keys(endpoint)
        return NewEndpoint(kind, endpoint.url, url=endpoint.url, p256dh=p256dh, auth_secret=auth)
    token = endpoint.device_token.strip()
    pattern, prefix = (APNS_TOKEN, "apns") if kind == KIND_APNS else (FCM_TOKEN, "fcm")
    if not pattern.match(token):
        raise InvalidArgument([(f"{FIELD}.device_token", f"not a valid {prefix.upper()} token")])
    if endpoint.url:
        raise InvalidArgument([(f"{FIELD}.url", f"must be empty for {prefix.upper()}")])
    if kind == KIND_APNS:
        token = token.lower()
    return NewEndpoint(kind, f"{prefix}:{token}", device_token=token)


async def _check_url(url: str, providers: PushProviders) -> None:
    field = f"{FIELD}.url"
    if not url:
        raise InvalidArgument([(field, "required")])
    try:
        await providers.guard.check(url)
    except EgressRefused as exc:
        if exc.not_public:
            raise InvalidArgument(
                [(field, f"must reach a public address: {exc}")],
                reason=Reason.PUSH_TARGET_NOT_PUBLIC,
            ) from exc
        raise InvalidArgument([(field, str(exc))]) from exc


def _web_push_keys(endpoint: chat_pb2.PushEndpoint) -> tuple[str, str]:
    """The subscription's keys, if they decode: a P-256 point and a 16-byte secret."""
    keys = endpoint.web_push_keys
    field = f"{FIELD}.web_push_keys"
    try:
        point = _b64url(keys.p256dh)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except (ValueError, binascii.Error):
        raise InvalidArgument([(f"{field}.p256dh", "not a base64url P-256 public key")]) from None
    try:
        auth_ok = len(_b64url(keys.auth)) == 16
    except (ValueError, binascii.Error):
        auth_ok = False
    if not auth_ok:
        raise InvalidArgument([(f"{field}.auth", "not a base64url 16-byte secret")])
    return keys.p256dh, keys.auth


def _b64url(text: str) -> bytes:
    if not text:
        raise ValueError("empty")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
