"""kit.timestamps.from_datetime agrees with protobuf's own conversion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf import timestamp_pb2

from services.kit.timestamps import from_datetime


def test_from_datetime_matches_protobuf_for_aware_naive_and_pre_epoch_values() -> None:
    for value in (
        datetime(2026, 11, 25, 19, 0, 1, 123456, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2021, 3, 4, 5, 6, 7, 890),  # naive: UTC, as protobuf reads it
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ):
        expected = timestamp_pb2.Timestamp()
        expected.FromDatetime(value)
        assert from_datetime(value) == expected, value
