"""One `PushSender` over all kinds: each endpoint goes to its kind's sender, configured from env.

Webhooks always work; Web Push needs a VAPID key pair, APNs and FCM their
credentials (see each module). `PushProviders.kinds()` is what the server
delivers to: registration refuses the others with FAILED_PRECONDITION
PUSH_PROVIDER_NOT_CONFIGURED, and GetPushConfig tells clients.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from socialmesh.chat.v1 import chat_pb2

from services.kit.egress import EgressGuard

from ..push import (
    KIND_APNS,
    KIND_FCM,
    KIND_WEB_PUSH,
    KIND_WEBHOOK,
    PushFailed,
    PushSender,
    PushTarget,
    WebhookSender,
)
from .apns import ApnsConfig, ApnsSender
from .fcm import FcmConfig, FcmSender
from .webpush import VapidConfig, WebPushSender


@dataclass(frozen=True)
class PushProviders:
    """Which providers are configured, and the egress guard user-chosen URLs pass."""

    guard: EgressGuard = field(default_factory=EgressGuard)
    vapid: VapidConfig | None = None
    apns: ApnsConfig | None = None
    fcm: FcmConfig | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PushProviders:
        source = os.environ if env is None else env
        return cls(
            guard=EgressGuard.from_env(source),
            vapid=VapidConfig.from_env(source),
            apns=ApnsConfig.from_env(source),
            fcm=FcmConfig.from_env(source),
        )

    def kinds(self) -> list[int]:
        """The endpoint kinds this server delivers to."""
        configured = {
            KIND_WEBHOOK: True,
            KIND_WEB_PUSH: self.vapid is not None,
            KIND_APNS: self.apns is not None,
            KIND_FCM: self.fcm is not None,
        }
        return [kind for kind, on in configured.items() if on]

    def config_proto(self) -> chat_pb2.PushConfig:
        return chat_pb2.PushConfig(
            vapid_public_key=self.vapid.public_key() if self.vapid else "",
            kinds=self.kinds(),  # type: ignore[arg-type]
        )

    def sender(self) -> KindSender:
        senders: dict[int, PushSender] = {KIND_WEBHOOK: WebhookSender(guard=self.guard)}
        if self.vapid is not None:
            senders[KIND_WEB_PUSH] = WebPushSender(self.vapid, guard=self.guard)
        if self.apns is not None:
            senders[KIND_APNS] = ApnsSender(self.apns)
        if self.fcm is not None:
            senders[KIND_FCM] = FcmSender(self.fcm)
        return KindSender(senders)


class KindSender:
    """Hands each delivery to the sender of its endpoint's kind."""

    def __init__(self, senders: Mapping[int, PushSender]) -> None:
        self._senders = dict(senders)

    async def send(self, target: PushTarget, event: chat_pb2.ChatEvent) -> None:
        sender = self._senders.get(target.kind)
        if sender is None:
            # Configured once, not any more: keep the endpoint, drop this push.
            raise PushFailed(f"no sender for push endpoint kind {target.kind}", retry=False)
        await sender.send(target, event)

    async def close(self) -> None:
        for sender in self._senders.values():
            await sender.close()
