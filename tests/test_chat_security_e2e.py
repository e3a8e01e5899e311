"""The security review's chat probes (issue 21: T3-M3, T3-M4, T3-L1, T3-M5, T3-L2, T3-L3)
replayed through the real edge (REST over a real `socialmesh up`), with the fixed answers."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from .e2e_support import eventually, person

pytestmark = pytest.mark.e2e


def block(client: httpx.Client, blocker_h, blocked: str) -> None:
    r = client.post(f"/v1/users/{blocked}:block", json={}, headers=blocker_h)
    assert r.status_code == 200, r.text


def follow(client: httpx.Client, fan_h, idol: str) -> None:
    r = client.post(f"/v1/users/{idol}:follow", json={}, headers=fan_h)
    assert r.status_code == 200, r.text


def create(client: httpx.Client, headers, kind: str, members: list[str], **extra) -> httpx.Response:
    body = {"type": f"CONVERSATION_TYPE_{kind}", "memberIds": members, **extra}
    return client.post("/v1/conversations", json=body, headers=headers)


def say(client: httpx.Client, headers, conversation: str, text: str) -> dict:
    r = client.post(
        f"/v1/conversations/{conversation}/messages", json={"text": text}, headers=headers
    )
    assert r.status_code == 200, r.text
    return r.json()


def reason(r: httpx.Response) -> str:
    return next(d["reason"] for d in r.json()["details"] if "reason" in d)


def presence(client: httpx.Client, viewer_h, user: str) -> list[dict]:
    r = client.get("/v1/presence:batchGet", params={"userIds": user}, headers=viewer_h)
    assert r.status_code == 200, r.text
    return r.json().get("presence", [])


class OpenStream:
    """A stream (`GET /v1/events:stream`, or the browsers' SSE with a ticket) held open in
    a thread; `status` once the headers came, `started` once HELLO (or a refusal) did."""

    def __init__(self, edge: str, headers: dict[str, str], path: str = "/v1/events:stream") -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.started = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(edge, headers, path), daemon=True)
        self._thread.start()

    def _run(self, edge: str, headers: dict[str, str], path: str) -> None:
        try:
            with (
                httpx.Client(base_url=edge, timeout=httpx.Timeout(30, read=60)) as client,
                client.stream("GET", path, headers=headers) as r,
            ):
                self.status = r.status_code
                self.headers = dict(r.headers)
                if r.status_code != 200:
                    self.body = r.read()
                    self.started.set()
                    return
                for chunk in r.iter_bytes():
                    self.body += chunk
                    if b"HELLO" in self.body:
                        self.started.set()
                    if self._stop.is_set():
                        break
        except httpx.HTTPError:
            pass
        finally:
            self.started.set()

    def close(self) -> None:
        self._stop.set()


@pytest.fixture
def open_streams() -> Iterator[list[OpenStream]]:
    opened: list[OpenStream] = []
    yield opened
    for stream in opened:
        stream.close()


def test_t3_m3_no_third_party_group_brings_a_blocked_pair_together(client: httpx.Client) -> None:
    b, b_h = person(client)
    x, _ = person(client)
    _, m_h = person(client)
    block(client, b_h, x)
    r = create(client, m_h, "GROUP", [b, x], title="x")
    assert r.status_code == 403 and reason(r) == "BLOCKED", r.text
    g = create(client, m_h, "GROUP", [b], title="x").json()["conversationId"]
    r = client.post(f"/v1/conversations/{g}:addMembers", json={"userIds": [x]}, headers=m_h)
    assert r.status_code == 403 and reason(r) == "BLOCKED", r.text


def test_t3_m4_a_stranger_s_group_is_an_invitation_the_private_account_declines(
    client: httpx.Client,
) -> None:
    _, x_h = person(client)
    v, v_h = person(client, private=True)
    r = create(client, x_h, "GROUP", [v], title="FREE CRYPTO")
    assert r.status_code == 200, r.text
    g = r.json()["conversationId"]
    seen = client.get(f"/v1/conversations/{g}", headers=v_h).json()
    assert seen["state"] == "CONVERSATION_STATE_REQUEST"
    inbox = client.get("/v1/conversations", headers=v_h).json().get("conversations", [])
    assert g not in [c["conversationId"] for c in inbox]
    assert presence(client, x_h, v) == []
    r = client.post(f"/v1/conversations/{g}:decline", json={}, headers=v_h)
    assert r.status_code == 200, r.text
    assert client.get(f"/v1/conversations/{g}", headers=v_h).status_code == 404
    members = client.get(f"/v1/conversations/{g}", headers=x_h).json()["memberIds"]
    assert v not in members


def test_t3_l1_a_block_refuses_reactions_edits_typing_reads_and_presence_in_a_dm(
    client: httpx.Client, open_streams
) -> None:
    p, p_h = person(client)
    q, q_h = person(client)
    follow(client, p_h, q)
    follow(client, q_h, p)
    c = create(client, p_h, "DIRECT", [q]).json()["conversationId"]
    pm = say(client, p_h, c, "p's message")
    qm = say(client, q_h, c, "q's message")
    stream = OpenStream(str(client.base_url), p_h)
    open_streams.append(stream)
    assert stream.started.wait(15) and stream.status == 200
    eventually(lambda: [s["userId"] for s in presence(client, q_h, p)] == [p])
    block(client, p_h, q)
    refused = [
        client.post(
            f"/v1/conversations/{c}/messages/{pm['messageId']}:addReaction",
            json={"emoji": "👍"},
            headers=q_h,
        ),
        client.patch(
            f"/v1/conversations/{c}/messages/{qm['messageId']}",
            params={"updateMask": "text"},
            json={"text": "edited after the block"},
            headers=q_h,
        ),
        client.post(f"/v1/conversations/{c}:typing", json={"typing": True}, headers=q_h),
        client.post(
            f"/v1/conversations/{c}:markRead", json={"sequence": pm["sequence"]}, headers=q_h
        ),
    ]
    assert [(r.status_code, reason(r)) for r in refused] == [(403, "BLOCKED")] * 4
    assert presence(client, q_h, p) == []


def test_t3_m5_a_message_request_reveals_no_presence(client: httpx.Client, open_streams) -> None:
    _, x_h = person(client)
    v, v_h = person(client, private=True)
    stream = OpenStream(str(client.base_url), v_h)  # the victim is online
    open_streams.append(stream)
    assert stream.started.wait(15) and stream.status == 200
    c = create(client, x_h, "DIRECT", [v]).json()["conversationId"]
    assert presence(client, x_h, v) == []
    r = client.post(f"/v1/conversations/{c}:typing", json={"typing": True}, headers=x_h)
    assert r.status_code == 200, r.text
    say(client, x_h, c, "hello?")
    eventually(lambda: b"hello?" in stream.body)
    assert b'"typing"' not in stream.body


def test_t3_l2_a_reaction_is_one_emoji(client: httpx.Client) -> None:
    _, a_h = person(client)
    b, _ = person(client)
    c = create(client, a_h, "DIRECT", [b]).json()["conversationId"]
    m = say(client, a_h, c, "react to me")
    path = f"/v1/conversations/{c}/messages/{m['messageId']}:addReaction"
    r = client.post(path, json={"emoji": "stupidloser"}, headers=a_h)
    assert r.status_code == 400 and reason(r) == "EMOJI_INVALID", r.text
    r = client.post(path, json={"emoji": "👍🏽"}, headers=a_h)
    assert r.status_code == 200, r.text


def test_t3_l3_one_stream_more_than_the_cap_is_refused(client: httpx.Client, open_streams) -> None:
    _, v_h = person(client)
    cap = 10  # CHAT_MAX_STREAMS_PER_USER's default
    for _ in range(cap):
        stream = OpenStream(str(client.base_url), v_h)
        open_streams.append(stream)
        assert stream.started.wait(15) and stream.status == 200
    extra = OpenStream(str(client.base_url), v_h)
    open_streams.append(extra)
    assert extra.started.wait(15)
    assert extra.status == 429, (extra.status, extra.body)
    assert b"TOO_MANY_STREAMS" in extra.body


def test_t3_l3_the_browsers_sse_stream_counts_and_is_refused_with_a_status(
    client: httpx.Client, open_streams
) -> None:
    """EventSource retries a stream that ends, but not an HTTP error: the refusal comes
    before the headers, as 429 with the google.rpc.Status body and retry-after."""
    _, v_h = person(client)

    def sse() -> OpenStream:
        ticket = client.post("/v1/events:ticket", json={}, headers=v_h)
        assert ticket.status_code == 200, ticket.text
        stream = OpenStream(str(client.base_url), {}, ticket.json()["url"])
        open_streams.append(stream)
        assert stream.started.wait(15)
        return stream

    for i in range(10):
        stream = sse() if i % 2 else OpenStream(str(client.base_url), v_h)
        if not i % 2:
            open_streams.append(stream)
            assert stream.started.wait(15)
        assert stream.status == 200, (stream.status, stream.body)
    refused = sse()
    assert refused.status == 429, (refused.status, refused.body)
    assert b"TOO_MANY_STREAMS" in refused.body
    assert refused.headers.get("retry-after")
