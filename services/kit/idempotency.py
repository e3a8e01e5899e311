"""The `Idempotency-Key` HTTP header as a create's request id (AIP-155).

Creates that can be retried safely carry a `request_id` field (CreatePost,
CreateComment, SendMessage, CreateConversation, UploadMedia): the same author and
request id always yield the same resource. HTTP clients may send the key as the
`Idempotency-Key` header instead (the edge passes it on as `idempotency-key`
metadata). The kit's interceptor applies it to every unary request with a
`request_id` field before the servicer runs; streaming creates (uploads) call
`apply_idempotency_key` on their first message. A `request_id` in the request
itself wins; each servicer validates the result as before.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

HEADER = "idempotency-key"
FIELD = "request_id"


def idempotency_key(metadata: Any) -> str:
    """The request's `idempotency-key` metadata, stripped ("" when absent)."""
    for key, value in metadata or ():
        if key == HEADER and isinstance(value, str):
            return value.strip()
    return ""


def accepts_request_id(message: Message) -> bool:
    field = message.DESCRIPTOR.fields_by_name.get(FIELD)
    return field is not None and field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated


def apply_idempotency_key(message: Message, metadata: Any) -> None:
    """Sets `request_id` from the `idempotency-key` metadata when the request has none."""
    if not accepts_request_id(message) or getattr(message, FIELD):
        return
    key = idempotency_key(metadata)
    if key:
        setattr(message, FIELD, key)
