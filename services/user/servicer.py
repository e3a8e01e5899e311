"""UserService: validation, authorization and orchestration over UserStore."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from google.protobuf import empty_pb2
from socialmesh.graph.v1 import events_pb2 as graph_events_pb2
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.media.v1 import media_pb2, media_pb2_grpc
from socialmesh.post.v1 import events_pb2 as post_events_pb2
from socialmesh.post.v1 import post_pb2, post_pb2_grpc
from socialmesh.user.v1 import events_pb2 as user_events_pb2
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.auth import (
    Caller,
    Revocations,
    TokenSigner,
    current_viewer_id,
    load_private_key,
    require_caller,
)
from services.kit.backfill import BackfillWorker
from services.kit.cache import TwoLayerCache
from services.kit.cards import cards_changed
from services.kit.channels import upstream_error
from services.kit.consumers import EventHandlers, EventMeta, Start
from services.kit.counts import GENERATIONS as COUNTS
from services.kit.counts import Counts, CountsCache, changed
from services.kit.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    Unauthenticated,
)
from services.kit.generations import bump
from services.kit.ratelimit import RateLimiter, client_address
from services.kit.relcache import GENERATIONS as RELATIONSHIPS
from services.kit.relcache import RelationshipCache, graph_loader
from services.kit.search import anonymous_limit
from services.kit.server import Runtime, ServicerBase
from services.kit.timestamps import from_datetime
from services.kit.validation import (
    Violations,
    batch_ids,
    require_positive_id,
    strip_control_characters,
)

from . import cookies
from . import mailer as mail
from . import search as search_rules
from .store import SessionRevoked, UserRecord, UserStore

HANDLE = re.compile(r"^[a-z0-9_]{3,30}$")
HANDLE_RULE = "must be 3-30 characters of a-z, 0-9 and _"
#: What a handle may be before normalization (surrounding spaces are stripped).
MAX_HANDLE_INPUT = 64
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_BATCH = 500
MAX_LOOKUP = 100
MAX_DISPLAY_NAME = 50
MAX_BIO = 300
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 is happy with more; this only bounds the work per request
UPDATABLE_PATHS = ("display_name", "bio", "avatar_media_id", "is_private")
PROFILE_UPDATES_PER_HOUR = 10
#: Login limits (M2/M3). Only *failures* count per account, and only those from the
#: same client address, so nobody can lock an owner out from elsewhere; a client
#: gets a budget of failures across all accounts (credential stuffing) and of
#: attempts overall (each one costs an argon2id run).
LOGIN_WINDOW_SECONDS = 300
LOGIN_FAILURES_PER_ACCOUNT_AND_CLIENT = 10
LOGIN_FAILURES_PER_CLIENT = 20
LOGIN_ATTEMPTS_PER_CLIENT = 60
REGISTRATIONS_PER_CLIENT_PER_HOUR = 20
#: Email verification (M4): links work once, for a day; an owner may ask for a new one
#: three times an hour (each mail lands in someone's inbox).
EMAIL_VERIFICATION_TTL_SECONDS = 24 * 3600
VERIFICATION_RESENDS_PER_HOUR = 3
MAX_VERIFICATION_TOKEN = 128
#: A rotated refresh token presented again this soon gets the same successor
#: (concurrent tabs), not a revoked session (USER_REFRESH_REUSE_GRACE_SECONDS).
REFRESH_REUSE_GRACE_SECONDS = 30.0
#: Password reset links work once, for an hour; requests are limited per client
#: address and per mailbox (each one lands in someone's inbox).
PASSWORD_RESET_TTL_SECONDS = 3600
PASSWORD_RESETS_PER_ADDRESS_PER_HOUR = 3
PASSWORD_RESETS_PER_CLIENT_PER_HOUR = 20
PASSWORD_CHANGES_PER_HOUR = 10
EMAIL_CHANGES_PER_HOUR = 3
MAX_SESSIONS_LISTED = 100


def refresh_grace_seconds() -> float:
    value = float(os.environ.get("USER_REFRESH_REUSE_GRACE_SECONDS", REFRESH_REUSE_GRACE_SECONDS))
    if not 0 <= value <= 300:
        raise SystemExit("USER_REFRESH_REUSE_GRACE_SECONDS must be 0 to 300 seconds")
    return value


def not_owner(what: str) -> PermissionDenied:
    return PermissionDenied(f"you may only {what}", reason=Reason.NOT_OWNER)


def per_client_limit(name: str, default: int) -> int:
    """A per-client-address limit, overridable from the environment (`USER_<NAME>`).

    Deployments behind a NAT or a corporate proxy share one address among many
    people and raise these; test stacks whose every client is 127.0.0.1 too.
    The per-account failure limit is deliberately not configurable.
    """
    value = int(os.environ.get(f"USER_{name}", default))
    if value < 1:
        raise SystemExit(f"USER_{name} must be a positive number of requests")
    return value


def normalize_handle(raw: str) -> str:
    return raw.strip().lower()


def validate_display_name(value: str, field: str, v: Violations) -> str:
    cleaned = strip_control_characters(value).replace("\n", " ").strip()
    v.check(len(cleaned) <= MAX_DISPLAY_NAME, field, f"at most {MAX_DISPLAY_NAME} characters")
    return cleaned


def validate_bio(value: str, field: str, v: Violations) -> str:
    cleaned = strip_control_characters(value).strip()
    v.check(len(cleaned) <= MAX_BIO, field, f"at most {MAX_BIO} characters")
    return cleaned


COUNT_FIELDS = frozenset({"follower_count", "following_count", "post_count"})
#: Decoded profile records kept beside the cache's bytes (cleared when full).
MAX_DECODED = 50_000


async def _nothing() -> dict[int, Counts]:
    return {}


_USER_FIELDS = user_pb2.User.DESCRIPTOR.fields_by_name


def _masked(user: user_pb2.User, paths: list[str]) -> user_pb2.User:
    """The user with only `paths` (top-level User fields, checked by the caller) set:
    what FieldMask.MergeMessage does, without its per-message tree walk."""
    partial = user_pb2.User()
    for path in paths:
        field = _USER_FIELDS[path]
        if field.has_presence and not user.HasField(path):  # type: ignore[arg-type]
            continue  # absent stays absent (counts of a limited view, no avatar)
        if field.message_type is not None:
            getattr(partial, path).CopyFrom(getattr(user, path))
        else:
            setattr(partial, path, getattr(user, path))
    return partial


@dataclass(frozen=True)
class Social:
    """What other services know about a batch of profiles."""

    counts: dict[int, Counts]
    relationships: dict[int, graph_pb2.Relationship]


#: Graph events that change a relationship -> the pair whose cached entries go stale.
_RELATIONSHIP_EVENTS: dict[type[Any], Callable[[Any], tuple[int, int]]] = {
    graph_events_pb2.Followed: lambda e: (e.follower_id, e.followee_id),
    graph_events_pb2.Unfollowed: lambda e: (e.follower_id, e.followee_id),
    graph_events_pb2.FollowRequested: lambda e: (e.requester_id, e.target_id),
    graph_events_pb2.FollowRequestAccepted: lambda e: (e.requester_id, e.target_id),
    graph_events_pb2.Blocked: lambda e: (e.blocker_id, e.blocked_id),
    graph_events_pb2.Unblocked: lambda e: (e.blocker_id, e.blocked_id),
    graph_events_pb2.Muted: lambda e: (e.muter_id, e.muted_id),
    graph_events_pb2.Unmuted: lambda e: (e.muter_id, e.muted_id),
}
#: ... and those that change follower/following counts too.
_COUNT_EVENTS = {graph_events_pb2.Followed, graph_events_pb2.Unfollowed}


class UserServicer(ServicerBase, user_pb2_grpc.UserServiceServicer):
    """Every RPC decides who may call it; see the proto for the contract."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self._hasher = PasswordHasher()
        self._store: UserStore | None = None
        self._cache: TwoLayerCache | None = None
        self._counts: CountsCache | None = None
        self._relationships: RelationshipCache | None = None
        #: user id -> (cached bytes, their decoding): an L1 hit returns the same bytes
        #: object until the entry changes, so decoding happens once per version.
        self._decoded: dict[int, tuple[bytes, UserRecord]] = {}
        self._signer: TokenSigner | None = None
        self._update_limit: RateLimiter | None = None
        self._login_account_failures: RateLimiter | None = None
        self._login_client_failures: RateLimiter | None = None
        self._login_client_attempts: RateLimiter | None = None
        self._register_limit: RateLimiter | None = None
        self._resend_limit: RateLimiter | None = None
        self._verification_link = mail.DEFAULT_VERIFICATION_LINK
        self._reset_link = mail.DEFAULT_RESET_LINK
        self._rotation_key = b""
        self.refresh_grace_seconds = REFRESH_REUSE_GRACE_SECONDS
        self._password_limit: RateLimiter | None = None
        self._email_limit: RateLimiter | None = None
        self._reset_client_limit: RateLimiter | None = None
        self._reset_address_limit: RateLimiter | None = None
        self._graph: graph_pb2_grpc.GraphServiceAsyncStub | None = None
        self._media: media_pb2_grpc.MediaServiceAsyncStub | None = None
        self._posts: post_pb2_grpc.PostServiceAsyncStub | None = None
        self._search: search_rules.UserSearch | None = None
        self._backfill: BackfillWorker | None = None
        #: Where registration outcomes go (M4); replace with a real sender in production.
        self.mailer: mail.Mailer = mail.LogMailer()
        self._mail_tasks: set[asyncio.Task[None]] = set()

    async def on_ready(self) -> None:
        s = self._rt.settings
        if not s.jwt_private_key_file:
            raise SystemExit("the user service needs JWT_PRIVATE_KEY_FILE (the signing key)")
        signing_key = load_private_key(s.jwt_private_key_file)
        # Rotated refresh tokens' successors derive from the presented token with a key
        # only the user service holds (derived from its signing key, so every instance
        # agrees): a concurrent refresh within the grace window gets the same successor.
        self._rotation_key = hashlib.sha256(
            b"socialmesh refresh rotation\0"
            + signing_key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ).digest()
        self.refresh_grace_seconds = refresh_grace_seconds()
        self._signer = TokenSigner(
            signing_key,
            issuer=s.jwt_issuer,
            audience=s.jwt_audience,
            ttl=s.access_token_ttl_seconds,
        )
        self._store = UserStore(self._rt.db, self._rt.ids)
        self._cache = TwoLayerCache(self._rt.redis, "user:v1")
        await self._cache.start()
        self._counts = CountsCache(self._rt.redis)
        self._counts.start()
        self._relationships = RelationshipCache(self._rt.redis, "user-relationships:v1")
        self._relationships.start()
        self._update_limit = RateLimiter(
            self._rt.redis, "user-update", limit=PROFILE_UPDATES_PER_HOUR, window_seconds=3600
        )
        redis, window = self._rt.redis, LOGIN_WINDOW_SECONDS
        self._login_account_failures = RateLimiter(
            redis, "login-fail", limit=LOGIN_FAILURES_PER_ACCOUNT_AND_CLIENT, window_seconds=window
        )
        self._login_client_failures = RateLimiter(
            redis,
            "login-fail-client",
            limit=per_client_limit("LOGIN_FAILURES_PER_CLIENT", LOGIN_FAILURES_PER_CLIENT),
            window_seconds=window,
        )
        self._login_client_attempts = RateLimiter(
            redis,
            "login-client",
            limit=per_client_limit("LOGIN_ATTEMPTS_PER_CLIENT", LOGIN_ATTEMPTS_PER_CLIENT),
            window_seconds=window,
        )
        self._register_limit = RateLimiter(
            redis,
            "register-client",
            limit=per_client_limit(
                "REGISTRATIONS_PER_CLIENT_PER_HOUR", REGISTRATIONS_PER_CLIENT_PER_HOUR
            ),
            window_seconds=3600,
        )
        self._resend_limit = RateLimiter(
            redis, "verify-resend", limit=VERIFICATION_RESENDS_PER_HOUR, window_seconds=3600
        )
        self._verification_link = mail.verification_link_template()
        self.mailer = mail.mailer_from_environment()
        self._reset_link = mail.reset_link_template()
        self._password_limit = RateLimiter(
            redis, "password-change", limit=PASSWORD_CHANGES_PER_HOUR, window_seconds=3600
        )
        self._email_limit = RateLimiter(
            redis, "email-change", limit=EMAIL_CHANGES_PER_HOUR, window_seconds=3600
        )
        self._reset_client_limit = RateLimiter(
            redis,
            "password-reset-client",
            limit=per_client_limit(
                "PASSWORD_RESETS_PER_CLIENT_PER_HOUR", PASSWORD_RESETS_PER_CLIENT_PER_HOUR
            ),
            window_seconds=3600,
        )
        self._reset_address_limit = RateLimiter(
            redis,
            "password-reset-address",
            limit=PASSWORD_RESETS_PER_ADDRESS_PER_HOUR,
            window_seconds=3600,
        )
        self._graph = graph_pb2_grpc.GraphServiceStub(self.peer("graph"))
        self._media = media_pb2_grpc.MediaServiceStub(self.peer("media"))
        self._posts = post_pb2_grpc.PostServiceStub(self.peer("post"))

        # Crash-safe revocation: the events commit with the change, and this
        # consumer (at-least-once, idempotent) writes the revocation even if the
        # direct write after the commit never happened. EARLIEST: a revocation
        # published before this group existed must still be applied.
        revocations = EventHandlers()
        revocations.on(user_events_pb2.UserDeleted, self._on_user_deleted)
        revocations.on(user_events_pb2.SessionRevoked, self._on_session_revoked)
        await self.consume("user-revocations", revocations, start=Start.EARLIEST)

        # Cached counts and relationships (kit/counts.py, kit/relcache.py): graph and
        # post bump a user's generations after their change commits; these events bump
        # them again in case a writer died in between. LATEST: entries cached before
        # this group existed expire within the hour.
        stale = EventHandlers()
        for event_type in _RELATIONSHIP_EVENTS:
            stale.on(event_type, self._on_graph_changed)
        stale.on(post_events_pb2.PostCreated, self._on_post_created)
        stale.on(post_events_pb2.PostDeleted, self._on_post_deleted)
        await self.consume("user-counts", stale, start=Start.LATEST)

        # Cards other services cache (kit/cards.py) and this service's own records:
        # refreshed after each change commits, and again here from the events in
        # case a writer died in between.
        stale_cards = EventHandlers()
        stale_cards.on(user_events_pb2.UserUpdated, self._on_card_changed)
        stale_cards.on(user_events_pb2.UserDeleted, self._on_card_changed)
        await self.consume("user-cards", stale_cards, start=Start.LATEST)

        # People search's projection of follows and blocks (docs/search.md).
        self._search = search_rules.UserSearch(
            self._rt.db,
            self._rt.page_tokens,
            RateLimiter(
                redis,
                "search-users-client",
                limit=anonymous_limit(),
                window_seconds=60,
            ),
        )
        await self.consume("user-search", self._search.handlers(), start=Start.EARLIEST)
        # ... and what the streams no longer hold: back-filled from graph's export
        # in the background when it never was (docs/search.md).
        self._backfill = self._search.backfill_worker(self.ready(self._graph))
        self._backfill.start()

    async def _on_user_deleted(self, event: user_events_pb2.UserDeleted, _: EventMeta) -> None:
        await self._revocations().revoke_user(event.user_id)

    async def _on_session_revoked(
        self, event: user_events_pb2.SessionRevoked, _: EventMeta
    ) -> None:
        await self._revocations().revoke_session(event.session_id)

    async def _on_card_changed(
        self, event: user_events_pb2.UserUpdated | user_events_pb2.UserDeleted, _: EventMeta
    ) -> None:
        """A writer that died after its commit left this service's own cache stale
        too: drop that first, so the cards reloaded after the bump are current."""
        await self.cache.invalidate(str(event.user_id))
        await cards_changed(self._rt.redis, (event.user_id,))

    async def _on_graph_changed(self, event: Any, _: EventMeta) -> None:
        """Relationships of the pair go stale, and their counts if an edge changed."""
        kind = type(event)
        namespaces = [RELATIONSHIPS, COUNTS] if kind in _COUNT_EVENTS else [RELATIONSHIPS]
        await bump(self._rt.redis, namespaces, _RELATIONSHIP_EVENTS[kind](event))

    async def _on_post_created(self, event: post_events_pb2.PostCreated, _: EventMeta) -> None:
        await changed(self._rt.redis, (event.author_id,))

    async def _on_post_deleted(self, event: post_events_pb2.PostDeleted, _: EventMeta) -> None:
        await changed(self._rt.redis, (event.author_id,))

    async def on_stop(self) -> None:
        if self._backfill is not None:
            await self._backfill.stop()
        if self._cache:
            await self._cache.stop()
        if self._counts:
            await self._counts.stop()
        if self._relationships:
            await self._relationships.stop()
        await super().on_stop()

    # -- helpers ---------------------------------------------------------------

    @property
    def store(self) -> UserStore:
        return self.ready(self._store)

    @property
    def cache(self) -> TwoLayerCache:
        return self.ready(self._cache)

    def _revocations(self) -> Revocations:
        return self.ready(self._rt.revocations)

    async def _records(self, user_ids: list[int]) -> dict[int, UserRecord]:
        async def load(keys: list[str]) -> dict[str, bytes]:
            records = await self.store.load_users([int(k) for k in keys])
            return {str(r.user_id): r.to_bytes() for r in records}

        raw = await self.cache.get_many([str(u) for u in user_ids], load)
        records: dict[int, UserRecord] = {}
        decoded = self._decoded
        for key, value in raw.items():
            user_id = int(key)
            known = decoded.get(user_id)
            if known is not None and known[0] is value:
                records[user_id] = known[1]
                continue
            record = UserRecord.from_bytes(value)
            if len(decoded) >= MAX_DECODED:
                decoded.clear()
            decoded[user_id] = (value, record)
            records[user_id] = record
        return records

    async def _load_counts(self, ids: list[int]) -> dict[int, Counts]:
        """Exact counts from their owners, graph and post: two batch calls, concurrently.

        The peers' channels carry the viewer's token, or this service's own
        credential for an anonymous viewer (the counts are internal methods).
        """
        graph, posts = self.ready(self._graph), self.ready(self._posts)
        try:
            follows, authored = await asyncio.gather(
                graph.BatchGetFollowCounts(graph_pb2.BatchGetFollowCountsRequest(user_ids=ids)),
                posts.BatchGetPostCounts(post_pb2.BatchGetPostCountsRequest(user_ids=ids)),
            )
        except grpc.aio.AioRpcError as exc:
            raise upstream_error(exc, "graph/post") from exc
        by_user = {c.user_id: c for c in follows.counts}
        post_counts = {c.user_id: c.post_count for c in authored.counts}
        return {
            i: Counts(
                by_user[i].follower_count if i in by_user else 0,
                by_user[i].following_count if i in by_user else 0,
                post_counts.get(i, 0),
            )
            for i in ids
        }

    async def _social(
        self, ids: list[int], viewer_id: int | None, *, counts: bool = True
    ) -> Social:
        """Counts and the viewer's relationships (both cached, exact: kit/counts.py,
        kit/relcache.py), concurrently."""
        others = [i for i in ids if i != viewer_id]
        calls: list[Awaitable[Any]] = [
            self.ready(self._counts).get_many(ids, self._load_counts) if counts else _nothing()
        ]
        if viewer_id is not None and others:
            cache = self.ready(self._relationships)
            calls.append(cache.get_many(viewer_id, others, graph_loader(self.ready(self._graph))))
        try:
            replies = await asyncio.gather(*calls)
        except grpc.aio.AioRpcError as exc:
            raise upstream_error(exc, "graph") from exc
        return Social(counts=replies[0], relationships=replies[1] if len(replies) > 1 else {})

    async def _present(
        self, records: list[UserRecord], viewer_id: int | None, *, counts: bool = True
    ) -> list[user_pb2.User]:
        """Profiles as this viewer may see them; accounts blocking the viewer vanish."""
        if not records:
            return []
        social = await self._social([r.user_id for r in records], viewer_id, counts=counts)
        shown = []
        for record in records:
            rel = social.relationships.get(record.user_id)
            if rel is not None and rel.blocked_by:
                continue
            shown.append(self._to_proto(record, viewer_id, social, rel))
        return shown

    async def _profile(self, user_id: int, viewer_id: int | None) -> user_pb2.User:
        records = await self._records([user_id])
        shown = await self._present(list(records.values()), viewer_id)
        if not shown:
            raise NotFound(f"user {user_id} not found", resource="user", resource_id=user_id)
        return shown[0]

    def _to_proto(
        self,
        record: UserRecord,
        viewer_id: int | None,
        social: Social,
        rel: graph_pb2.Relationship | None,
    ) -> user_pb2.User:
        is_owner = viewer_id == record.user_id
        is_following = bool(rel and rel.following)
        limited = record.is_private and not is_owner and not is_following
        user = user_pb2.User(
            user_id=record.user_id,
            handle=record.handle,
            display_name=record.display_name,
            avatar_url=record.avatar_url,
            avatar_media_id=record.avatar_media_id or None,  # absent, never "0"
            is_private=record.is_private,
            is_limited_view=limited,
            is_following=is_following,
            # Viewer state for the profile's buttons, in the limited view too.
            followed_by=bool(rel and rel.followed_by),
            requested=bool(rel and rel.requested),
            muting=bool(rel and rel.muting),
            blocking=bool(rel and rel.blocking),
        )
        if limited:
            return user
        user.bio = record.bio
        counts = social.counts.get(record.user_id)
        if counts is not None:
            user.follower_count = counts.followers
            user.following_count = counts.following
            user.post_count = counts.posts
        user.create_time.CopyFrom(from_datetime(record.created_at))
        user.update_time.CopyFrom(from_datetime(record.updated_at))
        if is_owner:
            user.email = record.email
            user.email_verified = record.email_verified
        return user

    async def _issue_tokens(self, user_id: int, session_id: int) -> tuple[str, int]:
        signer = self.ready(self._signer)
        return signer.sign(user_id, session_id), signer.ttl

    # -- RPCs ------------------------------------------------------------------

    async def CreateUser(
        self, request: user_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.User:
        v = Violations()
        handle = normalize_handle(request.handle[: MAX_HANDLE_INPUT + 1])
        v.check(bool(HANDLE.match(handle)), "handle", HANDLE_RULE)
        email = request.email.strip()
        v.check(
            bool(EMAIL.match(email)) and len(email) <= 254 and email.isprintable(),
            "email",
            "must be a valid email address",
        )
        v.check(
            MIN_PASSWORD <= len(request.password) <= MAX_PASSWORD,
            "password",
            f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters",
        )
        display_name = validate_display_name(request.display_name, "display_name", v)
        v.raise_if_any()
        client = client_address(context.invocation_metadata(), context.peer())
        if client is not None:
            await self.ready(self._register_limit).enforce(client, "registrations per client")
        password_hash = await asyncio.to_thread(self._hasher.hash, request.password)
        already_used = await self.store.email_in_use(email)
        record = await self.store.create_user(
            handle=handle,
            email=email,
            password_hash=password_hash,
            display_name=display_name or handle,
        )
        # The answer is the new account either way; only the mailbox learns that the
        # address was already in use (sent in the background: no timing difference).
        task = asyncio.create_task(
            self._mail_registration(record.user_id, email, handle, already_used)
        )
        self._mail_tasks.add(task)
        task.add_done_callback(self._mail_tasks.discard)
        return (await self._present([record], record.user_id))[0]

    async def _mail_registration(
        self, user_id: int, email: str, handle: str, already_used: bool
    ) -> None:
        """Both mails carry the new account's verification link: whoever reads the mailbox
        may verify it (the person who signed up again on purpose), nobody else can."""
        try:
            if already_used:
                # At most one such notice per address a day, however many sign-ups
                # (the owner of a later one asks for its link with a resend).
                digest = hashlib.sha256(email.lower().encode()).hexdigest()
                if not await self._rt.redis.set(
                    f"mail:address-in-use:{digest}", 1, nx=True, ex=86400
                ):
                    return
            link = await self._new_verification_link(user_id)
            if link is None:
                return
            if already_used:
                subject, body = mail.address_already_registered(handle, link)
            else:
                subject, body = mail.welcome(handle, link)
            await self.mailer.send(email, subject, body)
        except Exception:  # a mail problem must never fail or slow a registration
            logging.getLogger("socialmesh.mail").exception("registration mail failed")

    async def _new_verification_link(self, user_id: int) -> str | None:
        """A fresh single-use token for the account's address, as the link to mail."""
        token = secrets.token_urlsafe(32)
        stored = await self.store.issue_email_verification(
            user_id, token, EMAIL_VERIFICATION_TTL_SECONDS
        )
        return None if stored is None else self._verification_link.format(token=token)

    async def VerifyEmail(
        self, request: user_pb2.VerifyEmailRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.VerifyEmailResponse:
        """Public: the token is the credential. One answer for unknown, expired and used
        tokens (no account is named); see store.verify_email."""
        v = Violations()
        token = request.token.strip()
        if v.check(bool(token), "token", "required"):
            v.check(
                len(token) <= MAX_VERIFICATION_TOKEN and token.isascii() and token.isprintable(),
                "token",
                "is not a verification token",
            )
        v.raise_if_any()
        record = await self.store.verify_email(token)
        if record is None:
            raise InvalidArgument(
                [("token", "invalid, expired or already used: ask for a new verification mail")],
                reason=Reason.VERIFICATION_TOKEN_INVALID,
            )
        await self.cache.invalidate(str(record.user_id), record.to_bytes())
        return user_pb2.VerifyEmailResponse(user_id=record.user_id)

    async def ResendVerificationEmail(
        self,
        request: user_pb2.ResendVerificationEmailRequest,
        context: grpc.aio.ServicerContext,
    ) -> user_pb2.ResendVerificationEmailResponse:
        caller = require_caller()
        require_positive_id(request.user_id, "user_id")
        if request.user_id != caller.user_id:
            raise not_owner("ask for your own verification mail")
        found = await self.store.load_users([caller.user_id])
        if not found:
            raise NotFound(f"user {caller.user_id} not found", resource="user")
        record = found[0]
        if record.email_verified:
            raise FailedPrecondition(
                "the email address is already verified", reason=Reason.EMAIL_ALREADY_VERIFIED
            )
        await self.ready(self._resend_limit).enforce(str(caller.user_id), "verification mails")
        link = await self._new_verification_link(caller.user_id)
        if link is None:  # verified (or deleted) since the read above
            raise FailedPrecondition(
                "the email address is already verified", reason=Reason.EMAIL_ALREADY_VERIFIED
            )
        subject, body = mail.verification(record.handle, link)
        await self.mailer.send(record.email, subject, body)
        return user_pb2.ResendVerificationEmailResponse()

    async def Login(
        self, request: user_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.LoginResponse:
        v = Violations()
        # Bounded before anything else sees it: it keys a rate limit and a query.
        handle = normalize_handle(request.handle[: MAX_HANDLE_INPUT + 1])
        if v.check(bool(handle), "handle", "required"):
            v.check(bool(HANDLE.match(handle)), "handle", HANDLE_RULE)
        v.check(bool(request.password), "password", "required")
        v.check(len(request.password) <= MAX_PASSWORD, "password", "too long")
        v.raise_if_any()
        client = client_address(context.invocation_metadata(), context.peer())
        account_key = f"{handle}@{client or 'local'}"
        if client is not None:
            await self.ready(self._login_client_attempts).enforce(client, "login attempts")
            await self.ready(self._login_client_failures).enforce_below(
                client, "failed login attempts"
            )
        await self.ready(self._login_account_failures).enforce_below(
            account_key, "failed login attempts for this account from this client"
        )
        found = await self.store.credentials(handle)
        if found is None:
            # Same work and answer as a wrong password: no account enumeration.
            await asyncio.to_thread(self._verify_dummy, request.password)
            await self._login_failed(account_key, client)
        user_id, password_hash = found
        if not await asyncio.to_thread(self._verify, password_hash, request.password):
            await self._login_failed(account_key, client)
        if self._hasher.check_needs_rehash(password_hash):
            new_hash = await asyncio.to_thread(self._hasher.hash, request.password)
            await self.store.replace_password_hash(user_id, new_hash)
        refresh = secrets.token_urlsafe(32)
        session_id = await self.store.open_session(
            user_id, refresh, self._rt.settings.refresh_token_ttl_seconds
        )
        access, ttl = await self._issue_tokens(user_id, session_id)
        profile = await self._profile(user_id, user_id)
        return user_pb2.LoginResponse(
            access_token=access,
            refresh_token=await self._hand_over_refresh(refresh, context),
            expires_in=ttl,
            user=profile,
        )

    async def _hand_over_refresh(self, refresh: str, context: grpc.aio.ServicerContext) -> str:
        """The refresh token for the body, or "" when it goes out as the cookie."""
        metadata = context.invocation_metadata()
        if not cookies.wants_cookie(metadata):
            return refresh
        ttl = self._rt.settings.refresh_token_ttl_seconds
        await context.send_initial_metadata(cookies.set_cookies(refresh, ttl, metadata))
        return ""

    async def _login_failed(self, account_key: str, client: str | None) -> NoReturn:
        await self.ready(self._login_account_failures).record(account_key)
        if client is not None:
            await self.ready(self._login_client_failures).record(client)
        raise Unauthenticated("invalid handle or password", reason=Reason.INVALID_CREDENTIALS)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    _DUMMY_HASH: str | None = None

    def _verify_dummy(self, password: str) -> None:
        if UserServicer._DUMMY_HASH is None:
            UserServicer._DUMMY_HASH = self._hasher.hash("not-a-real-password")
        self._verify(UserServicer._DUMMY_HASH, password)

    async def RefreshToken(
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
            session = await self.store.rotate_refresh_token(
                presented,
                replacement,
                self._rt.settings.refresh_token_ttl_seconds,
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
        access, ttl = await self._issue_tokens(session.user_id, session.session_id)
        profile = await self._profile(session.user_id, session.user_id)
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

    async def Logout(
        self, request: user_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.LogoutResponse:
        caller = require_caller()
        await self.store.revoke_session(caller.user_id, caller.session_id)
        # Right away as well as from the `user.session_revoked` event (crash-safe).
        await self._revocations().revoke_session(caller.session_id)
        await self._clear_cookie(context)
        return user_pb2.LogoutResponse()

    async def _clear_cookie(self, context: grpc.aio.ServicerContext) -> None:
        await context.send_initial_metadata(cookies.clear_cookies(context.invocation_metadata()))

    async def _end_sessions(self, session_ids: list[int]) -> None:
        """Access tokens of ended sessions are refused at once (the events repeat it)."""
        revocations = self._revocations()
        for session_id in session_ids:
            await revocations.revoke_session(session_id)

    async def LogoutEverywhere(
        self, request: user_pb2.LogoutEverywhereRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.LogoutEverywhereResponse:
        caller = require_caller()
        ended = await self.store.revoke_all_sessions(caller.user_id)
        await self._end_sessions(sorted({*ended, caller.session_id}))
        await self._clear_cookie(context)
        return user_pb2.LogoutEverywhereResponse(ended_session_count=len(ended))

    async def ListSessions(
        self, request: user_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.ListSessionsResponse:
        caller = self._owner(request.user_id, "list your own sessions")
        found = await self.store.list_sessions(caller.user_id, MAX_SESSIONS_LISTED)
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

    def _owner(self, user_id: int, what: str) -> Caller:
        caller = require_caller()
        require_positive_id(user_id, "user_id")
        if user_id != caller.user_id:
            raise not_owner(what)
        return caller

    async def _check_password(self, user_id: int, password: str) -> None:
        """WRONG_PASSWORD on `current_password` unless it is the account's password."""
        stored = await self.store.password_hash(user_id)
        if stored is None:
            raise NotFound(f"user {user_id} not found", resource="user", resource_id=user_id)
        if not await asyncio.to_thread(self._verify, stored, password):
            raise InvalidArgument(
                [("current_password", "is not the account's password")],
                reason=Reason.WRONG_PASSWORD,
            )

    async def ChangePassword(
        self, request: user_pb2.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.ChangePasswordResponse:
        caller = self._owner(request.user_id, "change your own password")
        v = Violations()
        v.check(bool(request.current_password), "current_password", "required")
        v.check(len(request.current_password) <= MAX_PASSWORD, "current_password", "too long")
        v.check(
            MIN_PASSWORD <= len(request.new_password) <= MAX_PASSWORD,
            "new_password",
            f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters",
        )
        v.raise_if_any()
        # Each attempt costs an argon2id run and guesses the password: limited.
        await self.ready(self._password_limit).enforce(str(caller.user_id), "password changes")
        await self._check_password(caller.user_id, request.current_password)
        new_hash = await asyncio.to_thread(self._hasher.hash, request.new_password)
        ended = await self.store.change_password(
            caller.user_id, new_hash, keep_session=caller.session_id
        )
        await self._end_sessions(ended)
        return user_pb2.ChangePasswordResponse(ended_session_count=len(ended))

    async def RequestPasswordReset(
        self, request: user_pb2.RequestPasswordResetRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.RequestPasswordResetResponse:
        """Public. The same answer (and, the mail being sent in the background, the same
        time) whether or not an account uses the address: no account enumeration."""
        email = request.email.strip()
        v = Violations()
        v.check(
            bool(EMAIL.match(email)) and len(email) <= 254 and email.isprintable(),
            "email",
            "must be a valid email address",
        )
        v.raise_if_any()
        client = client_address(context.invocation_metadata(), context.peer())
        if client is not None:
            await self.ready(self._reset_client_limit).enforce(client, "password reset requests")
        digest = hashlib.sha256(email.lower().encode()).hexdigest()
        await self.ready(self._reset_address_limit).enforce(
            digest, "password reset requests for this address"
        )
        task = asyncio.create_task(self._mail_reset(email))
        self._mail_tasks.add(task)
        task.add_done_callback(self._mail_tasks.discard)
        return user_pb2.RequestPasswordResetResponse()

    async def _mail_reset(self, email: str) -> None:
        try:
            for user_id, handle, address in await self.store.find_for_reset(email):
                token = secrets.token_urlsafe(32)
                await self.store.issue_password_reset(user_id, token, PASSWORD_RESET_TTL_SECONDS)
                subject, body = mail.password_reset(handle, self._reset_link.format(token=token))
                await self.mailer.send(address, subject, body)
        except Exception:  # a mail problem must never show in the (uniform) answer
            logging.getLogger("socialmesh.mail").exception("password reset mail failed")

    async def ResetPassword(
        self, request: user_pb2.ResetPasswordRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.ResetPasswordResponse:
        v = Violations()
        token = request.token.strip()
        if v.check(bool(token), "token", "required"):
            v.check(
                len(token) <= MAX_VERIFICATION_TOKEN and token.isascii() and token.isprintable(),
                "token",
                "is not a password reset token",
            )
        v.check(
            MIN_PASSWORD <= len(request.new_password) <= MAX_PASSWORD,
            "new_password",
            f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters",
        )
        v.raise_if_any()
        invalid = InvalidArgument(
            [("token", "invalid, expired or already used: ask for a new reset mail")],
            reason=Reason.RESET_TOKEN_INVALID,
        )
        # A made-up token costs a lookup, not an argon2id run.
        if not await self.store.reset_token_live(token):
            raise invalid
        new_hash = await asyncio.to_thread(self._hasher.hash, request.new_password)
        done = await self.store.reset_password(token, new_hash)
        if done is None:  # spent (or expired) meanwhile
            raise invalid
        await self._end_sessions(done[1])
        return user_pb2.ResetPasswordResponse()

    async def ChangeEmail(
        self, request: user_pb2.ChangeEmailRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.User:
        caller = self._owner(request.user_id, "change your own email address")
        email = request.email.strip()
        v = Violations()
        v.check(
            bool(EMAIL.match(email)) and len(email) <= 254 and email.isprintable(),
            "email",
            "must be a valid email address",
        )
        v.check(bool(request.current_password), "current_password", "required")
        v.check(len(request.current_password) <= MAX_PASSWORD, "current_password", "too long")
        v.raise_if_any()
        await self.ready(self._email_limit).enforce(str(caller.user_id), "email changes")
        await self._check_password(caller.user_id, request.current_password)
        record, before = await self.store.change_email(caller.user_id, email)
        await self.cache.invalidate(str(record.user_id), record.to_bytes())
        link = await self._new_verification_link(caller.user_id)
        try:
            if link is not None:
                subject, body = mail.verification(record.handle, link)
                await self.mailer.send(email, subject, body)
            if before.lower() != email.lower():
                subject, body = mail.email_changed(record.handle)
                await self.mailer.send(before, subject, body)
        except Exception:  # the change stands; the owner can ask for a new link
            logging.getLogger("socialmesh.mail").exception("email change mail failed")
        return (await self._present([record], caller.user_id))[0]

    async def GetUser(
        self, request: user_pb2.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.User:
        require_positive_id(request.user_id, "user_id")
        return await self._profile(request.user_id, current_viewer_id())

    async def BatchGetUsers(
        self, request: user_pb2.BatchGetUsersRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.BatchGetUsersResponse:
        ids = batch_ids(request.user_ids, "user_ids", MAX_BATCH)
        paths = list(request.read_mask.paths)
        unknown = [p for p in paths if p not in user_pb2.User.DESCRIPTOR.fields_by_name]
        if unknown:
            raise InvalidArgument([("read_mask", f"unknown User fields: {', '.join(unknown)}")])
        viewer = current_viewer_id()
        records = await self._records(ids)
        users = await self._present(
            [records[i] for i in ids if i in records],
            viewer,
            counts=not paths or bool(set(paths) & COUNT_FIELDS),
        )
        if paths:
            users = [_masked(user, paths) for user in users]
        return user_pb2.BatchGetUsersResponse(users=users)

    async def LookupUsers(
        self, request: user_pb2.LookupUsersRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.LookupUsersResponse:
        handles = list(dict.fromkeys(normalize_handle(h) for h in request.handles))
        v = Violations()
        v.check(0 < len(handles) <= MAX_LOOKUP, "handles", f"give 1 to {MAX_LOOKUP} handles")
        v.raise_if_any()
        wanted = [h for h in handles if HANDLE.match(h)]  # malformed handles cannot exist
        records = await self.store.find_by_handles(wanted) if wanted else []
        by_handle = {r.handle.lower(): r for r in records}
        ordered = [by_handle[h] for h in wanted if h in by_handle]
        return user_pb2.LookupUsersResponse(users=await self._present(ordered, current_viewer_id()))

    async def UpdateUser(
        self, request: user_pb2.UpdateUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.User:
        caller = require_caller()
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
        if caller.user_id not in await self._records([caller.user_id]):
            raise NotFound(f"user {caller.user_id} not found", resource="user")
        await self.ready(self._update_limit).enforce(str(caller.user_id), "profile updates")
        if "avatar_media_id" in paths:
            changes["avatar_media_id"] = request.user.avatar_media_id
            changes["avatar_url"] = await self._avatar_url(
                caller.user_id, request.user.avatar_media_id
            )
        record = await self.store.update_profile(caller.user_id, changes)
        await self.cache.invalidate(str(record.user_id), record.to_bytes())
        await cards_changed(self._rt.redis, (record.user_id,))
        return (await self._present([record], caller.user_id))[0]

    async def _avatar_url(self, owner_id: int, media_id: int) -> str:
        """The URL of the owner's READY image's 320 px variant (marking it in use); "" for 0."""
        if media_id == 0:
            return ""
        try:
            reply = await self.ready(self._media).AttachMedia(
                media_pb2.AttachMediaRequest(owner_id=owner_id, media_ids=[media_id])
            )
        except grpc.aio.AioRpcError as exc:
            raise upstream_error(exc, "media") from exc
        (media,) = reply.media
        if media.media_type != media_pb2.MEDIA_TYPE_IMAGE:
            raise InvalidArgument([("user.avatar_media_id", "must be an image")])
        by_kind = {(v.kind, v.content_type): v.url for v in media.variants}
        url = by_kind.get((media_pb2.VARIANT_KIND_W320, "image/webp")) or next(
            (v.url for v in media.variants), ""
        )
        return url

    async def DeleteUser(
        self, request: user_pb2.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        caller = require_caller()
        require_positive_id(request.user_id, "user_id")
        if request.user_id != caller.user_id:
            raise not_owner("delete your own account")
        await self.store.soft_delete(caller.user_id)
        await self._revocations().revoke_user(caller.user_id)
        await self.cache.invalidate(str(caller.user_id))
        await cards_changed(self._rt.redis, (caller.user_id,))
        return empty_pb2.Empty()

    async def GetCaller(
        self, request: user_pb2.GetCallerRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.GetCallerResponse:
        # The interceptor already verified the token (and its revocation): no storage.
        caller = require_caller()
        return user_pb2.GetCallerResponse(user_id=caller.user_id, session_id=caller.session_id)

    async def ExportAccountStates(
        self, request: user_pb2.ExportAccountStatesRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.ExportAccountStatesResponse:
        """Every account's visibility state, for copies kept elsewhere: services only."""
        return await search_rules.export_account_states(self.store, self._rt.page_tokens, request)

    async def SearchUsers(
        self, request: user_pb2.SearchUsersRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.SearchUsersResponse:
        """Typeahead (services/user/search.py, docs/search.md): blocks are excluded in
        the query; profiles are presented as to this viewer (limited view of private
        accounts), with one relationship batch call and no counts."""
        search = self.ready(self._search)
        viewer = await search.limit_anonymous(context)
        records, token = await search.search(request, viewer)
        users = await self._present(records, viewer, counts=False)
        return user_pb2.SearchUsersResponse(users=users, next_page_token=token)
