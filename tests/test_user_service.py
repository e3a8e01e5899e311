"""The user service over real gRPC, against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from socialmesh.user.v1 import events_pb2 as user_events
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.events import EventEnvelope, unpack

from .conftest import Infra, RunningService, unique
from .helpers import auth, code_of, outlive_refresh_grace, reason_of, violations

PASSWORD = "correct horse battery"


@pytest.fixture
def stub(user_service: RunningService) -> user_pb2_grpc.UserServiceStub:
    return user_pb2_grpc.UserServiceStub(user_service.channel)


async def register(
    stub: user_pb2_grpc.UserServiceStub, **overrides: str
) -> tuple[user_pb2.User, str]:
    handle = overrides.pop("handle", unique())
    reply = await stub.CreateUser(
        user_pb2.CreateUserRequest(
            handle=handle,
            email=overrides.pop("email", f"{handle}@example.com"),
            password=PASSWORD,
            display_name=overrides.pop("display_name", ""),
        )
    )
    login = await stub.Login(user_pb2.LoginRequest(handle=handle, password=PASSWORD))
    return reply, login.access_token


def update(user_id: int, paths: list[str], **fields: object) -> user_pb2.UpdateUserRequest:
    return user_pb2.UpdateUserRequest(
        user=user_pb2.User(user_id=user_id, **fields),  # type: ignore[arg-type]
        update_mask=field_mask_pb2.FieldMask(paths=paths),
    )


async def test_register_login_and_read_own_profile(stub):
    user, token = await register(stub, display_name="Alice A.")
    assert user.user_id > 0 and user.display_name == "Alice A."
    me = await stub.GetUser(user_pb2.GetUserRequest(user_id=user.user_id), metadata=auth(token))
    assert me.handle == user.handle and me.email == user.email
    assert (me.follower_count, me.following_count, me.post_count) == (0, 0, 0)


async def test_handle_is_case_insensitive_and_unique(stub):
    handle = unique("case")
    await register(stub, handle=handle)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateUser(
            user_pb2.CreateUserRequest(
                handle=handle.upper(), email=f"x{handle}@e.com", password=PASSWORD
            )
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    login = await stub.Login(user_pb2.LoginRequest(handle=handle.upper(), password=PASSWORD))
    assert login.access_token


async def test_registration_does_not_reveal_a_registered_email(stub, caplog):
    """M4: a taken email gets the same answer as a new one (a new account); only the
    mailbox is told, out of band, that the address was already in use."""
    caplog.set_level(logging.INFO, logger="socialmesh.mail")
    user, _ = await register(stub)
    again = unique()
    reply = await stub.CreateUser(
        user_pb2.CreateUserRequest(handle=again, email=user.email.upper(), password=PASSWORD)
    )
    assert reply.handle == again and reply.user_id != user.user_id
    assert reply.email == user.email.upper()

    def mails() -> dict[str, str]:
        return {
            r.args[0]: r.args[1]  # type: ignore[index]
            for r in caplog.records
            if r.name == "socialmesh.mail" and isinstance(r.args, tuple)
        }

    for _ in range(50):
        if user.email.upper() in mails():
            break
        await asyncio.sleep(0.05)
    assert mails()[user.email] == "Welcome to socialmesh"
    assert mails()[user.email.upper()] == "Someone signed up with your email address"


@pytest.mark.parametrize(
    ("handle", "email", "password", "bad_field"),
    [
        ("ab", "ok@example.com", PASSWORD, "handle"),
        ("x" * 31, "ok@example.com", PASSWORD, "handle"),
        ("bad-handle!", "ok@example.com", PASSWORD, "handle"),
        ("goodhandle", "not-an-email", PASSWORD, "email"),
        ("goodhandle", "ok@example.com", "short", "password"),
    ],
)
async def test_registration_validation_names_the_field(stub, handle, email, password, bad_field):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateUser(
            user_pb2.CreateUserRequest(handle=handle, email=email, password=password)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_field in violations(err.value)


async def test_password_is_stored_as_argon2_hash(stub, user_service):
    user, _ = await register(stub)
    db = user_service.host.runtime.db
    stored = await db.primary.fetchval(
        'SELECT password_hash FROM "user".users WHERE user_id = $1', user.user_id
    )
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


async def test_wrong_password_and_unknown_handle_look_the_same(stub):
    user, _ = await register(stub)
    errors = []
    for handle in (user.handle, unique("nobody")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Login(user_pb2.LoginRequest(handle=handle, password="wrong password"))
        errors.append((err.value.code(), err.value.details()))
    assert errors[0] == errors[1] == (grpc.StatusCode.UNAUTHENTICATED, "invalid handle or password")


async def test_update_requires_token_and_ownership(stub):
    alice, _ = await register(stub)
    _, bob_token = await register(stub)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateUser(update(alice.user_id, ["bio"], bio="hi"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateUser(update(alice.user_id, ["bio"], bio="pwned"), metadata=auth(bob_token))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    mine = await stub.GetUser(user_pb2.GetUserRequest(user_id=alice.user_id))
    assert mine.bio == ""


async def test_forged_and_garbage_tokens_are_refused_even_on_public_calls(stub, infra: Infra):
    user, _ = await register(stub)
    import jwt

    forged = jwt.encode({"sub": str(user.user_id)}, "secret", algorithm="HS256")
    for token in (forged, "garbage", infra.signer(ttl=-60).sign(user.user_id, 1)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetUser(user_pb2.GetUserRequest(user_id=user.user_id), metadata=auth(token))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_update_mask_allow_list_blocks_mass_assignment(stub):
    user, token = await register(stub)
    for path in ("handle", "user_id", "follower_count", "email", "*", "is_limited_view"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.UpdateUser(update(user.user_id, [path]), metadata=auth(token))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, path
        assert "updateMask" in violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateUser(update(user.user_id, []), metadata=auth(token))
    assert "updateMask" in violations(err.value)


async def test_update_validates_values_and_strips_control_characters(stub):
    user, token = await register(stub)
    cases = [
        (["display_name"], {"display_name": "x" * 51}, "user.displayName"),
        (["bio"], {"bio": "b" * 301}, "user.bio"),
        # Avatars are uploads of one's own, never arbitrary URLs (tracking pixels).
        (["avatar_url"], {"avatar_url": "https://cdn.example.com/a.png"}, "updateMask"),
        (["avatar_media_id"], {"avatar_media_id": -1}, "user.avatarMediaId"),
        # NUL is refused in every string (PostgreSQL cannot store it), not stripped.
        (["bio"], {"bio": "a\x00b"}, "user.bio"),
    ]
    for paths, fields, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.UpdateUser(update(user.user_id, paths, **fields), metadata=auth(token))
        assert field in violations(err.value)
    reply = await stub.UpdateUser(
        update(
            user.user_id,
            ["bio", "display_name"],
            bio="line1\nline2\x01\x1b[31m",
            display_name="Ally",
        ),
        metadata=auth(token),
    )
    assert reply.bio == "line1\nline2[31m"
    assert reply.display_name == "Ally"


async def test_avatars_are_the_owner_s_own_image_uploads(stub, mesh, make_person):
    from socialmesh.media.v1 import media_pb2, media_pb2_grpc

    from .media_support import image_bytes, mp4, settled, upload

    media = media_pb2_grpc.MediaServiceStub(mesh["media"].channel)
    me, other = await make_person(), await make_person()
    photo = await upload(media, me, image_bytes("JPEG"))
    assert (await settled(media, me, photo.media_id)).state == media_pb2.MEDIA_STATE_READY
    reply = await stub.UpdateUser(
        update(me.id, ["avatar_media_id"], avatar_media_id=photo.media_id), metadata=me.md
    )
    assert reply.avatar_media_id == photo.media_id
    assert "/v1/media/files/" in reply.avatar_url and reply.avatar_url.endswith("w320.webp")
    seen = await stub.GetUser(user_pb2.GetUserRequest(user_id=me.id), metadata=other.md)
    assert seen.avatar_url == reply.avatar_url
    # Someone else's upload is refused; so is a video.
    theirs = stub.UpdateUser(
        update(other.id, ["avatar_media_id"], avatar_media_id=photo.media_id), metadata=other.md
    )
    assert await code_of(theirs) == grpc.StatusCode.PERMISSION_DENIED
    clip = await upload(media, me, mp4(), content_type="video/mp4", filename="a.mp4")
    assert (await settled(media, me, clip.media_id)).state == media_pb2.MEDIA_STATE_READY
    video = stub.UpdateUser(
        update(me.id, ["avatar_media_id"], avatar_media_id=clip.media_id), metadata=me.md
    )
    assert await code_of(video) == grpc.StatusCode.INVALID_ARGUMENT
    cleared = await stub.UpdateUser(
        update(me.id, ["avatar_media_id"], avatar_media_id=0), metadata=me.md
    )
    assert (cleared.avatar_media_id, cleared.avatar_url) == (0, "")


async def test_update_only_touches_masked_fields_and_logs_activity(stub, user_service):
    user, token = await register(stub, display_name="Keep Me")
    await stub.UpdateUser(
        update(user.user_id, ["bio"], bio="new bio", display_name="IGNORED"), metadata=auth(token)
    )
    got = await stub.GetUser(user_pb2.GetUserRequest(user_id=user.user_id))
    assert (got.display_name, got.bio) == ("Keep Me", "new bio")
    db = user_service.host.runtime.db
    rows = await db.primary.fetch(
        'SELECT action, changes FROM "user".activity_log WHERE user_id = $1 ORDER BY activity_id',
        user.user_id,
    )
    assert [r["action"] for r in rows] == ["user.created", "profile.updated"]
    assert rows[1]["changes"]["bio"] == {"from": "", "to": "new bio"}
    rows = await db.primary.fetch(
        'SELECT envelope FROM "user".outbox WHERE aggregate_id = $1 ORDER BY event_id',
        user.user_id,
    )
    events = [unpack(EventEnvelope.FromString(r["envelope"])) for r in rows]
    assert [type(e) for e in events] == [user_events.UserCreated, user_events.UserUpdated]
    assert list(events[1].changed_fields) == ["bio"]
    assert events[1].user_id == user.user_id and not events[1].is_private


async def test_eleventh_update_in_an_hour_is_rate_limited(stub):
    user, token = await register(stub)
    for i in range(10):
        await stub.UpdateUser(update(user.user_id, ["bio"], bio=f"v{i}"), metadata=auth(token))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateUser(update(user.user_id, ["bio"], bio="v10"), metadata=auth(token))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(err.value)
    assert status is not None
    assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
    got = await stub.GetUser(user_pb2.GetUserRequest(user_id=user.user_id))
    assert got.bio == "v9"


async def test_private_account_shows_limited_view_to_others(stub):
    owner, owner_token = await register(stub, display_name="Secret Sam")
    _, other_token = await register(stub)
    await stub.UpdateUser(
        update(owner.user_id, ["is_private", "bio"], is_private=True, bio="hidden"),
        metadata=auth(owner_token),
    )
    for metadata in (None, auth(other_token)):
        seen = await stub.GetUser(user_pb2.GetUserRequest(user_id=owner.user_id), metadata=metadata)
        assert seen.is_limited_view and seen.is_private
        assert (seen.handle, seen.display_name) == (owner.handle, "Secret Sam")
        assert seen.bio == "" and seen.email == "" and not seen.HasField("create_time")
    mine = await stub.GetUser(
        user_pb2.GetUserRequest(user_id=owner.user_id), metadata=auth(owner_token)
    )
    assert not mine.is_limited_view and mine.bio == "hidden"


async def test_batch_get_keeps_order_skips_missing_and_validates(stub):
    a, _ = await register(stub)
    b, _ = await register(stub)
    reply = await stub.BatchGetUsers(
        user_pb2.BatchGetUsersRequest(user_ids=[b.user_id, 999, a.user_id, b.user_id])
    )
    assert [u.user_id for u in reply.users] == [b.user_id, a.user_id]
    assert all(u.email == "" for u in reply.users)  # anonymous: no emails
    for ids in ([], list(range(1, 502)), [0]):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.BatchGetUsers(user_pb2.BatchGetUsersRequest(user_ids=ids))
        assert "userIds" in violations(err.value)


async def test_refresh_rotation_and_reuse_revokes_session(stub, db):
    user, _ = await register(stub)
    login = await stub.Login(user_pb2.LoginRequest(handle=user.handle, password=PASSWORD))
    first = await stub.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=login.refresh_token))
    assert first.refresh_token != login.refresh_token and first.access_token
    # The old token is dead; presenting it again after the grace window (concurrent
    # tabs, test_refresh_grace.py) is reuse and kills the session...
    await outlive_refresh_grace(db, login.refresh_token)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=login.refresh_token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(err.value) == "REFRESH_TOKEN_REUSED"
    # ...so even the legitimately rotated token stops working.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=first.refresh_token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(err.value) == "SESSION_ENDED"
    # Other sessions of the user are untouched.
    other = await stub.Login(user_pb2.LoginRequest(handle=user.handle, password=PASSWORD))
    assert (
        await stub.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=other.refresh_token))
    ).access_token


async def test_delete_is_owner_only_and_hides_the_user(stub):
    alice, alice_token = await register(stub)
    _, bob_token = await register(stub)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.DeleteUser(
            user_pb2.DeleteUserRequest(user_id=alice.user_id), metadata=auth(bob_token)
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await stub.GetUser(user_pb2.GetUserRequest(user_id=alice.user_id))  # warm the caches
    await stub.DeleteUser(
        user_pb2.DeleteUserRequest(user_id=alice.user_id), metadata=auth(alice_token)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetUser(user_pb2.GetUserRequest(user_id=alice.user_id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    batch = await stub.BatchGetUsers(user_pb2.BatchGetUsersRequest(user_ids=[alice.user_id]))
    assert list(batch.users) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Login(user_pb2.LoginRequest(handle=alice.handle, password=PASSWORD))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_update_is_visible_at_once_on_another_instance(stub, infra: Infra, mesh):
    """Two instances share Redis; the second must not serve its stale L1 copy."""
    from services.kit.server import ServiceHost
    from services.user.service import build_spec

    second = ServiceHost(build_spec(), infra.settings("user", mesh.env))
    await second.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            other = user_pb2_grpc.UserServiceStub(channel)
            user, token = await register(stub)
            before = await other.GetUser(user_pb2.GetUserRequest(user_id=user.user_id))
            assert before.display_name == user.display_name  # now in the second's L1
            await stub.UpdateUser(
                update(user.user_id, ["display_name"], display_name="Renamed"), metadata=auth(token)
            )
            seen = ""
            for _ in range(50):  # pub/sub delivery is asynchronous but fast
                seen = (
                    await other.GetUser(user_pb2.GetUserRequest(user_id=user.user_id))
                ).display_name
                if seen == "Renamed":
                    break
                await asyncio.sleep(0.02)
            assert seen == "Renamed"
    finally:
        await second.stop()


async def test_concurrent_registrations_of_one_handle_create_one_account(stub):
    handle = unique("race")
    results = await asyncio.gather(
        *(
            stub.CreateUser(
                user_pb2.CreateUserRequest(
                    handle=handle, email=f"{i}{handle}@e.com", password=PASSWORD
                )
            )
            for i in range(5)
        ),
        return_exceptions=True,
    )
    created = [r for r in results if isinstance(r, user_pb2.User)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(created) == 1
    assert [r.code() for r in refused] == [grpc.StatusCode.ALREADY_EXISTS] * 4


async def test_batch_get_read_mask_returns_only_named_fields(stub):
    user, _ = await register(stub, display_name="Masked")
    reply = await stub.BatchGetUsers(
        user_pb2.BatchGetUsersRequest(
            user_ids=[user.user_id],
            read_mask=field_mask_pb2.FieldMask(paths=["user_id", "is_private"]),
        )
    )
    assert reply.users[0].user_id == user.user_id and reply.users[0].display_name == ""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.BatchGetUsers(
            user_pb2.BatchGetUsersRequest(
                user_ids=[user.user_id], read_mask=field_mask_pb2.FieldMask(paths=["password"])
            )
        )
    assert "readMask" in violations(err.value)


async def test_login_failures_are_limited_per_account_and_client(stub):
    """10 failures for one account from one client close it *for that client* only:
    the owner, signing in from elsewhere, is never locked out (M2)."""
    user, _ = await register(stub)
    attacker = [("x-forwarded-for", "198.51.100.7")]
    for _ in range(10):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Login(
                user_pb2.LoginRequest(handle=user.handle, password="wrong-password"),
                metadata=attacker,
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Login(
            user_pb2.LoginRequest(handle=user.handle, password=PASSWORD), metadata=attacker
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    owner = [("x-forwarded-for", "203.0.113.20")]
    login = await stub.Login(
        user_pb2.LoginRequest(handle=user.handle.upper(), password=PASSWORD), metadata=owner
    )
    assert login.user.user_id == user.user_id


async def test_failures_map_to_clean_statuses(infra: Infra, mesh, monkeypatch):
    """A lost database is UNAVAILABLE (retryable); a bug is INTERNAL with a trace id only."""
    from services.kit.server import ServiceHost
    from services.user.service import build_spec

    host = ServiceHost(build_spec(), infra.settings("user", mesh.env))
    await host.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{host.port}") as channel:
            stub = user_pb2_grpc.UserServiceStub(channel)
            store = host.runtime.db

            async def explode(*_args: object) -> None:
                raise ValueError("secret internals: password=hunter2")

            monkeypatch.setattr(store, "reader", lambda: _Exploding(explode))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetUser(user_pb2.GetUserRequest(user_id=987654321))
            assert err.value.code() == grpc.StatusCode.INTERNAL
            assert "internal error (trace id" in err.value.details()
            assert "hunter2" not in err.value.details()
            monkeypatch.undo()

            await store.primary.close()  # the database "goes away"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetUser(user_pb2.GetUserRequest(user_id=987654322))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await host.stop()


class _Exploding:
    def __init__(self, fn) -> None:
        self.fetch = fn


async def test_revoked_sessions_and_deleted_accounts_lose_their_access_tokens(stub, mesh, db):
    from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc

    graph = graph_pb2_grpc.GraphServiceStub(mesh["graph"].channel)
    user, _ = await register(stub)
    other, _ = await register(stub)
    session = await stub.Login(user_pb2.LoginRequest(handle=user.handle, password=PASSWORD))
    spare = await stub.Login(user_pb2.LoginRequest(handle=user.handle, password=PASSWORD))
    follow = graph_pb2.FollowUserRequest(user_id=other.user_id)
    await graph.FollowUser(follow, metadata=auth(session.access_token))  # works
    await stub.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=session.refresh_token))
    await outlive_refresh_grace(db, session.refresh_token)
    with pytest.raises(grpc.aio.AioRpcError):  # reuse: the session is revoked...
        await stub.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=session.refresh_token))
    with pytest.raises(grpc.aio.AioRpcError) as err:  # ...and so is its access token, everywhere
        await graph.FollowUser(follow, metadata=auth(session.access_token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(err.value) == "SESSION_ENDED"
    await graph.FollowUser(follow, metadata=auth(spare.access_token))  # other sessions live on

    await stub.DeleteUser(
        user_pb2.DeleteUserRequest(user_id=user.user_id), metadata=auth(spare.access_token)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.FollowUser(follow, metadata=auth(spare.access_token))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_revocation_survives_a_crash_after_commit(stub, mesh):
    """Reuse detected by the store alone (no direct Redis write): the event still revokes."""
    from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc

    from services.user.store import SessionRevoked, UserStore

    graph = graph_pb2_grpc.GraphServiceStub(mesh["graph"].channel)
    user, _ = await register(stub)
    other, _ = await register(stub)
    session = await stub.Login(user_pb2.LoginRequest(handle=user.handle, password=PASSWORD))
    runtime = mesh["user"].host.runtime
    raw = UserStore(runtime.db, runtime.ids)  # the store alone: no servicer to write Redis
    await raw.rotate_refresh_token(session.refresh_token, "replacement-1", 3600)
    with pytest.raises(SessionRevoked):
        await raw.rotate_refresh_token(session.refresh_token, "replacement-2", 3600)
    follow = graph_pb2.FollowUserRequest(user_id=other.user_id)
    code = None
    for _ in range(50):  # outbox -> stream -> the user service's revocation consumer
        try:
            await graph.FollowUser(follow, metadata=auth(session.access_token))
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            break
        await asyncio.sleep(0.1)
    assert code == grpc.StatusCode.UNAUTHENTICATED


# ----------------------------------------------------------------- email verification (M4)

VERIFICATION_LINK = re.compile(r"#token=([A-Za-z0-9_-]+)")


async def mailed_tokens(caplog, to: str, subject: str, count: int = 1) -> list[str]:
    """Tokens of the verification links mailed to `to` under `subject` (LogMailer's log;
    registration mails go out in the background), oldest first."""
    bodies: list[str] = []
    for _ in range(100):
        bodies = [
            r.args[2]  # type: ignore[index]
            for r in caplog.records
            if r.name == "socialmesh.mail"
            and isinstance(r.args, tuple)
            and r.args[:2] == (to, subject)
        ]
        if len(bodies) >= count:
            break
        await asyncio.sleep(0.05)
    assert len(bodies) >= count, f"no {subject!r} mail to {to}"
    tokens = [m.group(1) for body in bodies for m in VERIFICATION_LINK.finditer(body)]
    assert len(tokens) == len(bodies)  # one link per mail
    return tokens


async def refused_token(stub, token: str) -> tuple[grpc.StatusCode, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.VerifyEmail(user_pb2.VerifyEmailRequest(token=token))
    return err.value.code(), violations(err.value)


async def test_the_welcome_link_verifies_the_account_once(stub, user_service, caplog):
    caplog.set_level(logging.INFO, logger="socialmesh.mail")
    user, token = await register(stub)
    other, other_token = await register(stub)
    (link_token,) = await mailed_tokens(caplog, user.email, "Welcome to socialmesh")
    assert not user.email_verified

    # Only its SHA-256 is stored, with the address it was sent to.
    row = await user_service.host.runtime.db.primary.fetchrow(
        'SELECT token_hash, email FROM "user".email_verifications WHERE user_id = $1',
        user.user_id,
    )
    assert bytes(row["token_hash"]) == hashlib.sha256(link_token.encode()).digest()
    assert row["email"] == user.email

    # Anonymous: the person clicking the link may not be signed in.
    reply = await stub.VerifyEmail(user_pb2.VerifyEmailRequest(token=link_token))
    assert reply.user_id == user.user_id
    get = user_pb2.GetUserRequest(user_id=user.user_id)
    mine = await stub.GetUser(get, metadata=auth(token))
    assert mine.email_verified and mine.email == user.email
    for metadata in (auth(other_token), None):  # others never see the flag (nor the email)
        seen = await stub.GetUser(get, metadata=metadata)
        assert not seen.email_verified and not seen.email
    batch = await stub.BatchGetUsers(
        user_pb2.BatchGetUsersRequest(user_ids=[user.user_id, other.user_id]),
        metadata=auth(other_token),
    )
    assert [u.email_verified for u in batch.users] == [False, False]
    login = await stub.Login(user_pb2.LoginRequest(handle=user.handle, password=PASSWORD))
    assert login.user.email_verified

    # Single use: the second click is refused like any bad token, naming the field.
    assert await refused_token(stub, link_token) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        {"token": "invalid, expired or already used: ask for a new verification mail"},
    )


async def test_expired_garbage_and_missing_tokens_are_refused_by_field(stub, user_service, caplog):
    caplog.set_level(logging.INFO, logger="socialmesh.mail")
    user, token = await register(stub)
    (link_token,) = await mailed_tokens(caplog, user.email, "Welcome to socialmesh")
    await user_service.host.runtime.db.primary.execute(
        """UPDATE "user".email_verifications SET expires_at = now() - interval '1 second'
           WHERE user_id = $1""",
        user.user_id,
    )
    expired = await refused_token(stub, link_token)
    garbage = await refused_token(stub, "x" * 43)
    assert expired == garbage  # the same answer: nothing says which account or why
    assert expired[0] == grpc.StatusCode.INVALID_ARGUMENT and "token" in expired[1]
    for bad in ("", "   ", "t" * 129, "tok\u00e9n", "tok\u0000en", "tok\nen"):
        code, fields = await refused_token(stub, bad)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and list(fields) == ["token"], bad
    mine = await stub.GetUser(user_pb2.GetUserRequest(user_id=user.user_id), metadata=auth(token))
    assert not mine.email_verified


async def test_resend_is_owner_only_replaces_the_link_and_is_rate_limited(stub, caplog):
    caplog.set_level(logging.INFO, logger="socialmesh.mail")
    user, token = await register(stub)
    _, other_token = await register(stub)
    (welcome_token,) = await mailed_tokens(caplog, user.email, "Welcome to socialmesh")
    resend = user_pb2.ResendVerificationEmailRequest(user_id=user.user_id)

    assert await code_of(stub.ResendVerificationEmail(resend)) == grpc.StatusCode.UNAUTHENTICATED
    assert (
        await code_of(stub.ResendVerificationEmail(resend, metadata=auth(other_token)))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ResendVerificationEmail(
            user_pb2.ResendVerificationEmailRequest(), metadata=auth(token)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "userId" in violations(err.value)

    for _ in range(3):
        await stub.ResendVerificationEmail(resend, metadata=auth(token))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ResendVerificationEmail(resend, metadata=auth(token))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    tokens = await mailed_tokens(caplog, user.email, "Confirm your email address", count=3)
    assert len(set(tokens)) == 3 and welcome_token not in tokens

    # Each new link retires the earlier ones; the newest works.
    for old in (welcome_token, *tokens[:-1]):
        assert (await refused_token(stub, old))[0] == grpc.StatusCode.INVALID_ARGUMENT
    await stub.VerifyEmail(user_pb2.VerifyEmailRequest(token=tokens[-1]))
    assert (
        await code_of(stub.ResendVerificationEmail(resend, metadata=auth(token)))
        == grpc.StatusCode.FAILED_PRECONDITION
    )


async def test_a_reused_address_gets_a_link_for_the_new_account_only(stub, caplog):
    """M4 still holds (same answer), and the mailbox, and only the mailbox, can verify
    the second account; a verified address belongs to one live account."""
    caplog.set_level(logging.INFO, logger="socialmesh.mail")
    first, first_token = await register(stub)
    second, second_token = await register(stub, email=first.email)
    assert second.user_id != first.user_id and not second.email_verified
    (first_link,) = await mailed_tokens(caplog, first.email, "Welcome to socialmesh")
    (second_link,) = await mailed_tokens(
        caplog, first.email, "Someone signed up with your email address"
    )
    assert first_link != second_link

    reply = await stub.VerifyEmail(user_pb2.VerifyEmailRequest(token=second_link))
    assert reply.user_id == second.user_id  # the new account's link, not the old one's
    get = user_pb2.GetUserRequest
    assert not (
        await stub.GetUser(get(user_id=first.user_id), metadata=auth(first_token))
    ).email_verified
    assert (
        await stub.GetUser(get(user_id=second.user_id), metadata=auth(second_token))
    ).email_verified

    # The address is taken by a verified account now: the first link cannot verify it too.
    assert (
        await code_of(stub.VerifyEmail(user_pb2.VerifyEmailRequest(token=first_link)))
        == grpc.StatusCode.FAILED_PRECONDITION
    )
    # Once that account is gone, the (unspent) first link works.
    await stub.DeleteUser(
        user_pb2.DeleteUserRequest(user_id=second.user_id), metadata=auth(second_token)
    )
    assert (
        await stub.VerifyEmail(user_pb2.VerifyEmailRequest(token=first_link))
    ).user_id == first.user_id
