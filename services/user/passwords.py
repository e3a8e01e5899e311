"""Changing a password (knowing the current one) and resetting a forgotten one by mail.

Either way the account's other sessions end. Reset links work once, for an hour;
requests are limited per client address and per mailbox (each one lands in
someone's inbox), and answer the same whether or not an account uses the address.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from socialmesh.user.v1 import user_pb2

from services.kit.auth import Caller
from services.kit.errors import InvalidArgument, Reason
from services.kit.ratelimit import RateLimiter
from services.kit.validation import Violations

from . import mailer as mail
from .account_rules import check_current_password, check_email, check_new_password, check_token
from .credentials import Credentials
from .store import UserStore

PASSWORD_RESET_TTL_SECONDS = 3600
PASSWORD_RESETS_PER_ADDRESS_PER_HOUR = 3
PASSWORD_CHANGES_PER_HOUR = 10

log = logging.getLogger("socialmesh.mail")


class Passwords:
    def __init__(
        self,
        store: UserStore,
        credentials: Credentials,
        redis: aioredis.Redis,
        outbox: mail.Outbox,
        end_sessions: Callable[[list[int]], Awaitable[None]],
        *,
        reset_link: str,
        resets_per_client_per_hour: int,
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._outbox = outbox
        self._end_sessions = end_sessions
        self._reset_link = reset_link
        self._change_limit = RateLimiter(
            redis, "password-change", limit=PASSWORD_CHANGES_PER_HOUR, window_seconds=3600
        )
        self._reset_client_limit = RateLimiter(
            redis,
            "password-reset-client",
            limit=resets_per_client_per_hour,
            window_seconds=3600,
        )
        self._reset_address_limit = RateLimiter(
            redis,
            "password-reset-address",
            limit=PASSWORD_RESETS_PER_ADDRESS_PER_HOUR,
            window_seconds=3600,
        )

    async def change(
        self, caller: Caller, request: user_pb2.ChangePasswordRequest
    ) -> user_pb2.ChangePasswordResponse:
        v = Violations()
        check_current_password(request.current_password, "current_password", v)
        check_new_password(request.new_password, "new_password", v)
        v.raise_if_any()
        # Each attempt costs an argon2id run and guesses the password: limited.
        await self._change_limit.enforce(str(caller.user_id), "password changes")
        await self._credentials.check_current(caller.user_id, request.current_password)
        new_hash = await self._credentials.hash(request.new_password)
        ended = await self._store.change_password(
            caller.user_id, new_hash, keep_session=caller.session_id
        )
        await self._end_sessions(ended)
        return user_pb2.ChangePasswordResponse(ended_session_count=len(ended))

    async def request_reset(
        self, request: user_pb2.RequestPasswordResetRequest, client: str | None
    ) -> user_pb2.RequestPasswordResetResponse:
        """Public. The same answer (and, the mail being sent in the background, the same
        time) whether or not an account uses the address: no account enumeration."""
        email = request.email.strip()
        v = Violations()
        check_email(email, v)
        v.raise_if_any()
        if client is not None:
            await self._reset_client_limit.enforce(client, "password reset requests")
        digest = hashlib.sha256(email.lower().encode()).hexdigest()
        await self._reset_address_limit.enforce(digest, "password reset requests for this address")
        self._outbox.later(self._mail_reset(email))
        return user_pb2.RequestPasswordResetResponse()

    async def _mail_reset(self, email: str) -> None:
        try:
            for user_id, handle, address in await self._store.find_for_reset(email):
                token = secrets.token_urlsafe(32)
                await self._store.issue_password_reset(user_id, token, PASSWORD_RESET_TTL_SECONDS)
                subject, body = mail.password_reset(handle, self._reset_link.format(token=token))
                await self._outbox.send(address, subject, body)
        except Exception:  # a mail problem must never show in the (uniform) answer
            log.exception("password reset mail failed")

    async def reset(self, request: user_pb2.ResetPasswordRequest) -> user_pb2.ResetPasswordResponse:
        v = Violations()
        token = request.token.strip()
        check_token(token, v, "password reset token")
        check_new_password(request.new_password, "new_password", v)
        v.raise_if_any()
        invalid = InvalidArgument(
            [("token", "invalid, expired or already used: ask for a new reset mail")],
            reason=Reason.RESET_TOKEN_INVALID,
        )
        # A made-up token costs a lookup, not an argon2id run.
        if not await self._store.reset_token_live(token):
            raise invalid
        new_hash = await self._credentials.hash(request.new_password)
        done = await self._store.reset_password(token, new_hash)
        if done is None:  # spent (or expired) meanwhile
            raise invalid
        await self._end_sessions(done[1])
        return user_pb2.ResetPasswordResponse()
