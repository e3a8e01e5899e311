"""Push endpoint URLs: which ones a user may register (the worker posts from inside the cluster)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from services.kit.errors import InvalidArgument
from services.kit.validation import Violations

MAX_URL_CHARS = 2048
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def validate_push_url(url: str, field: str = "push_endpoint.url") -> None:
    """https anywhere, plain http only to this machine (local development and tests)."""
    if not url:
        raise InvalidArgument([(field, "required")])
    v = Violations()
    v.check(len(url) <= MAX_URL_CHARS, field, f"at most {MAX_URL_CHARS} characters")
    v.check(
        not any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url),
        field,
        "must not contain spaces or control characters",
    )
    v.raise_if_any()
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError as exc:
        raise InvalidArgument([(field, "not a valid URL")]) from exc
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidArgument([(field, "must be an https URL with a host")])
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument([(field, "must not carry credentials")])
    if parts.scheme == "http" and not _is_local(host):
        raise InvalidArgument([(field, "must be https (http only for localhost)")])
    if not _is_local(host) and _is_internal_address(host):
        # The worker posts from inside the cluster: no pushes to private or
        # link-local addresses (cloud metadata). Names are not resolved here.
        raise InvalidArgument([(field, "must not point at a private or reserved address")])


def _is_internal_address(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


def _is_local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
