"""Typed page positions of chat's listings, sealed in kit `PageTokens`.

The token body keeps its short keys (tokens already handed out stay valid):

* `MessagesAt(sequence, forward)` (`s`, `d`; scope `messages:<conversation>`): messages
  before `sequence` (`d` = "b") or after it (`d` = "f")
* `InboxAt(activity_us, conversation_id)` (`t`, `c`; scope
  `conversations:<user>:<state>`): the inbox after this (last activity, id) pair
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.kit.pagination import int_field, str_field


@dataclass(frozen=True)
class MessagesAt:
    """A page of a conversation's messages next to `sequence`, newer ones if `forward`."""

    sequence: int
    forward: bool

    def body(self) -> dict[str, Any]:
        return {"s": self.sequence, "d": "f" if self.forward else "b"}

    @classmethod
    def parse(cls, position: Mapping[str, object]) -> MessagesAt:
        return cls(int_field(position, "s"), str_field(position, "d") == "f")


@dataclass(frozen=True)
class InboxAt:
    """The inbox after (`activity`, `conversation_id`) in (last activity, id) order."""

    activity_us: int
    conversation_id: int

    @classmethod
    def of(cls, activity: datetime, conversation_id: int) -> InboxAt:
        return cls(int(activity.timestamp() * 1e6), conversation_id)

    @property
    def activity(self) -> datetime:
        return datetime.fromtimestamp(self.activity_us / 1e6, UTC)

    def body(self) -> dict[str, Any]:
        return {"t": self.activity_us, "c": self.conversation_id}

    @classmethod
    def parse(cls, position: Mapping[str, object]) -> InboxAt:
        return cls(int_field(position, "t"), int_field(position, "c"))
