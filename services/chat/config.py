"""Chat's tunables, from the environment (twelve-factor, like every kit setting)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ChatConfig:
    """CHAT_* settings; the defaults suit `socialmesh up` on a laptop.

    Frozen: a change (tests, operators) replaces the servicer's `config`, and
    the streams read it through the servicer, so every part sees one value.
    """

    #: How often an open stream sends a heartbeat (and re-checks expiry/revocation).
    heartbeat_seconds: float = 20.0
    #: Event-log entries older than this are pruned...
    retention_days: float = 7.0
    #: ...and so are all but this many newest per user.
    keep_per_user: int = 10_000
    #: Draining streams ask clients to reconnect within 0.5..this many seconds.
    reconnect_jitter_seconds: float = 5.0
    #: Port of the browsers' SSE stream server (services/chat/sse.py); None: not served.
    http_port: int | None = None
    #: Open event streams (StreamEvents, SSE, Connect's subscription) per account;
    #: one more is refused with TOO_MANY_STREAMS (0: no cap).
    max_streams_per_user: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ChatConfig:
        port = env.get("CHAT_HTTP_PORT", "")
        return cls(
            heartbeat_seconds=float(env.get("CHAT_HEARTBEAT_SECONDS", "20")),
            retention_days=float(env.get("CHAT_LOG_RETENTION_DAYS", "7")),
            keep_per_user=int(env.get("CHAT_LOG_KEEP_PER_USER", "10000")),
            reconnect_jitter_seconds=float(env.get("CHAT_RECONNECT_JITTER_SECONDS", "5")),
            http_port=int(port) if port else None,
            max_streams_per_user=int(env.get("CHAT_MAX_STREAMS_PER_USER", "10")),
        )
