"""Prometheus metrics every service exposes: RPC rate, errors, latency; bus and cache health.

The kit's interceptor records every RPC (`rpc_server_handled_total` by method and
gRPC code, `rpc_server_handling_seconds` histograms); `MetricsSampler` refreshes
the gauges that need a query (outbox backlog, consumer-group lag and pending,
dead letters) every few seconds. `METRICS_PORT` starts the `/metrics` endpoint
(the Kubernetes manifests set it and annotate pods for scraping); unset, nothing
listens.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from .consumers import StreamConsumer, dead_letter_stream
from .db import Database
from .migrations import quote_ident

log = logging.getLogger("socialmesh.metrics")

RPC_HANDLED = Counter(
    "rpc_server_handled_total",
    "RPCs completed, by method and gRPC status code",
    ["service", "method", "code"],
)
RPC_SECONDS = Histogram(
    "rpc_server_handling_seconds",
    "Time from receiving an RPC to its status (streams: until they end)",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
)
OUTBOX_BACKLOG = Gauge(
    "outbox_unpublished_events", "Committed events not yet on the bus", ["service"]
)
CONSUMER_LAG = Gauge(
    "event_consumer_lag", "Entries of a stream the group has not read yet", ["stream", "group"]
)
CONSUMER_PENDING = Gauge(
    "event_consumer_pending", "Entries delivered but not acknowledged", ["stream", "group"]
)
DEAD_LETTERS = Gauge("event_dead_letters", "Events a group gave up on", ["stream", "group"])
CACHE_HIT_RATE = Gauge("cache_hit_rate", "Share of cache reads answered by a layer", ["cache"])


def serve_metrics(port: int) -> None:
    """Starts the `/metrics` HTTP endpoint (a daemon thread) on `port`."""
    start_http_server(port)
    log.info("metrics on :%d/metrics", port)


def method_name(path: str) -> str:
    """`/socialmesh.user.v1.UserService/GetUser` -> `UserService/GetUser` (low cardinality)."""
    service, _, method = path.rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}/{method}"


class MetricsSampler:
    """Refreshes the query-backed gauges of one service every `every` seconds."""

    def __init__(
        self,
        service: str,
        db: Database,
        redis: aioredis.Redis,
        consumers: Callable[[], list[StreamConsumer]],
        *,
        every: float = 10.0,
    ) -> None:
        self._service = service
        self._db = db
        self._redis = redis
        self._consumers = consumers
        self._every = every

    async def sample(self) -> None:
        backlog = await self._db.primary.fetchval(
            f"SELECT count(*) FROM {quote_ident(self._service)}.outbox WHERE published_at IS NULL"
        )
        OUTBOX_BACKLOG.labels(self._service).set(int(backlog))
        for consumer in self._consumers():
            stream, group = consumer.stream, consumer.group
            for info in await self._redis.xinfo_groups(stream):
                name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
                if name != group:
                    continue
                CONSUMER_PENDING.labels(stream, group).set(int(info.get("pending") or 0))
                CONSUMER_LAG.labels(stream, group).set(int(info.get("lag") or 0))
            DEAD_LETTERS.labels(stream, group).set(
                await self._redis.xlen(dead_letter_stream(stream, group))
            )

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("metrics sample failed", exc_info=True)
            await asyncio.sleep(self._every)
