"""google.protobuf.Timestamp from the two kinds of time the services store."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from .ids import timestamp_ms

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_datetime(value: datetime) -> timestamp_pb2.Timestamp:
    """Like Timestamp.FromDatetime (a naive value is UTC), without its per-call
    calendar arithmetic: hydrating a page builds hundreds of these."""
    delta = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000
    )


def from_snowflake(snowflake: int) -> timestamp_pb2.Timestamp:
    """When a time-ordered id was minted (no separate created_at column needed)."""
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(timestamp_ms(snowflake))
    return ts
