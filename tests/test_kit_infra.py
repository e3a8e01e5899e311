"""The kit against real PostgreSQL and Redis (embedded), and a real gRPC server."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import grpc
import pytest

from services.kit.cache import TwoLayerCache
from services.kit.channels import open_channel
from services.kit.db import Database
from services.kit.errors import ResourceExhausted
from services.kit.migrations import migrate
from services.kit.ratelimit import RateLimiter


def schema_name() -> str:
    return f"kit_{uuid.uuid4().hex[:10]}"


async def test_migrations_apply_once_even_when_racing(db: Database, tmp_path: Path):
    schema = schema_name()
    (tmp_path / "0001_table.sql").write_text("CREATE TABLE marks (n int);")
    (tmp_path / "0002_row.sql").write_text("INSERT INTO marks VALUES (1);")

    async def run() -> list[int]:
        async with db.primary.acquire() as conn:
            return await migrate(conn, schema, tmp_path)

    results = await asyncio.gather(*(run() for _ in range(4)))
    assert sorted(v for r in results for v in r) == [1, 2]  # each applied by exactly one
    assert await db.primary.fetchval(f"SELECT count(*) FROM {schema}.marks") == 1
    assert await run() == []  # idempotent
    assert await db.primary.fetchval(f"SELECT count(*) FROM {schema}.outbox") == 0


async def test_transaction_rolls_back_on_error(db: Database, tmp_path: Path):
    schema = schema_name()
    async with db.primary.acquire() as conn:
        await migrate(conn, schema, tmp_path)
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute(f"INSERT INTO {schema}.consumed_events VALUES ('g', 1)")
            raise RuntimeError("boom")
    assert await db.primary.fetchval(f"SELECT count(*) FROM {schema}.consumed_events") == 0
    assert db.reader() is db.primary


async def test_rate_limiter_is_atomic_under_concurrency(redis):
    limiter = RateLimiter(redis, f"t-{uuid.uuid4().hex[:6]}", limit=10, window_seconds=1)
    decisions = await asyncio.gather(*(limiter.hit("k") for _ in range(50)))
    assert sum(d.allowed for d in decisions) == 10
    with pytest.raises(ResourceExhausted) as err:
        await limiter.enforce("k", "things")
    assert err.value.retry_after_seconds > 0
    assert (await limiter.hit("other-key")).allowed  # keys are independent
    await asyncio.sleep(1.05)
    assert (await limiter.hit("k")).allowed  # the window slides


async def test_two_layer_cache_batches_and_invalidates_every_instance(redis):
    namespace = f"t-{uuid.uuid4().hex[:6]}"
    a = TwoLayerCache(redis, namespace)
    b = TwoLayerCache(redis, namespace)
    await a.start()
    await b.start()
    calls: list[list[str]] = []

    async def loader(keys: list[str]) -> dict[str, bytes]:
        calls.append(keys)
        return {k: f"v-{k}".encode() for k in keys if k != "missing"}

    try:
        got = await a.get_many(["1", "2", "missing"], loader)
        assert got == {"1": b"v-1", "2": b"v-2"} and calls == [["1", "2", "missing"]]
        assert await a.get("1", loader) == b"v-1"  # L1
        assert await b.get("1", loader) == b"v-1"  # L2 (b's L1 was empty)
        assert len(calls) == 1
        assert (a.stats.l1_hits, b.stats.l2_hits) == (1, 1)
        await a.invalidate("1", b"new")
        seen = None
        for _ in range(100):
            seen = await b.get("1", loader)
            if seen == b"new":
                break
            await asyncio.sleep(0.01)
        assert seen == b"new"
        await a.invalidate("2")
        assert await redis.get(f"cache:{namespace}:2") is None
    finally:
        await a.stop()
        await b.stop()


async def test_outbound_calls_get_a_default_deadline():
    async def slow(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(2)
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "t.Slow", {"Call": grpc.unary_unary_rpc_method_handler(slow)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = open_channel(f"127.0.0.1:{port}", timeout_seconds=0.3)
    try:
        call = channel.unary_unary("/t.Slow/Call")
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(b"x")
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert 0.25 < time.monotonic() - started < 1.5
    finally:
        await channel.close()
        await server.stop(0)


async def test_worker_ids_are_leased_uniquely(redis):
    from services.kit.ids import lease_worker_id, renew_worker_id

    owners = [f"test-{uuid.uuid4().hex}" for _ in range(20)]
    leased = [await lease_worker_id(redis, o, ttl_seconds=5) for o in owners]
    assert len(set(leased)) == 20
    assert await renew_worker_id(redis, leased[0], owners[0], ttl_seconds=5)
    assert not await renew_worker_id(redis, leased[0], "someone-else", ttl_seconds=5)
    for worker_id in leased:
        await redis.delete(f"worker-id:{worker_id}")
