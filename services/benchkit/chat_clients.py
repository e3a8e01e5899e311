"""How the chat bench talks to chat: senders (REST through the edge, native gRPC
`SendMessage`) and receivers (native gRPC `StreamEvents`, Server-Sent Events
through the edge), with the pair of users each message travels between."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
from socialmesh.chat.v1 import chat_pb2, chat_pb2_grpc

DIRECT = chat_pb2.CONVERSATION_TYPE_DIRECT
HELLO = chat_pb2.STREAM_CONTROL_KIND_HELLO
#: The chat service allows 120 sends per user per 60 s (`chat-send` rate limit).
SEND_LIMIT_PER_MINUTE = 120
#: Client channel options for streams. A local subchannel pool gives each channel
#: its own TCP connection (HTTP/2 session): by default grpc-core shares one
#: subchannel between all channels with the same target and arguments, so "16
#: channels" would still be one connection.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]

#: What `call.read()` returns at the end of a stream (missing from grpc's type stubs).
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]

#: Times an open answered UNAVAILABLE is retried (with backoff) before giving up.
RETRIES = 5

Clock = Callable[[], float]
clock: Clock = time.perf_counter


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@dataclass
class Pair:
    """One sender and one receiver sharing a direct conversation."""

    sender_token: str
    receiver_token: str
    receiver_id: int
    conversation_id: int = 0


# ---- transports ------------------------------------------------------------------


class Sender:
    """Creates conversations and sends messages; returns a status label."""

    async def direct(self, pair: Pair) -> int:
        raise NotImplementedError

    async def send(self, pair: Pair, text: str, request_id: str) -> str:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class EdgeSender(Sender):
    """REST through the edge (Envoy): the path a browser's send takes."""

    def __init__(self, edge: str, connections: int = 64, timeout: float = 10.0) -> None:
        self.edge = edge
        self._session: aiohttp.ClientSession | None = None
        self._connections, self._timeout = connections, timeout

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=self.edge,
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._session

    async def direct(self, pair: Pair) -> int:
        async with self.session.post(
            "/v1/conversations",
            json={"type": "CONVERSATION_TYPE_DIRECT", "memberIds": [str(pair.receiver_id)]},
            headers={"Authorization": f"Bearer {pair.sender_token}"},
        ) as r:
            body = await r.text()
            if r.status != 200:
                raise RuntimeError(f"POST /v1/conversations: HTTP {r.status} {body[:200]}")
            return int(json.loads(body)["conversationId"])

    async def send(self, pair: Pair, text: str, request_id: str) -> str:
        async with self.session.post(
            f"/v1/conversations/{pair.conversation_id}/messages",
            params={"requestId": request_id},
            json={"text": text},
            headers={"Authorization": f"Bearer {pair.sender_token}"},
        ) as r:
            await r.read()
            return str(r.status)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class GrpcSender(Sender):
    """Native gRPC `SendMessage` on one chat instance."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = chat_pb2_grpc.ChatServiceStub(self.channel)
        self.timeout = timeout

    async def direct(self, pair: Pair) -> int:
        convo = await self.stub.CreateConversation(
            chat_pb2.CreateConversationRequest(
                conversation=chat_pb2.Conversation(type=DIRECT, member_ids=[pair.receiver_id])
            ),
            metadata=bearer(pair.sender_token),
            timeout=self.timeout,
        )
        return int(convo.conversation_id)

    async def send(self, pair: Pair, text: str, request_id: str) -> str:
        try:
            await self.stub.SendMessage(
                chat_pb2.SendMessageRequest(
                    conversation_id=pair.conversation_id,
                    message=chat_pb2.Message(text=text),
                    request_id=request_id,
                ),
                metadata=bearer(pair.sender_token),
                timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "200"

    async def close(self) -> None:
        await self.channel.close(None)


#: Called for each message a stream reads: (text, cursor).
OnMessage = Callable[[str, str], None]


class Receiver:
    """Opens one user's event stream; `open` returns once the HELLO arrived."""

    retries: Counter[str]

    async def open(self, token: str, since: str, on_message: OnMessage) -> StreamHandle:
        raise NotImplementedError

    async def close(self) -> None:
        return None


@dataclass
class StreamHandle:
    task: asyncio.Task[str]
    hello_cursor: str
    cursor: list[str] = field(default_factory=list)

    @property
    def last_cursor(self) -> str:
        return self.cursor[-1] if self.cursor else self.hello_cursor

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


class GrpcReceiver(Receiver):
    """Native gRPC `StreamEvents` on one chat instance, spread over `channels`."""

    def __init__(self, address: str, channels: int = 4) -> None:
        self.channels = [
            grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            for _ in range(max(channels, 1))
        ]
        self._next = 0
        #: UNAVAILABLE ("retry shortly") answers to an open, retried as a client would.
        self.retries: Counter[str] = Counter()

    async def open(self, token: str, since: str, on_message: OnMessage) -> StreamHandle:
        channel = self.channels[self._next % len(self.channels)]
        self._next += 1
        for attempt in range(RETRIES + 1):
            call = chat_pb2_grpc.ChatServiceStub(channel).StreamEvents(
                chat_pb2.StreamEventsRequest(since=since), metadata=bearer(token)
            )
            try:
                hello: Any = await call.read()
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == RETRIES:
                    raise
                self.retries[describe_error(exc).split(" (trace id")[0]] += 1
                await asyncio.sleep(0.1 * 2**attempt * random.uniform(0.5, 1.5))
        if hello is EOF or not hello.HasField("control"):
            raise RuntimeError(f"stream opened without HELLO: {hello!r}")
        cursors: list[str] = []

        async def pump() -> str:
            try:
                while True:
                    event: Any = await call.read()
                    if event is EOF:
                        return "eof"
                    if event.cursor:
                        cursors[:] = [event.cursor]
                    if event.HasField("message"):
                        on_message(event.message.text, event.cursor)
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            finally:
                call.cancel()

        return StreamHandle(asyncio.create_task(pump()), hello.cursor, cursors)

    async def close(self) -> None:
        await asyncio.gather(*(c.close(None) for c in self.channels), return_exceptions=True)


class SseReceiver(Receiver):
    """`GET /v1/events:stream` through the edge, one `data: <json>` frame per event."""

    def __init__(self, edge: str) -> None:
        self.retries = Counter()
        self.session = aiohttp.ClientSession(
            base_url=edge,
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )

    async def open(self, token: str, since: str, on_message: OnMessage) -> StreamHandle:
        params = {"since": since} if since else {}
        response = await self.session.get(
            "/v1/events:stream", params=params, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status != 200:
            body = await response.text()
            response.release()
            raise RuntimeError(f"GET /v1/events:stream: HTTP {response.status} {body[:200]}")

        async def events() -> Any:
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    yield json.loads(line[len("data:") :])

        frames = events()
        hello = await anext(frames)
        if "control" not in hello:
            raise RuntimeError(f"stream opened without HELLO: {hello!r}")
        cursors: list[str] = []

        async def pump() -> str:
            try:
                async for event in frames:
                    if event.get("cursor"):
                        cursors[:] = [event["cursor"]]
                    if "message" in event:
                        on_message(event["message"].get("text", ""), event.get("cursor", ""))
                return "eof"
            except aiohttp.ClientError as exc:
                return type(exc).__name__
            finally:
                response.close()

        return StreamHandle(asyncio.create_task(pump()), hello.get("cursor", ""), cursors)

    async def close(self) -> None:
        await self.session.close()


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
