"""Chat's tunables, read from the environment once per servicer."""

from __future__ import annotations

import os


class ChatConfig:
    """Tunables (environment): CHAT_HEARTBEAT_SECONDS, CHAT_LOG_RETENTION_DAYS,
    CHAT_LOG_KEEP_PER_USER, CHAT_RECONNECT_JITTER_SECONDS, CHAT_MAX_STREAMS_PER_USER,
    and CHAT_HTTP_PORT (the
    browsers' SSE stream server, services/chat/sse.py; unset: not served)."""

    def __init__(self, env: dict[str, str] | os._Environ[str]) -> None:
        self.heartbeat_seconds = float(env.get("CHAT_HEARTBEAT_SECONDS", "20"))
        self.retention_days = float(env.get("CHAT_LOG_RETENTION_DAYS", "7"))
        self.keep_per_user = int(env.get("CHAT_LOG_KEEP_PER_USER", "10000"))
        self.reconnect_jitter_seconds = float(env.get("CHAT_RECONNECT_JITTER_SECONDS", "5"))
        #: Open event streams (StreamEvents, SSE, Connect's subscription) per account;
        #: one more is refused with TOO_MANY_STREAMS (0: no cap).
        self.max_streams_per_user = int(env.get("CHAT_MAX_STREAMS_PER_USER", "10"))
        port = env.get("CHAT_HTTP_PORT", "")
        self.http_port: int | None = int(port) if port else None
