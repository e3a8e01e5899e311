"""Helpers shared by the service tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.kit.auth import Caller, reset_caller, set_caller


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
