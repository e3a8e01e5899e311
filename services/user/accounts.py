"""Accounts: registration, profile updates and deletion.

Registration answers the same whether or not the address is already registered
(security review M4): only the mailbox learns it, by a mail sent in the
background. Every change refreshes this service's cached record and the cards
other services cache (kit/cards.py); the events repeat that (stale_cards.py).
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import redis.asyncio as aioredis
from socialmesh.user.v1 import user_pb2

from services.kit.auth import Caller, Revocations
from services.kit.cards import cards_changed
from services.kit.errors import NotFound
from services.kit.ratelimit import RateLimiter, client_address
from services.kit.validation import Violations, require_positive_id

from . import mailer as mail
from .account_rules import (
    HANDLE,
    HANDLE_RULE,
    bounded_handle,
    check_email,
    check_new_password,
    not_owner,
    validate_bio,
    validate_display_name,
)
from .avatars import Avatars
from .credentials import Credentials
from .email_addresses import EmailAddresses
from .profiles import Profiles
from .store import UserStore

UPDATABLE_PATHS = ("display_name", "bio", "avatar_media_id", "is_private")
PROFILE_UPDATES_PER_HOUR = 10


class Accounts:
    def __init__(
        self,
        store: UserStore,
        profiles: Profiles,
        credentials: Credentials,
        addresses: EmailAddresses,
        avatars: Avatars,
        redis: aioredis.Redis,
        outbox: mail.Outbox,
        revocations: Callable[[], Revocations],
        *,
        registrations_per_client_per_hour: int,
    ) -> None:
        self._store = store
        self._profiles = profiles
        self._credentials = credentials
        self._addresses = addresses
        self._avatars = avatars
        self._redis = redis
        self._outbox = outbox
        self._revocations = revocations
        self._update_limit = RateLimiter(
            redis, "user-update", limit=PROFILE_UPDATES_PER_HOUR, window_seconds=3600
        )
        self._register_limit = RateLimiter(
            redis,
            "register-client",
            limit=registrations_per_client_per_hour,
            window_seconds=3600,
        )

    async def create(
        self, request: user_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.User:
        v = Violations()
        handle = bounded_handle(request.handle)
        v.check(bool(HANDLE.match(handle)), "handle", HANDLE_RULE)
        email = request.email.strip()
        check_email(email, v)
        check_new_password(request.password, "password", v)
        display_name = validate_display_name(request.display_name, "display_name", v)
        v.raise_if_any()
        client = client_address(context.invocation_metadata(), context.peer())
        if client is not None:
            await self._register_limit.enforce(client, "registrations per client")
        password_hash = await self._credentials.hash(request.password)
        already_used = await self._store.email_in_use(email)
        record = await self._store.create_user(
            handle=handle,
            email=email,
            password_hash=password_hash,
            display_name=display_name or handle,
        )
        # The answer is the new account either way; only the mailbox learns that the
        # address was already in use (sent in the background: no timing difference).
        self._outbox.later(
            self._addresses.mail_registration(record.user_id, email, handle, already_used)
        )
        return await self._profiles.present_one(record, record.user_id)

    async def update(self, caller: Caller, request: user_pb2.UpdateUserRequest) -> user_pb2.User:
        v = Violations()
        if not request.HasField("user"):
            v.add("user", "required")
        v.raise_if_any()
        require_positive_id(request.user.user_id, "user.user_id")
        if request.user.user_id != caller.user_id:
            raise not_owner("update your own profile")
        paths = list(dict.fromkeys(request.update_mask.paths))
        v.check(
            bool(paths), "update_mask", f"name the fields to update: {', '.join(UPDATABLE_PATHS)}"
        )
        for path in paths:
            v.check(
                path in UPDATABLE_PATHS,
                "update_mask",
                f"'{path}' cannot be updated; allowed: {', '.join(UPDATABLE_PATHS)}",
            )
        changes: dict[str, object] = {}
        if "display_name" in paths:
            changes["display_name"] = validate_display_name(
                request.user.display_name, "user.display_name", v
            )
        if "bio" in paths:
            changes["bio"] = validate_bio(request.user.bio, "user.bio", v)
        if "avatar_url" in paths:
            v.add(
                "update_mask",
                "avatar_url is derived: set avatar_media_id to an image you uploaded",
            )
        if "avatar_media_id" in paths:
            v.check(
                request.user.avatar_media_id >= 0, "user.avatar_media_id", "must not be negative"
            )
        if "is_private" in paths:
            changes["is_private"] = request.user.is_private
        v.raise_if_any()
        if caller.user_id not in await self._profiles.records([caller.user_id]):
            raise NotFound(f"user {caller.user_id} not found", resource="user")
        await self._update_limit.enforce(str(caller.user_id), "profile updates")
        if "avatar_media_id" in paths:
            changes["avatar_media_id"] = request.user.avatar_media_id
            changes["avatar_url"] = await self._avatars.url(
                caller.user_id, request.user.avatar_media_id
            )
        record = await self._store.update_profile(caller.user_id, changes)
        await self._profiles.invalidate(record.user_id, record)
        await cards_changed(self._redis, (record.user_id,))
        return await self._profiles.present_one(record, caller.user_id)

    async def delete(self, caller: Caller) -> None:
        await self._store.soft_delete(caller.user_id)
        await self._revocations().revoke_user(caller.user_id)
        await self._profiles.invalidate(caller.user_id)
        await cards_changed(self._redis, (caller.user_id,))
