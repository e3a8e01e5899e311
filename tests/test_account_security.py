"""Sessions, concurrent refreshes, password change/reset and email change (user service),
over real gRPC against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import logging
import re

import grpc
import pytest
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.user.v1 import user_pb2

from .conftest import unique
from .helpers import auth, error_info, outlive_refresh_grace, reason_of, violations

PASSWORD = "correct horse battery"
NEW_PASSWORD = "tr0ub4dor & 3"
RESET_LINK = re.compile(r"/reset-password#token=([A-Za-z0-9_\-]+)")
VERIFY_LINK = re.compile(r"/verify-email#token=([A-Za-z0-9_\-]+)")


async def account(users) -> tuple[user_pb2.User, user_pb2.LoginResponse]:
    handle = unique("acct")
    user = await users.CreateUser(
        user_pb2.CreateUserRequest(handle=handle, email=f"{handle}@example.com", password=PASSWORD)
    )
    return user, await users.Login(user_pb2.LoginRequest(handle=handle, password=PASSWORD))


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def bodies(caplog, to: str, subject: str, *, wait: bool = True) -> list[str]:
    """Bodies of the mails sent to `to` under `subject` (the dev mailer's log; mails go
    out in the background, so this waits for the first one unless told not to)."""
    found: list[str] = []
    for _ in range(100 if wait else 1):
        found = [
            r.args[2]  # type: ignore[index]
            for r in caplog.records
            if r.name == "socialmesh.mail"
            and isinstance(r.args, tuple)
            and r.args[:2] == (to, subject)
        ]
        if found:
            break
        await asyncio.sleep(0.05)
    return found


async def mails(caplog, to: str, subject: str, link: re.Pattern[str]) -> list[str]:
    """Tokens of the links mailed to `to` under `subject`."""
    return [m.group(1) for body in await bodies(caplog, to, subject) for m in link.finditer(body)]


async def test_a_refresh_repeated_within_the_grace_window_keeps_the_session(users):
    """Two tabs refreshing with the same token at once both stay signed in, with the
    same new refresh token; the session's access tokens keep working."""
    _, login = await account(users)
    request = user_pb2.RefreshTokenRequest(refresh_token=login.refresh_token)
    first, second = await asyncio.gather(users.RefreshToken(request), users.RefreshToken(request))
    assert first.refresh_token == second.refresh_token != login.refresh_token
    again = await users.RefreshToken(request)  # a third tab, a moment later
    assert again.refresh_token == first.refresh_token
    for reply in (first, second, again):
        caller = await users.GetCaller(
            user_pb2.GetCallerRequest(), metadata=auth(reply.access_token)
        )
        assert caller.user_id == login.user.user_id
    # The shared successor rotates on as usual.
    nxt = await users.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=first.refresh_token))
    assert nxt.refresh_token not in (first.refresh_token, login.refresh_token)


async def test_reuse_after_the_grace_window_revokes_the_session(users, db):
    _, login = await account(users)
    first = await users.RefreshToken(
        user_pb2.RefreshTokenRequest(refresh_token=login.refresh_token)
    )
    await outlive_refresh_grace(db, login.refresh_token)
    err = await refused(
        users.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=login.refresh_token))
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(err) == "REFRESH_TOKEN_REUSED"
    err = await refused(
        users.GetCaller(user_pb2.GetCallerRequest(), metadata=auth(first.access_token))
    )
    assert reason_of(err) == "SESSION_ENDED"


async def test_grace_ends_once_the_successor_was_rotated(users):
    """Within the window, but the successor has moved on: that is reuse, not a second tab."""
    _, login = await account(users)
    first = await users.RefreshToken(
        user_pb2.RefreshTokenRequest(refresh_token=login.refresh_token)
    )
    await users.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=first.refresh_token))
    err = await refused(
        users.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=login.refresh_token))
    )
    assert reason_of(err) == "REFRESH_TOKEN_REUSED"


async def test_refresh_failures_name_their_reason(users):
    err = await refused(users.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token="nope")))
    assert (err.code(), reason_of(err)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "REFRESH_TOKEN_INVALID",
    )
    _, login = await account(users)
    await users.Logout(user_pb2.LogoutRequest(), metadata=auth(login.access_token))
    err = await refused(
        users.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=login.refresh_token))
    )
    assert reason_of(err) == "SESSION_ENDED"
    err = await refused(users.RefreshToken(user_pb2.RefreshTokenRequest()))
    assert "refreshToken" in violations(err)


