"""UserService's RPCs: each reads the caller and the request, delegates to a job, and replies.

The jobs (one module each, wired in `on_ready`):

* `accounts.Accounts`: registration, profile updates, deletion (`avatars.Avatars`
  turns an upload into the profile picture);
* `sessions.Sessions`: login, refresh-token rotation, logout, the session list;
* `passwords.Passwords`: change and reset; `email_addresses.EmailAddresses`:
  verification links, verifying, changing the address; both hash through
  `credentials.Credentials` and mail through `mailer.Outbox`;
* `profiles.Profiles`: cached records, counts and relationships, presented to a viewer;
* `search.UserSearch`: people search;
* consumer groups, one class each (docs/events.md lists them): `user-revocations`
  (`revocations.py`), `user-counts` (`stale_counts.py`), `user-cards`
  (`stale_cards.py`) and `user-search` (`search_copy.py`, with the back-fill worker).

Who may call each RPC is the contract's access option (kit interceptor); what the
owner of an account may do is checked here (`require_owner`). Tunables: `config.py`.
"""

from __future__ import annotations

import os

import grpc
from google.protobuf import empty_pb2
from socialmesh.graph.v1 import graph_pb2_grpc
from socialmesh.media.v1 import media_pb2_grpc
from socialmesh.post.v1 import post_pb2_grpc
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.auth import (
    Revocations,
    TokenSigner,
    current_viewer_id,
    load_private_key,
    require_caller,
)
from services.kit.backfill import BackfillWorker
from services.kit.consumers import ConsumerGroup
from services.kit.errors import InvalidArgument
from services.kit.ratelimit import RateLimiter, client_address
from services.kit.search import anonymous_limit
from services.kit.server import Runtime, ServicerBase
from services.kit.validation import Violations, batch_ids, require_positive_id

from . import mailer as mail
from . import search as search_rules
from .account_rules import HANDLE, normalize_handle, require_owner
from .accounts import Accounts
from .avatars import Avatars
from .config import UserConfig
from .credentials import Credentials
from .email_addresses import EmailAddresses
from .passwords import Passwords
from .profiles import COUNT_FIELDS, Profiles, masked
from .revocations import RevocationReplay
from .search_copy import SearchCopy
from .sessions import Sessions, rotation_key
from .stale_cards import StaleCards
from .stale_counts import StaleCounts
from .store import UserStore

MAX_BATCH = 500
MAX_LOOKUP = 100


