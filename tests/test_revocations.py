"""Revocations: a local mirror fed by pub/sub and index loads, Redis while it is not whole."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from services.kit.auth import Caller, Revocations

from .conftest import Infra


def _id() -> int:
    """An id no other test (or service in the mesh) uses."""
    return 10**15 + secrets.randbelow(10**15)


def _session(session_id: int, user_id: int | None = None) -> Caller:
    return Caller(user_id=user_id or _id(), session_id=session_id, token_id="t")


async def _eventually(check: Callable[[], Awaitable[bool]], within: float = 2.0) -> bool:
    """Polls `check` every 20 ms for up to `within` seconds."""
    for _ in range(int(within / 0.02)):
        if await check():
            return True
        await asyncio.sleep(0.02)
    return await check()


async def _revoke_silently(redis: aioredis.Redis, session_id: int) -> None:
    """A revocation whose pub/sub message was lost: the key and its index entry only."""
    await redis.set(f"revoked:session:{session_id}", 1, ex=60)
    expires_ms = (time.time() + 60) * 1000
    await redis.zadd(Revocations.INDEX, {f"session:{session_id}": expires_ms})


@contextlib.asynccontextmanager
async def started(*instances: Revocations) -> AsyncIterator[None]:
    for instance in instances:
        instance.start()
    try:
        async with asyncio.timeout(5):
            for instance in instances:
                await instance.until_healthy()
        yield
    finally:
        for instance in instances:
            await instance.stop()


@pytest.fixture
def no_redis_reads(redis, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Call it to make MGET fail: proves the answers come from the local mirror."""

    def forbid(client: aioredis.Redis | None = None) -> None:
        async def mget(*args: object, **kwargs: object) -> list[bytes | None]:
            raise AssertionError("a healthy mirror must not ask Redis")

        monkeypatch.setattr(client or redis, "mget", mget)

    return forbid


async def test_a_revocation_reaches_every_instance_and_is_local_at_once(redis, no_redis_reads):
    a = Revocations(redis, 60, reload_seconds=3600)  # only pub/sub can tell them
    b = Revocations(redis, 60, reload_seconds=3600)
    revoked, other = _session(_id()), _session(_id())
    async with started(a, b):
        no_redis_reads()
        await a.revoke_session(revoked.session_id)
        assert await a.is_revoked(revoked)  # the revoking process: no delay
        assert await _eventually(lambda: b.is_revoked(revoked))
        assert not await a.is_revoked(other) and not await b.is_revoked(other)
        user = _session(_id())
        await b.revoke_user(user.user_id)
        assert await b.is_revoked(user)
        assert await _eventually(lambda: a.is_revoked(_session(_id(), user.user_id)))
        assert a.healthy and b.healthy


async def test_revocations_written_while_not_subscribed_are_loaded(redis, no_redis_reads):
    before, written = _session(_id()), _session(_id())
    await Revocations(redis, 60).revoke_session(before.session_id)  # nobody listening yet
    b = Revocations(redis, 60, reload_seconds=0.2)
    async with started(b):
        no_redis_reads()
        assert await b.is_revoked(before)  # the initial load
        # Written without a message (pub/sub dropped it): the periodic reload heals.
        await _revoke_silently(redis, written.session_id)
        assert await _eventually(lambda: b.is_revoked(written))
        assert not await b.is_revoked(_session(_id()))


async def test_a_lost_subscription_falls_back_then_resubscribes_and_reloads(
    infra: Infra, redis, no_redis_reads
):
    name = f"revocations-{uuid.uuid4().hex[:8]}"
    own = aioredis.Redis.from_url(infra.redis_url, client_name=name)
    b = Revocations(own, 60, reload_seconds=3600)
    missed = _session(_id())
    try:
        async with started(b):
            await _revoke_silently(redis, missed.session_id)  # no message
            assert not await b.is_revoked(missed)  # unknown to the mirror (yet)
            clients = await redis.client_list()
            subscriber = [c["id"] for c in clients if c["name"] == name and c["sub"] != "0"]
            assert len(subscriber) == 1
            await redis.execute_command("CLIENT", "KILL", "ID", subscriber[0])
            assert await _eventually(lambda: _false(b.healthy))  # asks Redis meanwhile
            async with asyncio.timeout(5):
                await b.until_healthy()
            no_redis_reads(own)
            assert await b.is_revoked(missed)  # reloaded after resubscribing
    finally:
        await own.aclose()


async def _false(value: bool) -> bool:
    return not value


async def test_checks_ask_redis_until_the_mirror_is_whole(redis):
    revoked = _session(_id())
    await _revoke_silently(redis, revoked.session_id)  # no message
    idle = Revocations(redis, 60)  # never started: every check asks Redis
    assert await idle.is_revoked(revoked)
    assert await idle.is_revoked(_session(_id(), revoked.user_id)) is False
    b = Revocations(redis, 60, reload_seconds=3600)
    later = _session(_id())
    async with started(b):
        await _revoke_silently(redis, later.session_id)  # no message
        assert not await b.is_revoked(later)  # healthy: the mirror alone answers
        b._set_healthy(False)  # as while reconnecting
        assert await b.is_revoked(later)
        assert not await b.is_revoked(_session(_id()))


async def test_entries_expire_with_their_ttl(redis, no_redis_reads):
    a = Revocations(redis, 1, reload_seconds=3600)
    b = Revocations(redis, 1, reload_seconds=3600)
    revoked = _session(_id())
    async with started(a, b):
        no_redis_reads()
        await a.revoke_session(revoked.session_id)
        assert await a.is_revoked(revoked)
        assert await _eventually(lambda: b.is_revoked(revoked))
        await asyncio.sleep(1.2)
        assert not await a.is_revoked(revoked) and not await b.is_revoked(revoked)
        assert revoked.session_id not in a._revoked["session"]  # pruned
    assert not await redis.exists(f"revoked:session:{revoked.session_id}")
