"""Helpers shared by the service tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from socialmesh.graph.v1 import graph_pb2
from socialmesh.post.v1 import post_pb2

from services.kit.auth import Caller, reset_caller, set_caller

if TYPE_CHECKING:
    from .conftest import Person


def auth(token: str) -> list[tuple[str, str]]:
    """Metadata carrying a bearer token."""
    return [("authorization", f"Bearer {token}")]


def violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    """The BadRequest field violations of a failed call, by field."""
    status = rpc_status.from_call(err)
    assert status is not None, "rich status details missing"
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def error_info(err: grpc.aio.AioRpcError | grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo of a failed call (AIP-193: every error carries one)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "rich status details missing"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError(f"no ErrorInfo in {status}")


def reason_of(err: grpc.aio.AioRpcError | grpc.RpcError) -> str:
    """The ErrorInfo reason of a failed call."""
    return error_info(err).reason


async def outlive_refresh_grace(db, refresh_token: str) -> None:
    """Moves a rotated refresh token's rotation an hour back, past the reuse grace window
    (what waiting that long would do, without the wait)."""
    import hashlib

    await db.primary.execute(
        """UPDATE "user".refresh_tokens SET rotated_at = rotated_at - interval '1 hour'
           WHERE token_hash = $1""",
        hashlib.sha256(refresh_token.encode()).digest(),
    )


async def code_of(call: Awaitable[object]) -> grpc.StatusCode:
    """The status code a call ends with (OK when it succeeds)."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@contextlib.contextmanager
def acting_as(caller: Caller | None) -> Iterator[None]:
    """Runs the block as if the kit's interceptor had authenticated `caller`."""
    token = set_caller(caller)
    try:
        yield
    finally:
        reset_caller(token)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Waits for an asynchronous effect (an event reaching a consumer) or fails the test."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def word() -> str:
    """A word no other post or name in the shared database contains."""
    return "w" + uuid.uuid4().hex[:10]


async def publish(posts, author: Person, text: str = "hello", **fields) -> post_pb2.Post:
    return await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(text=text, **fields)), metadata=author.md
    )


async def follow(graph, fan: Person, idol: Person) -> None:
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=idol.id), metadata=fan.md)


async def like(posts, who: Person, post: post_pb2.Post) -> None:
    await posts.LikePost(post_pb2.LikePostRequest(post_id=post.post_id), metadata=who.md)


async def search_ids(posts, query: str, viewer: Person | None = None, **fields) -> list[int]:
    reply = await posts.SearchPosts(
        post_pb2.SearchPostsRequest(query=query, **fields),
        metadata=viewer.md if viewer else None,
    )
    return [p.post_id for p in reply.posts]
