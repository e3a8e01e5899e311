"""`socialmesh events ...`: what ops need to see and fix on the event bus.

`status` shows each stream's groups (pending, last delivered, dead letters,
counters); `dead-letters` lists a group's parked events as JSON and `--replay`
re-publishes them for that group only.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import redis.asyncio as aioredis
from google.protobuf import json_format

from services.kit.consumers import DeadLetters, dead_letter_stream, stats_key
from services.kit.events import stream_name, unpack


def load_event_types(services: list[str]) -> None:
    """Imports every service's events module so envelopes can be decoded."""
    for service in services:
        try:
            importlib.import_module(f"socialmesh.{service}.v1.events_pb2")
        except ModuleNotFoundError:
            pass  # a service that publishes nothing


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def status(redis: aioredis.Redis, services: list[str]) -> list[dict[str, Any]]:
    """One row per (stream, group): what a dashboard would show."""
    rows: list[dict[str, Any]] = []
    for service in services:
        stream = stream_name(service)
        try:
            groups = await redis.xinfo_groups(stream)
        except aioredis.ResponseError:
            continue  # nothing published yet
        length = await redis.xlen(stream)
        for group in groups:
            name = _text(group["name"])
            counters = await redis.hgetall(stats_key(stream, name))
            rows.append(
                {
                    "stream": stream,
                    "length": length,
                    "group": name,
                    "consumers": group["consumers"],
                    "pending": group["pending"],
                    "last_delivered": _text(group["last-delivered-id"]),
                    "dead_letters": await redis.xlen(dead_letter_stream(stream, name)),
                    **{_text(k): int(v) for k, v in counters.items()},
                }
            )
    return rows


async def dead_letters(
    redis: aioredis.Redis, stream: str, group: str, *, replay: bool, count: int = 100
) -> list[dict[str, Any]] | int:
    """Lists a group's dead letters (as JSON-able dicts), or replays them all."""
    parked = DeadLetters(redis, stream, group)
    if replay:
        return await parked.replay()
    listed = []
    for letter in await parked.list(count):
        try:
            event: Any = json_format.MessageToDict(unpack(letter.envelope))
        except KeyError:
            event = {"undecodable": letter.envelope.payload.type_url}
        listed.append(
            {
                "dead_letter_id": letter.dead_letter_id,
                "entry_id": letter.entry_id,
                "type": letter.event_type,
                "event_id": str(letter.envelope.event_id),
                "attempts": letter.attempts,
                "error": letter.error,
                "event": event,
            }
        )
    return listed


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))
