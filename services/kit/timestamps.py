"""google.protobuf.Timestamp from the two kinds of time the services store."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from .ids import timestamp_ms


def from_datetime(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def from_snowflake(snowflake: int) -> timestamp_pb2.Timestamp:
    """When a time-ordered id was minted (no separate created_at column needed)."""
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(timestamp_ms(snowflake))
    return ts
