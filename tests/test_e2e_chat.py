"""Chat end to end through Envoy: REST up, Server-Sent Events down (a real `socialmesh up`)."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator

import httpx
import pytest

from .e2e_support import person

pytestmark = pytest.mark.e2e


class SseReader:
    """Reads `GET /v1/events:stream` in a thread, one parsed event per `data:` frame."""

    def __init__(self, edge: str, headers: dict[str, str], since: str = "") -> None:
        self.events: queue.Queue[dict | None] = queue.Queue()
        self.status = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(edge, headers, since), daemon=True)
        self._thread.start()

    def _run(self, edge: str, headers: dict[str, str], since: str) -> None:
        params = {"since": since} if since else {}
        try:
            with (
                httpx.Client(base_url=edge, timeout=httpx.Timeout(30, read=60)) as client,
                client.stream("GET", "/v1/events:stream", params=params, headers=headers) as r,
            ):
                self.status = r.status_code
                for line in r.iter_lines():
                    if self._stop.is_set():
                        break
                    if line.startswith("data:"):
                        self.events.put(json.loads(line[len("data:") :]))
        except httpx.HTTPError:
            pass
        finally:
            self.events.put(None)

    def next(self, kind: str | None = None, timeout: float = 15) -> dict:
        while True:
            event = self.events.get(timeout=timeout)
            assert event is not None, f"stream ended (HTTP {self.status})"
            if kind is None or kind in event:
                return event

    def close(self) -> None:
        self._stop.set()


@pytest.fixture
def readers() -> Iterator[list[SseReader]]:
    opened: list[SseReader] = []
    yield opened
    for reader in opened:
        reader.close()


def open_stream(client: httpx.Client, headers, readers, since: str = "") -> SseReader:
    reader = SseReader(str(client.base_url), headers, since)
    readers.append(reader)
    hello = reader.next()
    assert hello["control"]["kind"] == "STREAM_CONTROL_KIND_HELLO", hello
    assert hello["cursor"]
    return reader


def dm(client: httpx.Client, sender_h, recipient: str) -> str:
    r = client.post(
        "/v1/conversations",
        json={"type": "CONVERSATION_TYPE_DIRECT", "memberIds": [recipient]},
        headers=sender_h,
    )
    assert r.status_code == 200, r.text
    return r.json()["conversationId"]


def say(client: httpx.Client, headers, conversation: str, text: str, request_id: str = "") -> dict:
    params = {"requestId": request_id} if request_id else {}
    r = client.post(
        f"/v1/conversations/{conversation}/messages",
        params=params,
        json={"text": text},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_sse_delivers_live_and_resumes_from_the_last_cursor(client: httpx.Client, readers) -> None:
    _, alice_h = person(client)
    bob, bob_h = person(client)
    conversation = dm(client, alice_h, bob)
    stream = open_stream(client, bob_h, readers)
    first = say(client, alice_h, conversation, "hello over SSE", request_id="sse-1")
    event = stream.next("message")
    assert event["message"]["messageId"] == first["messageId"]
    assert event["message"]["sequence"] == "1"
    cursor = event["cursor"]
    stream.close()
    say(client, alice_h, conversation, "while away 1")
    say(client, alice_h, conversation, "while away 2")
    resumed = open_stream(client, bob_h, readers, since=cursor)
    texts = [resumed.next("message")["message"]["text"] for _ in range(2)]
    assert texts == ["while away 1", "while away 2"]
    again = say(client, alice_h, conversation, "hello over SSE", request_id="sse-1")
    assert again["messageId"] == first["messageId"]  # requestId as a query parameter


def test_rest_actions_reach_the_other_member_s_stream(client: httpx.Client, readers) -> None:
    alice, alice_h = person(client)
    bob, bob_h = person(client)
    # Bob follows Alice, so her DM is accepted (a pending request sends no typing).
    r = client.post(f"/v1/users/{alice}:follow", json={}, headers=bob_h)
    assert r.status_code == 200, r.text
    conversation = dm(client, alice_h, bob)
    message = say(client, alice_h, conversation, "react to me")
    stream = open_stream(client, alice_h, readers)
    r = client.post(
        f"/v1/conversations/{conversation}:typing", json={"typing": True}, headers=bob_h
    )
    assert r.status_code == 200, r.text
    assert stream.next("typing")["typing"]["userId"] == bob
    r = client.post(
        f"/v1/conversations/{conversation}/messages/{message['messageId']}:addReaction",
        json={"emoji": "🎉"},
        headers=bob_h,
    )
    assert r.status_code == 200 and r.json()["reactions"] == [
        {"emoji": "🎉", "count": "1", "reactedByMe": True}  # the answer is the reactor's
    ]
    assert stream.next("reaction")["reaction"]["emoji"] == "🎉"
    r = client.post(
        f"/v1/conversations/{conversation}:markRead", json={"sequence": "1"}, headers=bob_h
    )
    assert r.status_code == 200, r.text
    assert stream.next("readReceipt")["readReceipt"]["userId"] == bob
    r = client.get("/v1/unreadCounts", headers=bob_h)
    assert r.status_code == 200 and r.json().get("messages", "0") == "0"
    assert alice  # the sender's own id is in the conversation too
    # In Bob's inbox (he follows Alice); a pending request would have shown Alice no
    # typing or read receipt (issue 21, T3-M5: tests/test_chat_security*.py).
    listed = client.get("/v1/conversations", headers=bob_h)
    assert conversation in [c["conversationId"] for c in listed.json()["conversations"]]


def test_chat_refusals_over_rest(client: httpx.Client) -> None:
    alice, alice_h = person(client)
    bob, bob_h = person(client)
    _, eve_h = person(client)
    conversation = dm(client, alice_h, bob)
    assert client.get("/v1/events:stream").status_code == 401
    assert client.get("/v1/conversations").status_code == 401
    assert (
        client.get(f"/v1/conversations/{conversation}/messages", headers=eve_h).status_code == 404
    )
    r = client.post(f"/v1/conversations/{conversation}/messages", json={"text": "x"}, headers=eve_h)
    assert r.status_code == 404
    r = client.post(f"/v1/conversations/{conversation}/messages", json={"text": ""}, headers=bob_h)
    assert r.status_code == 400 and "message.text" in r.text
    r = client.get("/v1/events:stream", params={"since": "forged"}, headers=bob_h)
    assert r.status_code == 400
    assert alice


def test_long_poll_sync_uses_the_same_cursor(client: httpx.Client) -> None:
    _, alice_h = person(client)
    bob, bob_h = person(client)
    conversation = dm(client, alice_h, bob)
    start = client.get("/v1/events:sync", headers=bob_h)
    assert start.status_code == 200, start.text
    cursor = start.json()["nextCursor"]
    say(client, alice_h, conversation, "poll me")
    r = client.get("/v1/events:sync", params={"since": cursor, "timeout": "5s"}, headers=bob_h)
    assert r.status_code == 200, r.text
    texts = [e["message"]["text"] for e in r.json()["events"] if "message" in e]
    assert texts == ["poll me"]
