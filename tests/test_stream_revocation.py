"""A live event stream ends within a second of its session's logout (the revocation
wakes it), not at its next heartbeat (20 s)."""

from __future__ import annotations

import asyncio
import time

from socialmesh.chat.v1 import chat_pb2
from socialmesh.user.v1 import user_pb2

from .conftest import unique
from .helpers import auth

HEARTBEAT_SECONDS = 20


async def test_a_stream_ends_within_a_second_of_logout(users, chat):
    handle = unique("stream")
    await users.CreateUser(
        user_pb2.CreateUserRequest(handle=handle, email=f"{handle}@e.com", password="password123")
    )
    login = await users.Login(user_pb2.LoginRequest(handle=handle, password="password123"))
    call = chat.StreamEvents(chat_pb2.StreamEventsRequest(), metadata=auth(login.access_token))
    reader = aiter(call)
    async with asyncio.timeout(10):
        hello = await anext(reader)
    assert hello.control.kind == chat_pb2.STREAM_CONTROL_KIND_HELLO
    await asyncio.sleep(0.3)  # the stream is idle, waiting for its next heartbeat

    started = time.monotonic()
    await users.Logout(user_pb2.LogoutRequest(), metadata=auth(login.access_token))
    async with asyncio.timeout(HEARTBEAT_SECONDS / 2):
        while True:
            event = await anext(reader)
            if event.HasField("control"):
                break
    elapsed = time.monotonic() - started
    assert event.control.kind == chat_pb2.STREAM_CONTROL_KIND_SESSION_ENDED
    assert elapsed < 1.0, f"the stream ended {elapsed:.2f} s after logout"
    call.cancel()
