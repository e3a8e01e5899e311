"""Chat workloads: delivery latency, open streams per instance, reconnect-and-resume.

The measurements live beside this module: `chat_clients` (senders and
receivers), `chat_delivery` (delivery latency, reconnect-and-resume) and
`chat_streams` (open streams per instance); this one starts the second chat
instance and turns their rows into `socialmesh bench`'s results and notes.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .chat_clients import EdgeSender, GrpcReceiver, Pair, Receiver, SseReceiver
from .chat_delivery import ChatRun, Resume, measure_resume, run_delivery
from .chat_streams import describe_rss, hold_streams, process_nofile, raise_fd_limit

#: The chat service allows 120 sends per user per 60 s (`chat-send` rate limit).
SEND_LIMIT_PER_MINUTE = 120


# ---- a second chat instance for a stack -------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ChatInstance:
    """Another `socialmesh serve chat` process on the stack's PostgreSQL and Redis."""

    process: subprocess.Popen[bytes]
    address: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_second_chat(
    stack: Any, log_dir: Path | None = None, env_overrides: dict[str, str] | None = None
) -> ChatInstance:
    from services.devstack import REPO_ROOT, service_key_file, wait_for_health

    port = free_port()
    env = dict(stack.env)
    env["SOCIALMESH_GRPC_PORT"] = str(port)
    env["SERVICE_KEY_FILE"] = str(service_key_file(stack.service_keys_dir, "chat"))
    env.pop("JWT_PRIVATE_KEY_FILE", None)
    env.update(env_overrides or {})
    log = open(log_dir / "chat-2.log", "ab") if log_dir else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "chat"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    instance = ChatInstance(process, f"127.0.0.1:{port}")

    def check() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"the second chat instance exited ({process.returncode})")

    try:
        wait_for_health(instance.address, "chat", 90, check)
    except BaseException:
        instance.stop()
        raise
    return instance


def _pairs(user_ids: Sequence[int], tokens: Sequence[str], n: int, offset: int = 0) -> list[Pair]:
    """Pairs from consecutive users (sender 2k, receiver 2k+1), from `offset`."""
    out = []
    for k in range(n):
        s, r = (offset + 2 * k) % len(user_ids), (offset + 2 * k + 1) % len(user_ids)
        out.append(Pair(tokens[s], tokens[r], user_ids[r]))
    return out


