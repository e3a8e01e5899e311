"""Sessions: login, refresh-token rotation, logout, and the owner's list of sessions.

A login opens a session with a refresh token (in the body, or as the browser's
cookie: cookies.py) and signs a short-lived access token. Refresh rotates the
token; a rotated token presented again after the grace window revokes the
session (reuse detection, docs/decisions/04-refresh-tokens.md).

Login limits (M2/M3): only *failures* count per account, and only those from the
same client address, so nobody can lock an owner out from elsewhere; a client
gets a budget of failures across all accounts (credential stuffing) and of
attempts overall (each one costs an argon2id run).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import NoReturn

import grpc
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from socialmesh.user.v1 import user_pb2

from services.kit.auth import Caller, Revocations, TokenSigner
from services.kit.errors import Reason, Unauthenticated
from services.kit.ratelimit import RateLimiter, client_address
from services.kit.timestamps import from_datetime
from services.kit.validation import Violations

from . import cookies
from .account_rules import HANDLE, HANDLE_RULE, bounded_handle, check_current_password
from .config import UserConfig
from .credentials import Credentials
from .profiles import Profiles
from .store import SessionRevoked, UserStore

LOGIN_WINDOW_SECONDS = 300
LOGIN_FAILURES_PER_ACCOUNT_AND_CLIENT = 10
MAX_SESSIONS_LISTED = 100


def rotation_key(signing_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Rotated refresh tokens' successors derive from the presented token with a key
    only the user service holds (derived from its signing key, so every instance
    agrees): a concurrent refresh within the grace window gets the same successor."""
    return hashlib.sha256(
        b"socialmesh refresh rotation\0"
        + signing_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    ).digest()