async def test_refresh_reads_the_cookie_and_answers_with_one(users):
    """The browser transport over plain gRPC metadata (the edge test checks the headers)."""
    user, _ = await account(users)
    cookie_mode = [("x-refresh-token-transport", "cookie"), ("x-forwarded-proto", "https")]
    call = users.Login(
        user_pb2.LoginRequest(handle=user.handle, password=PASSWORD), metadata=cookie_mode
    )
    login = await call
    assert login.refresh_token == "" and login.access_token
    set_cookies = [v for k, v in await call.initial_metadata() if k == "set-cookie"]
    (set_cookie,) = [v for v in set_cookies if v.startswith("sm_refresh=")]
    # Beside it a script-readable hint that a session exists, with nothing secret in it.
    (hint,) = [v for v in set_cookies if v.startswith("sm_session=")]
    assert hint.startswith("sm_session=1;") and "HttpOnly" not in hint and "Path=/;" in hint
    token = set_cookie.split(";")[0].removeprefix("sm_refresh=")
    assert token and "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert "Path=/v1/auth:refresh" in set_cookie and "Secure" in set_cookie
    assert f"Max-Age={30 * 24 * 3600}" in set_cookie
    call = users.RefreshToken(
        user_pb2.RefreshTokenRequest(),
        metadata=[*cookie_mode, ("cookie", f"theme=dark; sm_refresh={token}")],
    )
    refreshed = await call
    assert refreshed.refresh_token == "" and refreshed.user.user_id == user.user_id
    (rotated,) = [
        v for k, v in await call.initial_metadata() if k == "set-cookie" and "sm_refresh" in v
    ]
    assert rotated.split(";")[0] != f"sm_refresh={token}"
    call = users.Logout(user_pb2.LogoutRequest(), metadata=auth(refreshed.access_token))
    await call
    cleared_all = [v for k, v in await call.initial_metadata() if k == "set-cookie"]
    (cleared,) = [v for v in cleared_all if v.startswith("sm_refresh=")]
    assert cleared.startswith("sm_refresh=;") and "Max-Age=0" in cleared
    assert any(v.startswith("sm_session=;") and "Max-Age=0" in v for v in cleared_all)
    # Refreshing with a dead cookie fails and clears it.
    err = await refused(
        users.RefreshToken(
            user_pb2.RefreshTokenRequest(),
            metadata=[*cookie_mode, ("cookie", f"sm_refresh={token}")],
        )
    )
    assert reason_of(err) == "SESSION_ENDED"
    (dropped,) = [
        v
        for k, v in err.trailing_metadata() or ()
        if k == "set-cookie" and v.startswith("sm_refresh=")
    ]
    assert dropped.startswith("sm_refresh=;") and "Max-Age=0" in dropped


async def test_sessions_are_listed_to_their_owner_and_end_everywhere(users):
    user, first = await account(users)
    second = await users.Login(user_pb2.LoginRequest(handle=user.handle, password=PASSWORD))
    _, other = await account(users)
    listing = user_pb2.ListSessionsRequest(user_id=user.user_id)
    reply = await users.ListSessions(listing, metadata=auth(second.access_token))
    caller = await users.GetCaller(user_pb2.GetCallerRequest(), metadata=auth(second.access_token))
    assert [s.current for s in reply.sessions] == [True, False]  # newest first
    assert reply.sessions[0].session_id == caller.session_id
    err = await refused(users.ListSessions(listing, metadata=auth(other.access_token)))
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
    assert reason_of(await refused(users.ListSessions(listing))) == "TOKEN_MISSING"

    ended = await users.LogoutEverywhere(
        user_pb2.LogoutEverywhereRequest(), metadata=auth(first.access_token)
    )
    assert ended.ended_session_count == 2
    for login in (first, second):
        err = await refused(
            users.GetCaller(user_pb2.GetCallerRequest(), metadata=auth(login.access_token))
        )
        assert reason_of(err) == "SESSION_ENDED"
        err = await refused(
            users.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=login.refresh_token))
        )
        assert reason_of(err) == "SESSION_ENDED"
    await users.GetCaller(user_pb2.GetCallerRequest(), metadata=auth(other.access_token))