class UserServicer(ServicerBase, user_pb2_grpc.UserServiceServicer):
    """Every RPC decides who may call it; see the proto for the contract."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.config = UserConfig()
        self._store: UserStore | None = None
        self._profiles: Profiles | None = None
        self._accounts: Accounts | None = None
        self._sessions: Sessions | None = None
        self._passwords: Passwords | None = None
        self._addresses: EmailAddresses | None = None
        self._search: search_rules.UserSearch | None = None
        self._backfill: BackfillWorker | None = None
        self._groups: list[ConsumerGroup] = []
        #: Where account mails go (M4); replace with a real sender in production.
        #: The jobs send through `outbox`, which reads this at each send.
        self.mailer: mail.Mailer = mail.LogMailer()
        self.outbox = mail.Outbox(lambda: self.mailer)

    async def on_ready(self) -> None:
        rt, redis = self._rt, self._rt.redis
        s = rt.settings
        if not s.jwt_private_key_file:
            raise SystemExit("the user service needs JWT_PRIVATE_KEY_FILE (the signing key)")
        signing_key = load_private_key(s.jwt_private_key_file)
        self.config = config = UserConfig.from_env(os.environ)
        signer = TokenSigner(
            signing_key,
            issuer=s.jwt_issuer,
            audience=s.jwt_audience,
            ttl=s.access_token_ttl_seconds,
        )
        self._store = store = UserStore(rt.db, rt.ids)
        graph = graph_pb2_grpc.GraphServiceStub(self.peer("graph"))
        media = media_pb2_grpc.MediaServiceStub(self.peer("media"))
        posts = post_pb2_grpc.PostServiceStub(self.peer("post"))
        self._profiles = profiles = Profiles(store, redis, graph, posts)
        await profiles.start()
        self.mailer = mail.mailer_for(config.mail_spool_dir)
        credentials = Credentials(store)
        self._sessions = sessions = Sessions(
            store,
            profiles,
            credentials,
            redis,
            self._revocations,
            config,
            signer=signer,
            rotation_key=rotation_key(signing_key),
            refresh_ttl_seconds=s.refresh_token_ttl_seconds,
        )
        self._addresses = addresses = EmailAddresses(
            store,
            profiles,
            credentials,
            redis,
            self.outbox,
            verification_link=config.verification_link,
        )
        self._passwords = Passwords(
            store,
            credentials,
            redis,
            self.outbox,
            sessions.end,
            reset_link=config.reset_link,
            resets_per_client_per_hour=config.password_resets_per_client_per_hour,
        )
        self._accounts = Accounts(
            store,
            profiles,
            credentials,
            addresses,
            Avatars(media),
            redis,
            self.outbox,
            self._revocations,
            registrations_per_client_per_hour=config.registrations_per_client_per_hour,
        )
        self._search = search_rules.UserSearch(
            rt.db,
            rt.page_tokens,
            RateLimiter(redis, "search-users-client", limit=anonymous_limit(), window_seconds=60),
        )
        self._groups = [
            RevocationReplay(self._revocations),
            StaleCounts(redis),
            StaleCards(redis, profiles),
            SearchCopy(rt.db),
        ]
        for group in self._groups:
            await self.consume(group.GROUP, group.handlers(), start=group.START)
        # ... and what the streams no longer hold: back-filled from graph's export
        # in the background when it never was (docs/search.md).
        self._backfill = self._search.backfill_worker(graph)
        self._backfill.start()

    async def on_stop(self) -> None:
        if self._backfill is not None:
            await self._backfill.stop()
        if self._profiles is not None:
            await self._profiles.stop()
        await super().on_stop()

    def consumers(self) -> list[ConsumerGroup]:
        """The user service's consumer groups, one class each (docs/events.md lists them)."""
        return list(self._groups)

    # -- the jobs ------------------------------------------------------------------

    @property
    def store(self) -> UserStore:
        return self.ready(self._store)

    @property
    def profiles(self) -> Profiles:
        return self.ready(self._profiles)

    @property
    def accounts(self) -> Accounts:
        return self.ready(self._accounts)

    @property
    def sessions(self) -> Sessions:
        return self.ready(self._sessions)

    @property
    def passwords(self) -> Passwords:
        return self.ready(self._passwords)

    @property
    def addresses(self) -> EmailAddresses:
        return self.ready(self._addresses)

    def _revocations(self) -> Revocations:
        return self.ready(self._rt.revocations)

    # -- accounts ------------------------------------------------------------------

    async def CreateUser(
        self, request: user_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.User:
        return await self.accounts.create(request, context)

    async def UpdateUser(
        self, request: user_pb2.UpdateUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.User:
        return await self.accounts.update(require_caller(), request)

    async def DeleteUser(
        self, request: user_pb2.DeleteUserRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self.accounts.delete(require_owner(request.user_id, "delete your own account"))
        return empty_pb2.Empty()

    # -- email addresses -------------------------------------------------------------

    async def VerifyEmail(
        self, request: user_pb2.VerifyEmailRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.VerifyEmailResponse:
        return await self.addresses.verify(request)

    async def ResendVerificationEmail(
        self,
        request: user_pb2.ResendVerificationEmailRequest,
        context: grpc.aio.ServicerContext,
    ) -> user_pb2.ResendVerificationEmailResponse:
        caller = require_owner(request.user_id, "ask for your own verification mail")
        return await self.addresses.resend(caller)

    async def ChangeEmail(
        self, request: user_pb2.ChangeEmailRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.User:
        caller = require_owner(request.user_id, "change your own email address")
        return await self.addresses.change(caller, request)

    # -- sessions ------------------------------------------------------------------

    async def Login(
        self, request: user_pb2.LoginRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.LoginResponse:
        return await self.sessions.login(request, context)

    async def RefreshToken(
        self, request: user_pb2.RefreshTokenRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.RefreshTokenResponse:
        return await self.sessions.refresh(request, context)

    async def Logout(
        self, request: user_pb2.LogoutRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.LogoutResponse:
        return await self.sessions.logout(require_caller(), context)

    async def LogoutEverywhere(
        self, request: user_pb2.LogoutEverywhereRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.LogoutEverywhereResponse:
        return await self.sessions.logout_everywhere(require_caller(), context)

    async def ListSessions(
        self, request: user_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.ListSessionsResponse:
        caller = require_owner(request.user_id, "list your own sessions")
        return await self.sessions.listed(caller)

    async def GetCaller(
        self, request: user_pb2.GetCallerRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.GetCallerResponse:
        # The interceptor already verified the token (and its revocation): no storage.
        caller = require_caller()
        return user_pb2.GetCallerResponse(user_id=caller.user_id, session_id=caller.session_id)

    # -- passwords -----------------------------------------------------------------

    async def ChangePassword(
        self, request: user_pb2.ChangePasswordRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.ChangePasswordResponse:
        caller = require_owner(request.user_id, "change your own password")
        return await self.passwords.change(caller, request)

    async def RequestPasswordReset(
        self, request: user_pb2.RequestPasswordResetRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.RequestPasswordResetResponse:
        client = client_address(context.invocation_metadata(), context.peer())
        return await self.passwords.request_reset(request, client)

    async def ResetPassword(
        self, request: user_pb2.ResetPasswordRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.ResetPasswordResponse:
        return await self.passwords.reset(request)

    # -- profiles ------------------------------------------------------------------

    async def GetUser(
        self, request: user_pb2.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.User:
        require_positive_id(request.user_id, "user_id")
        return await self.profiles.profile(request.user_id, current_viewer_id())

    async def BatchGetUsers(
        self, request: user_pb2.BatchGetUsersRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.BatchGetUsersResponse:
        ids = batch_ids(request.user_ids, "user_ids", MAX_BATCH)
        paths = list(request.read_mask.paths)
        unknown = [p for p in paths if p not in user_pb2.User.DESCRIPTOR.fields_by_name]
        if unknown:
            raise InvalidArgument([("read_mask", f"unknown User fields: {', '.join(unknown)}")])
        viewer = current_viewer_id()
        records = await self.profiles.records(ids)
        users = await self.profiles.present(
            [records[i] for i in ids if i in records],
            viewer,
            counts=not paths or bool(set(paths) & COUNT_FIELDS),
        )
        if paths:
            users = [masked(user, paths) for user in users]
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
        users = await self.profiles.present(ordered, current_viewer_id())
        return user_pb2.LookupUsersResponse(users=users)

    # -- search --------------------------------------------------------------------

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
        users = await self.profiles.present(records, viewer, counts=False)
        return user_pb2.SearchUsersResponse(users=users, next_page_token=token)
