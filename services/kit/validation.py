"""Collects every field violation of a request so the client learns them all at once."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

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


#: Backstops for every request of every service, applied by the kit's interceptor
#: before a servicer runs (the servicers' own, tighter rules come after): no string
#: field may carry NUL (PostgreSQL text cannot store it) or exceed this many
#: characters, and no repeated field may hold more entries than this.
MAX_STRING_CHARS = 10_000
MAX_REPEATED = 10_000


def request_violations(message: Message, prefix: str = "") -> list[tuple[str, str]]:
    """Field violations of the kit-wide string and list bounds, by field path."""
    found: list[tuple[str, str]] = []
    for fd, value in message.ListFields():
        name = f"{prefix}{fd.name}"
        is_map = fd.message_type is not None and fd.message_type.GetOptions().map_entry
        if fd.is_repeated and not is_map:
            if len(value) > MAX_REPEATED:
                found.append((name, f"at most {MAX_REPEATED} entries"))
                continue
            items = list(value)
        else:
            items = [value]
        for item in items:
            if fd.type == FieldDescriptor.TYPE_STRING:
                problem = _string_problem(item)
                if problem:
                    found.append((name, problem))
                    break
            elif fd.type == FieldDescriptor.TYPE_MESSAGE and isinstance(item, Message):
                found.extend(request_violations(item, f"{name}."))
    return found


def _string_problem(value: str) -> str | None:
    if len(value) > MAX_STRING_CHARS:
        return f"at most {MAX_STRING_CHARS} characters"
    if "\x00" in value:
        return "must not contain NUL characters"
    return None


def bad_utf8_field(descriptor: Descriptor, data: bytes, prefix: str = "") -> str | None:
    """The path of the first string field whose bytes are not UTF-8, if any.

    protobuf only says "String field had bad UTF-8"; this walks the wire format to
    name the field, so the client learns which one to fix.
    """
    try:
        return _walk_utf8(descriptor, memoryview(data), prefix)
    except (IndexError, ValueError):
        return None


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _walk_utf8(descriptor: Descriptor, data: memoryview, prefix: str) -> str | None:
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(data, pos)
            chunk = data[pos : pos + size]
            if len(chunk) != size:
                raise ValueError("truncated")
            pos += size
            fd = descriptor.fields_by_number.get(number)
            if fd is None:
                continue
            if fd.type == FieldDescriptor.TYPE_STRING:
                try:
                    bytes(chunk).decode("utf-8")
                except UnicodeDecodeError:
                    return f"{prefix}{fd.name}"
            elif fd.message_type is not None:
                inner = _walk_utf8(fd.message_type, chunk, f"{prefix}{fd.name}.")
                if inner:
                    return inner
        else:
            raise ValueError("unsupported wire type")
    return None
