"""Browser realtime: `EventSource` on `/v1/events/sse` through the edge, with a single-use
ticket instead of a header, `id:`/`event:` lines, and Last-Event-ID resume (client review
item 6: EventSource could not authenticate, frames had no id or event name)."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from .e2e_support import UpProcess, person

pytestmark = pytest.mark.e2e


class EventSourceReader:
    """Reads an SSE stream as EventSource does: fields per frame, a blank line ends it."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.frames: queue.Queue[dict[str, str] | None] = queue.Queue()
        self.status = 0
        self.content_type = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(30, read=60)) as client,
                client.stream("GET", url, headers=headers) as r,
            ):
                self.status = r.status_code
                self.content_type = r.headers.get("content-type", "")
                frame: dict[str, str] = {}
                for line in r.iter_lines():
                    if self._stop.is_set():
                        break
                    if not line:
                        if frame:
                            self.frames.put(frame)
                        frame = {}
                        continue
                    name, _, value = line.partition(":")
                    frame[name] = value.removeprefix(" ")
        except httpx.HTTPError:
            pass
        finally:
            self.frames.put(None)

    def next(self, event: str | None = None, timeout: float = 15) -> dict[str, str]:
        while True:
            frame = self.frames.get(timeout=timeout)
            assert frame is not None, f"stream ended (HTTP {self.status})"
            if event is None or frame.get("event") == event:
                return frame

    def ended(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.frames.get(timeout=max(0.01, deadline - time.monotonic())) is None:
                    return True
            except queue.Empty:
                return False
        return False

    def close(self) -> None:
        self._stop.set()


@pytest.fixture
def sources() -> Iterator[list[EventSourceReader]]:
    opened: list[EventSourceReader] = []
    yield opened
    for reader in opened:
        reader.close()


def ticket_url(client: httpx.Client, headers: dict[str, str]) -> str:
    r = client.post("/v1/events:ticket", json={}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["url"] == f"/v1/events/sse?ticket={body['ticket']}"
    assert body["expireTime"]
    return f"{client.base_url}{body['url']}"


def conversation_with_message(client: httpx.Client, sender_h, recipient: str, text: str) -> str:
    r = client.post(
        "/v1/conversations",
        json={"type": "CONVERSATION_TYPE_DIRECT", "memberIds": [recipient]},
        headers=sender_h,
    )
    assert r.status_code == 200, r.text
    conversation = r.json()["conversationId"]
    say(client, sender_h, conversation, text)
    return conversation


def say(client: httpx.Client, headers, conversation: str, text: str) -> None:
    r = client.post(
        f"/v1/conversations/{conversation}/messages", json={"text": text}, headers=headers
    )
    assert r.status_code == 200, r.text


def test_ticket_opens_a_stream_with_ids_event_names_and_resume(
    client: httpx.Client, sources: list[EventSourceReader]
) -> None:
    _, alice_h = person(client)
    bob, bob_h = person(client)
    url = ticket_url(client, bob_h)
    stream = EventSourceReader(url)
    sources.append(stream)
    hello = stream.next()
    assert stream.status == 200 and stream.content_type.startswith("text/event-stream")
    assert hello["retry"] == "2000"
    hello = stream.next("control")
    body = json.loads(hello["data"])
    assert body["control"]["kind"] == "STREAM_CONTROL_KIND_HELLO"
    assert hello["id"] == body["cursor"]
    conversation = conversation_with_message(client, alice_h, bob, "over EventSource")
    message = stream.next("message")
    assert json.loads(message["data"])["message"]["text"] == "over EventSource"
    last_id = message["id"]
    stream.close()
    # The ticket is spent: a second open with it is refused.
    again = httpx.get(url, timeout=10)
    assert again.status_code == 401, again.text
    assert again.json()["details"][-1]["reason"] == "TICKET_INVALID"
    # A reconnecting EventSource sends Last-Event-ID with a fresh ticket: what was
    # missed arrives, nothing twice.
    say(client, alice_h, conversation, "while away")
    resumed = EventSourceReader(ticket_url(client, bob_h), {"Last-Event-ID": last_id})
    sources.append(resumed)
    missed = resumed.next("message")
    assert json.loads(missed["data"])["message"]["text"] == "while away"


def test_stream_refusals(client: httpx.Client, stack: UpProcess) -> None:
    edge = f"http://127.0.0.1:{stack.edge_port}"
    r = httpx.get(f"{edge}/v1/events/sse", timeout=10)
    assert r.status_code == 401 and r.json()["details"][-1]["reason"] == "TOKEN_MISSING"
    r = httpx.get(f"{edge}/v1/events/sse", params={"ticket": "made-up"}, timeout=10)
    assert r.status_code == 401 and r.json()["details"][-1]["reason"] == "TICKET_INVALID"
    r = httpx.get(
        f"{edge}/v1/events/sse", headers={"Authorization": "Bearer not.a.jwt"}, timeout=10
    )
    assert r.status_code == 401, r.text
    # Minting needs a signed-in user.
    assert client.post("/v1/events:ticket", json={}).status_code == 401


def test_sign_out_ends_the_stream_and_its_unspent_tickets(
    client: httpx.Client, sources: list[EventSourceReader]
) -> None:
    _, alice_h = person(client)
    stream = EventSourceReader(ticket_url(client, alice_h))
    sources.append(stream)
    stream.next("control")
    spare = ticket_url(client, alice_h)
    assert client.post("/v1/auth:logout", json={}, headers=alice_h).status_code == 200
    ending = stream.next("control", timeout=30)
    assert json.loads(ending["data"])["control"]["kind"] == "STREAM_CONTROL_KIND_SESSION_ENDED"
    assert stream.ended(5)
    r = httpx.get(spare, timeout=10)
    assert r.status_code == 401, r.text
    assert r.json()["details"][-1]["reason"] == "SESSION_ENDED"


def test_the_uploader_hears_when_an_upload_is_ready(
    client: httpx.Client, sources: list[EventSourceReader]
) -> None:
    from .media_support import image_bytes

    _, headers = person(client)
    stream = EventSourceReader(ticket_url(client, headers))
    sources.append(stream)
    stream.next("control")
    r = client.post(
        "/v1/media:upload",
        content=image_bytes("PNG"),
        headers={**headers, "content-type": "image/png"},
    )
    assert r.status_code == 200, r.text
    media_id = r.json()["mediaId"]
    status = json.loads(stream.next("mediaStatus", timeout=60)["data"])["mediaStatus"]
    assert status["mediaId"] == media_id and status["state"] == "MEDIA_STATE_READY"
    # Ready means ready: the post that needed polling before goes through at once.
    r = client.post("/v1/posts", json={"text": "fresh", "mediaIds": [media_id]}, headers=headers)
    assert r.status_code == 200, r.text
