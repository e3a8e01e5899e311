"""Chat's typed page positions: round trips, the token keys already handed out, refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.chat.cursors import InboxAt, MessagesAt
from services.kit.errors import InvalidArgument


def test_positions_round_trip_through_the_token_body() -> None:
    for at in (MessagesAt(42, forward=True), MessagesAt(7, forward=False)):
        assert MessagesAt.parse(at.body()) == at
    activity = datetime(2026, 12, 6, 7, 20, 1, 123456, tzinfo=UTC)
    inbox = InboxAt.of(activity, 99)
    assert InboxAt.parse(inbox.body()) == inbox
    assert inbox.activity == activity


def test_the_short_keys_of_tokens_already_handed_out_still_read() -> None:
    assert MessagesAt.parse({"s": 5, "d": "f"}) == MessagesAt(5, forward=True)
    assert MessagesAt.parse({"s": 5, "d": "b"}) == MessagesAt(5, forward=False)
    assert InboxAt.parse({"t": 1_000_000, "c": 3}) == InboxAt(1_000_000, 3)


@pytest.mark.parametrize(
    "body", [{"s": "5", "d": "f"}, {"s": True, "d": "b"}, {"d": "f"}, {"s": -1, "d": "b"}]
)
def test_a_message_position_of_the_wrong_shape_is_a_tampered_token(body: dict) -> None:
    with pytest.raises(InvalidArgument):
        MessagesAt.parse(body)


@pytest.mark.parametrize("body", [{"t": "x", "c": 1}, {"t": 1}, {"t": 1.5, "c": 2}])
def test_an_inbox_position_of_the_wrong_shape_is_a_tampered_token(body: dict) -> None:
    with pytest.raises(InvalidArgument):
        InboxAt.parse(body)
