"""Collects every field violation of a request so the client learns them all at once."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import InvalidArgument


class Violations:
    """`check` each rule, then `raise_if_any` raises INVALID_ARGUMENT naming each field."""

    def __init__(self) -> None:
        self._items: list[tuple[str, str]] = []

    def add(self, field: str, description: str) -> None:
        self._items.append((field, description))

    def check(self, ok: bool, field: str, description: str) -> bool:
        if not ok:
            self.add(field, description)
        return ok

    def __bool__(self) -> bool:
        return bool(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgument(self._items)


def require_positive_id(value: int, field: str) -> None:
    if value <= 0:
        raise InvalidArgument([(field, "must be a positive id")])


def strip_control_characters(text: str) -> str:
    """Drops C0/C1 control characters except newline and tab (they break UIs and logs)."""
    return "".join(ch for ch in text if ch in "\n\t" or not (ord(ch) < 32 or 127 <= ord(ch) < 160))


def batch_ids(raw: Iterable[int], field: str, maximum: int) -> list[int]:
    """Distinct positive ids in request order, 1..maximum of them, or INVALID_ARGUMENT."""
    ids = list(dict.fromkeys(raw))
    v = Violations()
    v.check(0 < len(ids) <= maximum, field, f"give 1 to {maximum} ids")
    v.check(all(i > 0 for i in ids), field, "ids must be positive")
    v.raise_if_any()
    return ids
