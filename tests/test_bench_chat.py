"""The chat benchmark's workloads: behaviour, never speed (no figure is asserted).

Against the in-process mesh plus a second chat instance on the same PostgreSQL
and Redis: sends on one instance, receivers' streams on the other.
"""

from __future__ import annotations

import os

from services.bench import parse_scenarios
from services.benchkit.chat_clients import GrpcReceiver, GrpcSender, Pair
from services.benchkit.chat_delivery import measure_resume, run_delivery
from services.benchkit.chat_streams import hold_streams

from .chat_support import chat_instance
from .conftest import Infra, Mesh, Person


def token(person: Person) -> str:
    return person.md[0][1].removeprefix("Bearer ")


def test_chat_scenarios_are_known():
    assert parse_scenarios("chat,chat-streams") == ["ceiling", "chat", "chat-streams"]


async def test_delivery_across_instances_counts_every_message_once(
    infra: Infra, mesh: Mesh, make_person
):
    people = [await make_person() for _ in range(6)]
    pairs = [Pair(token(a), token(b), b.id) for a, b in zip(people[::2], people[1::2], strict=True)]
    sender = GrpcSender(mesh["chat"].address)
    async with chat_instance(infra, mesh) as (host, _):
        receiver = GrpcReceiver(f"127.0.0.1:{host.port}", channels=2)
        try:
            run = await run_delivery(sender, receiver, pairs, rate=30, duration=1.0, drain=10)
            assert run.step.sent == 30
            assert run.step.statuses == {"200 delivered": 30}
            assert run.delivered == run.step.ok == 30
            assert run.undelivered == 0 and run.duplicates == 0 and run.send_failures == {}
            assert run.step.latency.get_total_count() == 30
            assert run.send_ack.get_total_count() == 30
            assert sum(ok for ok, _, _ in run.step.timeline) == 30
            assert run.step.latency.get_value_at_percentile(99.0) > 0

            resume = await measure_resume(sender, receiver, pairs[0], messages=7)
            assert resume.received == 7 and resume.extra == 0
            assert resume.seconds > 0 and resume.hello_seconds > 0
        finally:
            await receiver.close()
            await sender.close()


async def test_streams_probe_holds_each_step_and_reports_rss(infra: Infra, mesh: Mesh, make_person):
    people = [await make_person() for _ in range(3)]
    tokens = [token(p) for p in people]
    baseline, rows = await hold_streams(
        mesh["chat"].address,
        tokens,
        os.getpid(),
        [6, 12],
        channels=2,
        batch=4,
        settle=0.1,
        hold=0.2,
    )
    assert baseline > 0
    assert [(r.target, r.held, r.failed, r.first_error) for r in rows] == [
        (6, 6, 0, None),
        (12, 12, 0, None),
    ]
    assert all(r.rss_bytes > 0 and r.held_seconds >= 0.3 for r in rows)