def run_scenarios(
    names: Sequence[str], args: Any, stack: Any, edge: str, user_ids: list[int], tokens: list[str]
) -> tuple[list[Any], list[str]]:
    """`chat` and `chat-streams` for `socialmesh bench`: (ScenarioResults, notes).

    With a stack bench started, a second chat instance runs next to the stack's:
    receivers stream from it over native gRPC while senders go through the edge
    (Envoy -> the stack's instance), so every delivery crosses instances over
    Redis pub/sub. Against `--edge-url`, receivers use SSE through the same edge."""
    from .loadgen import ProgressBar
    from .report import ScenarioResult

    results: list[Any] = []
    notes: list[str] = []
    overrides = {}
    if stack is not None and args.chat_redis_pool:
        # redis-py reads pool settings from the URL's query string.
        url = stack.env["REDIS_URL"]
        sep = "&" if "?" in url else "?"
        overrides["REDIS_URL"] = f"{url}{sep}max_connections={args.chat_redis_pool}"
        notes.append(
            f"chat instance 2 runs with a Redis pool of {args.chat_redis_pool} connections "
            "(--chat-redis-pool; the service's default is redis-py's 100)"
        )
    second = start_second_chat(stack, getattr(stack, "log_dir", None), overrides) if stack else None
    try:
        if "chat" in names:
            n = min(args.pairs, len(user_ids) // 2)
            per_sender = args.rate * (args.duration + args.warmup) / max(n, 1)
            if per_sender > SEND_LIMIT_PER_MINUTE * 0.8:
                notes.append(
                    f"chat: {per_sender:.0f} sends per sender in this run, near the chat "
                    f"service's {SEND_LIMIT_PER_MINUTE}/min per-user send limit: use more "
                    "--pairs or a lower --rate"
                )

            async def chat_step() -> tuple[ChatRun, list[Resume]]:
                sender = EdgeSender(edge, args.connections, args.timeout)
                receiver: Receiver = (
                    GrpcReceiver(second.address, args.chat_channels)
                    if second
                    else SseReceiver(edge)
                )
                try:
                    pairs = _pairs(user_ids, tokens, n)
                    if args.warmup > 0:
                        await run_delivery(
                            sender, receiver, pairs, args.rate, args.warmup, drain=5.0, seed=7
                        )
                    run = await run_delivery(
                        sender,
                        receiver,
                        pairs,
                        args.rate,
                        args.duration,
                        arrival=args.arrival,
                        progress=ProgressBar(f"chat @ {args.rate:,.0f} msg/s", args.duration),
                    )
                    resumes = []
                    for rep in range(args.resume_repeats):
                        pair = _pairs(user_ids, tokens, 1, offset=2 * n + 2 * rep)[0]
                        resumes.append(
                            await measure_resume(sender, receiver, pair, args.resume_messages)
                        )
                    retried.update(receiver.retries)
                    return run, resumes
                finally:
                    await sender.close()
                    await receiver.close()

            retried: Counter[str] = Counter()
            run, resumes = asyncio.run(chat_step())
            if retried:
                notes.append(
                    f"chat: stream opens answered UNAVAILABLE and were retried (with backoff): "
                    f"{dict(retried)}"
                )
            where = (
                f"sends via the edge (REST -> Envoy -> chat instance 1), receivers' streams "
                f"native gRPC StreamEvents on chat instance 2 ({args.chat_channels} channels)"
                if second
                else "sends via the edge (REST), receivers' streams SSE through the same edge"
            )
            result = ScenarioResult(
                "chat",
                f"{n} sender->receiver DM pairs, {args.rate:g} msg/s total; latency = intended "
                f"send time -> event read by the receiver; {where}",
                run.step,
                [run.step],
            )
            result.extra["chat"] = {
                "pairs": n,
                "delivered": run.delivered,
                "undelivered": run.undelivered,
                "duplicates": run.duplicates,
                "send_failures": run.send_failures,
                "resume": [r.as_dict() for r in resumes],
                "stream_open_retries": dict(retried),
            }
            results.append(result)
            h = run.step.latency
            notes.append(
                f"chat: {run.delivered:,} delivered at {args.rate:g} msg/s over {n} pairs: "
                f"delivery p50 {h.get_value_at_percentile(50) / 1000:.1f} ms, p90 "
                f"{h.get_value_at_percentile(90) / 1000:.1f} ms, p99 "
                f"{h.get_value_at_percentile(99) / 1000:.1f} ms, max "
                f"{h.get_max_value() / 1000:.1f} ms; undelivered {run.undelivered}, "
                f"duplicates {run.duplicates}, send failures {run.send_failures or 'none'}"
            )
            for r in resumes:
                notes.append(
                    f"chat resume: reopened with since=<last cursor> after {r.messages} "
                    f"messages: all received in {r.seconds * 1000:.1f} ms (HELLO after "
                    f"{r.hello_seconds * 1000:.1f} ms), received {r.received}, extra {r.extra}"
                )
        if "chat-streams" in names:
            if second is None:
                notes.append("chat-streams: needs a stack bench starts (native gRPC + the pid)")
            else:
                steps = [int(s) for s in str(args.chat_streams).split(",") if s]
                before, after, hard = raise_fd_limit()
                nofile = process_nofile(second.pid)

                def say(line: str) -> None:
                    sys.stderr.write(f"\r{line:<90}")
                    sys.stderr.flush()

                baseline, rows = asyncio.run(
                    hold_streams(
                        second.address,
                        tokens,
                        second.pid,
                        steps,
                        channels=args.chat_channels,
                        batch=args.chat_open_batch,
                        hold=args.chat_hold,
                        progress=say,
                    )
                )
                sys.stderr.write("\n")
                held = max((r.held for r in rows if not r.failed), default=0)
                result = ScenarioResult(
                    "chat-streams",
                    f"idle native gRPC StreamEvents streams on one chat instance over "
                    f"{args.chat_channels} client channels, {len(set(tokens))} distinct users; "
                    f"steps {steps}",
                    None,
                    [],
                )
                result.extra["streams"] = {
                    "baseline_rss_mib": round(baseline / 2**20, 1),
                    "steps": [r.as_dict() for r in rows],
                    "largest_held_without_error": held,
                    "client_nofile": {"soft_before": before, "soft_after": after, "hard": hard},
                    "server_nofile": nofile,
                    "channels": args.chat_channels,
                }
                results.append(result)
                notes.append(
                    f"chat-streams: client RLIMIT_NOFILE soft {before} -> {after} (hard {hard}), "
                    f"server's {nofile}; " + describe_rss(baseline, rows)
                )
    finally:
        if second is not None:
            second.stop()
    return results, notes
