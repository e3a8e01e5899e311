"""An account's email address: verification links (mailed at registration, on request
and after a change), verifying one, and changing the address (security review M4).

Links work once, for a day; an owner may ask for a new one three times an hour
(each mail lands in someone's inbox).
"""

from __future__ import annotations

import hashlib
import logging
import secrets

import redis.asyncio as aioredis
from socialmesh.user.v1 import user_pb2

from services.kit.auth import Caller
from services.kit.errors import FailedPrecondition, InvalidArgument, NotFound, Reason
from services.kit.ratelimit import RateLimiter
from services.kit.validation import Violations

from . import mailer as mail
from .account_rules import check_current_password, check_email, check_token
from .credentials import Credentials
from .profiles import Profiles
from .store import UserStore

EMAIL_VERIFICATION_TTL_SECONDS = 24 * 3600
VERIFICATION_RESENDS_PER_HOUR = 3
EMAIL_CHANGES_PER_HOUR = 3

log = logging.getLogger("socialmesh.mail")


class EmailAddresses:
    def __init__(
        self,
        store: UserStore,
        profiles: Profiles,
        credentials: Credentials,
        redis: aioredis.Redis,
        outbox: mail.Outbox,
        *,
        verification_link: str,
    ) -> None:
        self._store = store
        self._profiles = profiles
        self._credentials = credentials
        self._redis = redis
        self._outbox = outbox
        self._verification_link = verification_link
        self._resend_limit = RateLimiter(
            redis, "verify-resend", limit=VERIFICATION_RESENDS_PER_HOUR, window_seconds=3600
        )
        self._change_limit = RateLimiter(
            redis, "email-change", limit=EMAIL_CHANGES_PER_HOUR, window_seconds=3600
        )

    async def new_link(self, user_id: int) -> str | None:
        """A fresh single-use token for the account's address, as the link to mail."""
        token = secrets.token_urlsafe(32)
        stored = await self._store.issue_email_verification(
            user_id, token, EMAIL_VERIFICATION_TTL_SECONDS
        )
        return None if stored is None else self._verification_link.format(token=token)

    async def mail_registration(
        self, user_id: int, email: str, handle: str, already_used: bool
    ) -> None:
        """Both mails carry the new account's verification link: whoever reads the mailbox
        may verify it (the person who signed up again on purpose), nobody else can."""
        try:
            if already_used:
                # At most one such notice per address a day, however many sign-ups
                # (the owner of a later one asks for its link with a resend).
                digest = hashlib.sha256(email.lower().encode()).hexdigest()
                if not await self._redis.set(f"mail:address-in-use:{digest}", 1, nx=True, ex=86400):
                    return
            link = await self.new_link(user_id)
            if link is None:
                return
            if already_used:
                subject, body = mail.address_already_registered(handle, link)
            else:
                subject, body = mail.welcome(handle, link)
            await self._outbox.send(email, subject, body)
        except Exception:  # a mail problem must never fail or slow a registration
            log.exception("registration mail failed")

    async def verify(self, request: user_pb2.VerifyEmailRequest) -> user_pb2.VerifyEmailResponse:
        """Public: the token is the credential. One answer for unknown, expired and used
        tokens (no account is named); see store.verify_email."""
        v = Violations()
        token = request.token.strip()
        check_token(token, v, "verification token")
        v.raise_if_any()
        record = await self._store.verify_email(token)
        if record is None:
            raise InvalidArgument(
                [("token", "invalid, expired or already used: ask for a new verification mail")],
                reason=Reason.VERIFICATION_TOKEN_INVALID,
            )
        await self._profiles.invalidate(record.user_id, record)
        return user_pb2.VerifyEmailResponse(user_id=record.user_id)

    async def resend(self, caller: Caller) -> user_pb2.ResendVerificationEmailResponse:
        found = await self._store.load_users([caller.user_id])
        if not found:
            raise NotFound(f"user {caller.user_id} not found", resource="user")
        record = found[0]
        if record.email_verified:
            raise FailedPrecondition(
                "the email address is already verified", reason=Reason.EMAIL_ALREADY_VERIFIED
            )
        await self._resend_limit.enforce(str(caller.user_id), "verification mails")
        link = await self.new_link(caller.user_id)
        if link is None:  # verified (or deleted) since the read above
            raise FailedPrecondition(
                "the email address is already verified", reason=Reason.EMAIL_ALREADY_VERIFIED
            )
        subject, body = mail.verification(record.handle, link)
        await self._outbox.send(record.email, subject, body)
        return user_pb2.ResendVerificationEmailResponse()

    async def change(self, caller: Caller, request: user_pb2.ChangeEmailRequest) -> user_pb2.User:
        """The new address must be verified anew (a link goes to it); the old one is told."""
        email = request.email.strip()
        v = Violations()
        check_email(email, v)
        check_current_password(request.current_password, "current_password", v)
        v.raise_if_any()
        await self._change_limit.enforce(str(caller.user_id), "email changes")
        await self._credentials.check_current(caller.user_id, request.current_password)
        record, before = await self._store.change_email(caller.user_id, email)
        await self._profiles.invalidate(record.user_id, record)
        link = await self.new_link(caller.user_id)
        try:
            if link is not None:
                subject, body = mail.verification(record.handle, link)
                await self._outbox.send(email, subject, body)
            if before.lower() != email.lower():
                subject, body = mail.email_changed(record.handle)
                await self._outbox.send(before, subject, body)
        except Exception:  # the change stands; the owner can ask for a new link
            log.exception("email change mail failed")
        return await self._profiles.present_one(record, caller.user_id)
