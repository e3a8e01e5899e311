"""Password hashes (argon2id): hashing off the event loop, verifying, and proving
the current password before a sensitive change."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.kit.errors import InvalidArgument, NotFound, Reason

from .store import UserStore


class Credentials:
    """One hasher per servicer; every argon2id run goes to a worker thread."""

    _DUMMY_HASH: str | None = None

    def __init__(self, store: UserStore) -> None:
        self._store = store
        self.hasher = PasswordHasher()

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def matches(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    async def spend_like_a_check(self, password: str) -> None:
        """The work of a wrong-password check, for a handle that does not exist
        (same time and answer: no account enumeration)."""
        await asyncio.to_thread(self._verify_dummy, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)

    async def check_current(self, user_id: int, password: str) -> None:
        """WRONG_PASSWORD on `current_password` unless it is the account's password."""
        stored = await self._store.password_hash(user_id)
        if stored is None:
            raise NotFound(f"user {user_id} not found", resource="user", resource_id=user_id)
        if not await self.matches(stored, password):
            raise InvalidArgument(
                [("current_password", "is not the account's password")],
                reason=Reason.WRONG_PASSWORD,
            )

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def _verify_dummy(self, password: str) -> None:
        if Credentials._DUMMY_HASH is None:
            Credentials._DUMMY_HASH = self.hasher.hash("not-a-real-password")
        self._verify(Credentials._DUMMY_HASH, password)