async def test_change_password_needs_the_current_one_and_ends_other_sessions(users, mesh):
    graph = graph_pb2_grpc.GraphServiceStub(mesh["graph"].channel)
    user, mine = await account(users)
    elsewhere = await users.Login(user_pb2.LoginRequest(handle=user.handle, password=PASSWORD))
    intruder, theirs = await account(users)
    change = user_pb2.ChangePasswordRequest(
        user_id=user.user_id, current_password="not it at all", new_password=NEW_PASSWORD
    )
    err = await refused(users.ChangePassword(change, metadata=auth(mine.access_token)))
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "WRONG_PASSWORD")
    assert "currentPassword" in violations(err)
    change.current_password = PASSWORD
    err = await refused(users.ChangePassword(change, metadata=auth(theirs.access_token)))
    assert reason_of(err) == "NOT_OWNER"
    short = user_pb2.ChangePasswordRequest(
        user_id=user.user_id, current_password=PASSWORD, new_password="short"
    )
    err = await refused(users.ChangePassword(short, metadata=auth(mine.access_token)))
    assert "newPassword" in violations(err)

    done = await users.ChangePassword(change, metadata=auth(mine.access_token))
    assert done.ended_session_count == 1
    # The other session is over at once, in every service; this one lives on.
    follow = graph_pb2.FollowUserRequest(user_id=intruder.user_id)
    err = await refused(graph.FollowUser(follow, metadata=auth(elsewhere.access_token)))
    assert reason_of(err) == "SESSION_ENDED"
    await graph.FollowUser(follow, metadata=auth(mine.access_token))
    err = await refused(users.Login(user_pb2.LoginRequest(handle=user.handle, password=PASSWORD)))
    assert reason_of(err) == "INVALID_CREDENTIALS"
    await users.Login(user_pb2.LoginRequest(handle=user.handle, password=NEW_PASSWORD))


async def test_password_reset_by_mail(users, caplog):
    caplog.set_level(logging.INFO, logger="socialmesh.mail")
    user, login = await account(users)
    address = f"{user.handle}@example.com"
    # The same (empty) answer for an address nobody uses: nothing to enumerate.
    nobody = f"{unique('nobody')}@example.com"
    await users.RequestPasswordReset(user_pb2.RequestPasswordResetRequest(email=nobody))
    await users.RequestPasswordReset(user_pb2.RequestPasswordResetRequest(email=address.upper()))
    (token,) = await mails(caplog, address, "Reset your socialmesh password", RESET_LINK)
    assert await bodies(caplog, nobody, "Reset your socialmesh password", wait=False) == []

    reset = user_pb2.ResetPasswordRequest(token=token, new_password=NEW_PASSWORD)
    await users.ResetPassword(reset)
    err = await refused(users.ResetPassword(reset))  # single use
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "RESET_TOKEN_INVALID")
    assert "token" in violations(err)
    # Every session ended; the new password works, the old one does not.
    err = await refused(
        users.GetCaller(user_pb2.GetCallerRequest(), metadata=auth(login.access_token))
    )
    assert reason_of(err) == "SESSION_ENDED"
    assert (
        reason_of(
            await refused(users.Login(user_pb2.LoginRequest(handle=user.handle, password=PASSWORD)))
        )
        == "INVALID_CREDENTIALS"
    )
    await users.Login(user_pb2.LoginRequest(handle=user.handle, password=NEW_PASSWORD))

    err = await refused(users.RequestPasswordReset(user_pb2.RequestPasswordResetRequest(email="x")))
    assert "email" in violations(err)
    for _ in range(2):  # 3 per address per hour
        await users.RequestPasswordReset(user_pb2.RequestPasswordResetRequest(email=address))
    err = await refused(
        users.RequestPasswordReset(user_pb2.RequestPasswordResetRequest(email=address))
    )
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    info = error_info(err)
    assert info.metadata["limit"] == "3" and info.metadata["window"] == "3600s"
    retry = dict(err.trailing_metadata() or ())["retry-after"]
    assert 1 <= int(retry) <= 3600


async def test_change_email_needs_the_password_and_re_verifies(users, caplog):
    caplog.set_level(logging.INFO, logger="socialmesh.mail")
    user, login = await account(users)
    old = f"{user.handle}@example.com"
    (welcome,) = await mails(caplog, old, "Welcome to socialmesh", VERIFY_LINK)
    await users.VerifyEmail(user_pb2.VerifyEmailRequest(token=welcome))
    new = f"new.{user.handle}@example.com"
    change = user_pb2.ChangeEmailRequest(user_id=user.user_id, email=new, current_password="nope")
    err = await refused(users.ChangeEmail(change, metadata=auth(login.access_token)))
    assert reason_of(err) == "WRONG_PASSWORD"
    _, other = await account(users)
    change.current_password = PASSWORD
    assert (
        reason_of(await refused(users.ChangeEmail(change, metadata=auth(other.access_token))))
        == "NOT_OWNER"
    )
    changed = await users.ChangeEmail(change, metadata=auth(login.access_token))
    assert changed.email == new and not changed.email_verified
    (token,) = await mails(caplog, new, "Confirm your email address", VERIFY_LINK)
    assert await bodies(caplog, old, "Your socialmesh email address was changed")
    await users.VerifyEmail(user_pb2.VerifyEmailRequest(token=token))
    me = await users.GetUser(
        user_pb2.GetUserRequest(user_id=user.user_id), metadata=auth(login.access_token)
    )
    assert me.email == new and me.email_verified
