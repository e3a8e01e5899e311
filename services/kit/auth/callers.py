"""Who the current request is from (a context variable), and what it forwards to peers."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import PermissionDenied, Reason, Unauthenticated


@dataclass(frozen=True)
class Caller:
    """The authenticated identity of the current request: a user or a service.

    A service caller has `service` set and `user_id` 0; it acts as itself, never
    for a user.
    """

    user_id: int
    session_id: int
    token_id: str
    #: The verified user token itself, forwarded on calls made on the user's behalf.
    bearer: str = field(default="", repr=False)
    #: The calling service's name for a service credential; empty for users.
    service: str = ""
    #: The token's `exp` (Unix seconds): long-lived streams close before it.
    expires_at: float = 0.0

    @property
    def is_service(self) -> bool:
        return bool(self.service)


_current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "socialmesh_caller", default=None
)


def current_caller() -> Caller | None:
    """The verified caller of the request being handled, or None if anonymous."""
    return _current_caller.get()


def require_caller() -> Caller:
    """The signed-in user making this call (services never act as a user)."""
    caller = _current_caller.get()
    if caller is None:
        raise Unauthenticated(
            "this call needs a valid bearer access token", reason=Reason.TOKEN_MISSING
        )
    if caller.is_service:
        raise PermissionDenied(
            "this call acts for a signed-in user, not a service", reason=Reason.USER_CALLERS_ONLY
        )
    return caller


def require_service() -> Caller:
    """The service making this call; users (and anonymous callers) are refused."""
    caller = _current_caller.get()
    if caller is None:
        raise Unauthenticated("this call needs a service credential", reason=Reason.TOKEN_MISSING)
    if not caller.is_service:
        raise PermissionDenied(
            "only other services may call this method", reason=Reason.SERVICE_CALLERS_ONLY
        )
    return caller


def current_viewer_id() -> int | None:
    """Whose eyes a read is for: the signed-in user's id, None when anonymous.

    The one convention for "nobody signed in" across services (a service caller
    is no viewer either).
    """
    caller = _current_caller.get()
    return caller.user_id if caller is not None and not caller.is_service else None


def forwarded_auth() -> tuple[tuple[str, str], ...]:
    """Metadata for a downstream call made on the current user's behalf.

    Identity flows as the user's own token, which the downstream service
    verifies again. Outbound channels attach it by themselves (see
    `kit.channels.OutboundCall`); an anonymous request and a service caller
    forward nothing.
    """
    caller = _current_caller.get()
    if caller is None or caller.is_service or not caller.bearer:
        return ()
    return (("authorization", f"Bearer {caller.bearer}"),)


@contextlib.contextmanager
def anonymous_calls() -> Iterator[None]:
    """Outbound calls made inside forward no user token.

    For reads that must not depend on who asks (e.g. "does this account exist",
    which a block would otherwise hide). Internal methods still get this
    service's own credential.
    """
    token = _current_caller.set(None)
    try:
        yield
    finally:
        _current_caller.reset(token)


def set_caller(caller: Caller | None) -> contextvars.Token[Caller | None]:
    return _current_caller.set(caller)


def reset_caller(token: contextvars.Token[Caller | None]) -> None:
    try:
        _current_caller.reset(token)
    except ValueError:
        # A stream cancelled by its client is closed from another task's context; the
        # token belongs to the one that ended, so just leave this context anonymous.
        _current_caller.set(None)


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    """Extracts the bearer token from gRPC metadata (`authorization: Bearer ...`)."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated(
                    "authorization must be 'Bearer <access token>'", reason=Reason.TOKEN_INVALID
                )
            return token.strip()
    return None