class Sessions:
    def __init__(
        self,
        store: UserStore,
        profiles: Profiles,
        credentials: Credentials,
        redis: aioredis.Redis,
        revocations: Callable[[], Revocations],
        config: UserConfig,
        *,
        signer: TokenSigner,
        rotation_key: bytes,
        refresh_ttl_seconds: int,
    ) -> None:
        self._store = store
        self._profiles = profiles
        self._credentials = credentials
        self._revocations = revocations
        self._signer = signer
        self._rotation_key = rotation_key
        self._refresh_ttl = refresh_ttl_seconds
        self.refresh_grace_seconds = config.refresh_grace_seconds
        window = LOGIN_WINDOW_SECONDS
        self._account_failures = RateLimiter(
            redis, "login-fail", limit=LOGIN_FAILURES_PER_ACCOUNT_AND_CLIENT, window_seconds=window
        )
        self._client_failures = RateLimiter(
            redis,
            "login-fail-client",
            limit=config.login_failures_per_client,
            window_seconds=window,
        )
        self._client_attempts = RateLimiter(
            redis,
            "login-client",
            limit=config.login_attempts_per_client,
            window_seconds=window,
        )

    async def login(
        self, request: user_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.LoginResponse:
        v = Violations()
        # Bounded before anything else sees it: it keys a rate limit and a query.
        handle = bounded_handle(request.handle)
        if v.check(bool(handle), "handle", "required"):
            v.check(bool(HANDLE.match(handle)), "handle", HANDLE_RULE)
        check_current_password(request.password, "password", v)
        v.raise_if_any()
        client = client_address(context.invocation_metadata(), context.peer())
        account_key = f"{handle}@{client or 'local'}"
        if client is not None:
            await self._client_attempts.enforce(client, "login attempts")
            await self._client_failures.enforce_below(client, "failed login attempts")
        await self._account_failures.enforce_below(
            account_key, "failed login attempts for this account from this client"
        )
        found = await self._store.credentials(handle)
        if found is None:
            # Same work and answer as a wrong password: no account enumeration.
            await self._credentials.spend_like_a_check(request.password)
            await self._login_failed(account_key, client)
        user_id, password_hash = found
        if not await self._credentials.matches(password_hash, request.password):
            await self._login_failed(account_key, client)
        if self._credentials.needs_rehash(password_hash):
            new_hash = await self._credentials.hash(request.password)
            await self._store.replace_password_hash(user_id, new_hash)
        refresh = secrets.token_urlsafe(32)
        session_id = await self._store.open_session(user_id, refresh, self._refresh_ttl)
        access, ttl = self._issue_tokens(user_id, session_id)
        profile = await self._profiles.profile(user_id, user_id)
        return user_pb2.LoginResponse(
            access_token=access,
            refresh_token=await self._hand_over_refresh(refresh, context),
            expires_in=ttl,
            user=profile,
        )

    async def _login_failed(self, account_key: str, client: str | None) -> NoReturn:
        await self._account_failures.record(account_key)
        if client is not None:
            await self._client_failures.record(client)
        raise Unauthenticated("invalid handle or password", reason=Reason.INVALID_CREDENTIALS)

    def _issue_tokens(self, user_id: int, session_id: int) -> tuple[str, int]:
        return self._signer.sign(user_id, session_id), self._signer.ttl

    async def _hand_over_refresh(self, refresh: str, context: grpc.aio.ServicerContext) -> str:
        """The refresh token for the body, or "" when it goes out as the cookie."""
        metadata = context.invocation_metadata()
        if not cookies.wants_cookie(metadata):
            return refresh
        await context.send_initial_metadata(
            cookies.set_cookies(refresh, self._refresh_ttl, metadata)
        )
        return ""

    async def refresh(
        self, request: user_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.RefreshTokenResponse:
        metadata = context.invocation_metadata()
        presented = request.refresh_token or cookies.refresh_cookie(metadata)
        v = Violations()
        v.check(
            0 < len(presented) <= 256,
            "refresh_token",
            f"required (in the body, or the {cookies.COOKIE_NAME} cookie)",
        )
        v.raise_if_any()
        replacement = self._successor(presented)
        try:
            session = await self._store.rotate_refresh_token(
                presented,
                replacement,
                self._refresh_ttl,
                grace_seconds=self.refresh_grace_seconds,
            )
        except SessionRevoked as revoked:
            # The session's unexpired access tokens die with it, in every service.
            await self._revocations().revoke_session(revoked.session_id)
            if not request.refresh_token:
                revoked.response_headers.extend(cookies.clear_cookies(metadata))
            raise
        except Unauthenticated as refused:
            if not request.refresh_token:  # a dead cookie: the browser drops it
                refused.response_headers.extend(cookies.clear_cookies(metadata))
            raise
        access, ttl = self._issue_tokens(session.user_id, session.session_id)
        profile = await self._profiles.profile(session.user_id, session.user_id)
        return user_pb2.RefreshTokenResponse(
            access_token=access,
            refresh_token=await self._hand_over_refresh(replacement, context),
            expires_in=ttl,
            user=profile,
        )

    def _successor(self, presented: str) -> str:
        """The refresh token that replaces `presented`: 256 bits, derived with a key only
        this service holds, so a refresh repeated within the grace window gets it again."""
        digest = hmac.new(self._rotation_key, presented.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    async def logout(
        self, caller: Caller, context: grpc.aio.ServicerContext
    ) -> user_pb2.LogoutResponse:
        await self._store.revoke_session(caller.user_id, caller.session_id)
        # Right away as well as from the `user.session_revoked` event (crash-safe).
        await self._revocations().revoke_session(caller.session_id)
        await self._clear_cookie(context)
        return user_pb2.LogoutResponse()

    async def logout_everywhere(
        self, caller: Caller, context: grpc.aio.ServicerContext
    ) -> user_pb2.LogoutEverywhereResponse:
        ended = await self._store.revoke_all_sessions(caller.user_id)
        await self.end(sorted({*ended, caller.session_id}))
        await self._clear_cookie(context)
        return user_pb2.LogoutEverywhereResponse(ended_session_count=len(ended))

    async def _clear_cookie(self, context: grpc.aio.ServicerContext) -> None:
        await context.send_initial_metadata(cookies.clear_cookies(context.invocation_metadata()))

    async def end(self, session_ids: list[int]) -> None:
        """Access tokens of ended sessions are refused at once (the events repeat it)."""
        revocations = self._revocations()
        for session_id in session_ids:
            await revocations.revoke_session(session_id)

    async def listed(self, caller: Caller) -> user_pb2.ListSessionsResponse:
        found = await self._store.list_sessions(caller.user_id, MAX_SESSIONS_LISTED)
        sessions = []
        for info in found:
            session = user_pb2.Session(
                session_id=info.session_id,
                create_time=from_datetime(info.created_at),
                current=info.session_id == caller.session_id,
            )
            if info.last_refreshed_at is not None:
                session.last_refresh_time.CopyFrom(from_datetime(info.last_refreshed_at))
            sessions.append(session)
        return user_pb2.ListSessionsResponse(sessions=sessions)
