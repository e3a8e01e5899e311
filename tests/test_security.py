"""Regression tests for the November security review (../shared/reviews/2026-11-security.md).

Each test names the finding it keeps fixed. The first half talks gRPC to the in-process
services; the second half goes through a real `socialmesh up` edge, for the findings that
are about the edge or only show there. Clients that need their own per-client rate-limit
budget talk to the edge from their own loopback address (127.0.0.x).
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import jwt
import pytest
import redis
from socialmesh.graph.v1 import graph_pb2
from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services import registry
from services.kit.auth import ACCESS_TOKEN_TYPE, key_id, load_private_key

from .conftest import Infra, Mesh, unique
from .e2e_support import UpProcess, own_edge
from .helpers import violations

PASSWORD = "correct horse battery"
FOLLOWERS = post_pb2.VISIBILITY_FOLLOWERS


def auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value


async def signed_up(users: user_pb2_grpc.UserServiceStub) -> tuple[user_pb2.User, str, str]:
    """A new account, its access token and refresh token (a real login, real session)."""
    handle = unique("s")
    user = await users.CreateUser(
        user_pb2.CreateUserRequest(handle=handle, email=f"{handle}@e.com", password=PASSWORD)
    )
    reply = await users.Login(user_pb2.LoginRequest(handle=handle, password=PASSWORD))
    return user, reply.access_token, reply.refresh_token


# ------------------------------------------------------------------ H1: bounded input


async def test_h1_login_handle_is_bounded_before_it_becomes_a_key(users, infra: Infra):
    huge = uuid.uuid4().hex + "h" * (3 * 1024 * 1024)
    err = await refused(users.Login(user_pb2.LoginRequest(handle=huge, password="x" * 10)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "handle" in violations(err)
    r = redis.Redis.from_url(infra.redis_url)
    try:
        assert max((len(k) for k in r.scan_iter("ratelimit:*", count=1000)), default=0) < 256
    finally:
        r.close()


async def test_h1_every_string_and_list_is_bounded(users, posts, make_person):
    author = await make_person()
    err = await refused(users.LookupUsers(user_pb2.LookupUsersRequest(handles=["a" * 20_000])))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "handles" in violations(err)
    err = await refused(
        posts.ListUserPosts(
            post_pb2.ListUserPostsRequest(user_id=author.id, page_token="t" * 20_000)
        )
    )
    assert "pageToken" in violations(err)
    err = await refused(
        posts.BatchGetPosts(post_pb2.BatchGetPostsRequest(post_ids=list(range(1, 10_002))))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "postIds" in violations(err)


# ------------------------------------------------------ L1: NUL and invalid UTF-8 -> 400


async def test_l1_nul_bytes_are_invalid_argument_naming_the_field(users, posts, make_person):
    err = await refused(users.Login(user_pb2.LoginRequest(handle="a\x00", password=PASSWORD)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "handle" in violations(err)
    err = await refused(
        users.CreateUser(
            user_pb2.CreateUserRequest(
                handle=unique("n"), email="a\x00b@example.com", password=PASSWORD
            )
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "email" in violations(err)
    author = await make_person()
    err = await refused(
        posts.CreatePost(
            post_pb2.CreatePostRequest(post=post_pb2.Post(text="hi\x00")), metadata=author.md
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "post.text" in violations(err)


async def test_l1_undecodable_requests_are_invalid_argument_without_internals(mesh: Mesh):
    lookup = mesh["user"].channel.unary_unary(
        "/socialmesh.user.v1.UserService/LookupUsers",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    err = await refused(lookup(b"\n\x02\xff\xfe"))  # handles[0] = invalid UTF-8
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "handles" in violations(err)
    err = await refused(lookup(b"\n\xff\xff\xff"))  # length prefix beyond the message
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    for text in (err.details() or "",):
        assert "class" not in text and "DecodeError" not in text


# ------------------------------------------------- M2/M3: per-client and per-account limits


async def test_m3_failed_logins_are_limited_per_client_across_accounts(users):
    client = [("x-forwarded-for", f"198.51.100.{uuid.uuid4().int % 200 + 1}, 192.0.2.77")]
    for i in range(20):  # credential stuffing: a new handle every time
        err = await refused(
            users.Login(
                user_pb2.LoginRequest(handle=f"nobody_{i}_{uuid.uuid4().hex[:6]}", password="x"),
                metadata=client,
            )
        )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    err = await refused(
        users.Login(user_pb2.LoginRequest(handle="nobody_more", password="x"), metadata=client)
    )
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The key is the last X-Forwarded-For entry (the one the edge appends): another
    # client (whatever it puts in front) is not affected.
    other = [("x-forwarded-for", "192.0.2.77, 198.51.100.250")]
    err = await refused(
        users.Login(user_pb2.LoginRequest(handle="nobody_more", password="x"), metadata=other)
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_m3_registrations_are_limited_per_client(users):
    client = [("x-forwarded-for", f"203.0.113.{uuid.uuid4().int % 200 + 1}")]
    codes = []
    for _ in range(21):
        handle = unique("r")
        try:
            await users.CreateUser(
                user_pb2.CreateUserRequest(
                    handle=handle, email=f"{handle}@e.com", password=PASSWORD
                ),
                metadata=client,
            )
            codes.append(grpc.StatusCode.OK)
        except grpc.aio.AioRpcError as exc:
            codes.append(exc.code())
    assert codes == [grpc.StatusCode.OK] * 20 + [grpc.StatusCode.RESOURCE_EXHAUSTED]


# ------------------------------------------------------------- L4 (review L5): blocks


async def test_blocks_hide_the_blocker_in_relationship_mentions_and_comments(
    users, posts, graph, make_person
):
    blocker, blocked, other = await make_person(), await make_person(), await make_person()
    post = await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(text="open thread")), metadata=other.md
    )
    await posts.CreateComment(
        post_pb2.CreateCommentRequest(post_id=post.post_id, comment=post_pb2.Comment(text="hi")),
        metadata=blocker.md,
    )
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=blocked.id), metadata=blocker.md)

    err = await refused(
        graph.GetRelationship(
            graph_pb2.GetRelationshipRequest(user_id=blocker.id), metadata=blocked.md
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    mention = await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(text=f"hey @{blocker.handle}")),
        metadata=blocked.md,
    )
    assert list(mention.mention_ids) == []
    seen = await posts.ListComments(
        post_pb2.ListCommentsRequest(post_id=post.post_id), metadata=blocked.md
    )
    assert [c.author_id for c in seen.comments] == []
    seen = await posts.ListComments(
        post_pb2.ListCommentsRequest(post_id=post.post_id), metadata=other.md
    )
    assert [c.author_id for c in seen.comments] == [blocker.id]


# ------------------------------------------------- L5 (review L6): no comment-id oracle


async def test_deleting_a_comment_on_an_unreadable_post_answers_the_same_either_way(
    posts, graph, make_person
):
    author, fan, stranger = await make_person(), await make_person(), await make_person()
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=author.id), metadata=fan.md)
    post = await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(text="fo", visibility=FOLLOWERS)),
        metadata=author.md,
    )
    comment = await posts.CreateComment(
        post_pb2.CreateCommentRequest(post_id=post.post_id, comment=post_pb2.Comment(text="c")),
        metadata=fan.md,
    )
    answers = []
    for cid in (comment.comment_id, comment.comment_id + 1):
        err = await refused(
            posts.DeleteComment(
                post_pb2.DeleteCommentRequest(post_id=post.post_id, comment_id=cid),
                metadata=stranger.md,
            )
        )
        answers.append((err.code(), err.details()))
    assert answers[0] == answers[1]
    assert answers[0][0] == grpc.StatusCode.PERMISSION_DENIED  # as for reading the post
    # The comment's author may still delete it.
    await posts.DeleteComment(
        post_pb2.DeleteCommentRequest(post_id=post.post_id, comment_id=comment.comment_id),
        metadata=fan.md,
    )


# ------------------------------------------------------------------ token hygiene


async def test_signing_keys_rotate_by_kid_without_a_flag_day(
    infra: Infra, mesh: Mesh, tmp_path: Path
):
    """Services accept every listed key by `kid`; a key no longer listed is refused."""
    from services.kit.auth import TokenSigner, generate_signing_key, jwks_json, load_public_keys
    from services.kit.server import ServiceHost

    new_private, new_public = tmp_path / "new.pem", tmp_path / "new.pub.pem"
    generate_signing_key(new_private, new_public)
    both = f"{infra.public_key_file},{new_public}"
    host = ServiceHost(
        registry.get("user").build_spec(),
        infra.settings(
            "user", {**mesh.env, "JWT_PUBLIC_KEY_FILE": both, "SOCIALMESH_GRPC_PORT": "0"}
        ),
    )
    await host.start()
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{host.port}")
        stub = user_pb2_grpc.UserServiceStub(channel)

        def signer(path: Path) -> TokenSigner:
            return TokenSigner(
                load_private_key(path), issuer="socialmesh", audience="socialmesh-api", ttl=300
            )

        for key in (infra.private_key_file, new_private):  # old tokens still work, new ones too
            token = signer(key).sign(4242, 7)
            caller = await stub.GetCaller(user_pb2.GetCallerRequest(), metadata=auth(token))
            assert caller.user_id == 4242
        retired_private, _ = tmp_path / "old.pem", tmp_path / "old.pub.pem"
        generate_signing_key(retired_private, tmp_path / "old.pub.pem")
        err = await refused(
            stub.GetCaller(
                user_pb2.GetCallerRequest(), metadata=auth(signer(retired_private).sign(4242, 7))
            )
        )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        await channel.close()
    finally:
        await host.stop()
    # The edge's JWKS carries every listed key, each under its own kid.
    keys = json.loads(jwks_json(load_public_keys(both)))["keys"]
    assert len({k["kid"] for k in keys}) == 2


async def test_access_tokens_are_typed_and_untyped_ones_are_refused(users, infra: Infra):
    user, token, _ = await signed_up(users)
    assert jwt.get_unverified_header(token)["typ"] == ACCESS_TOKEN_TYPE
    key = load_private_key(infra.private_key_file)
    claims = jwt.decode(token, options={"verify_signature": False})
    for typ in ("JWT", "refresh+jwt", None):  # None: no typ header at all
        other = jwt.encode(
            claims, key, algorithm="ES256", headers={"kid": key_id(key.public_key()), "typ": typ}
        )
        assert jwt.get_unverified_header(other).get("typ") == typ
        err = await refused(
            users.GetUser(user_pb2.GetUserRequest(user_id=user.user_id), metadata=auth(other))
        )
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, typ


async def test_logout_revokes_the_session_and_only_that_session(users):
    user, token, refresh = await signed_up(users)
    second = await users.Login(user_pb2.LoginRequest(handle=user.handle, password=PASSWORD))
    await users.Logout(user_pb2.LogoutRequest(), metadata=auth(token))
    err = await refused(
        users.GetUser(user_pb2.GetUserRequest(user_id=user.user_id), metadata=auth(token))
    )
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    err = await refused(users.RefreshToken(user_pb2.RefreshTokenRequest(refresh_token=refresh)))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    # The other session stays signed in.
    me = await users.GetUser(
        user_pb2.GetUserRequest(user_id=user.user_id), metadata=auth(second.access_token)
    )
    assert me.email
    err = await refused(users.Logout(user_pb2.LogoutRequest()))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


# ====================================================== through the real edge (e2e)


def edge_client(stack: UpProcess, source: str) -> httpx.Client:
    """A client of the edge connecting from `source` (its own per-client budget)."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=stack.edge, timeout=30, transport=transport)


_next_source = iter(range(30, 250))


@pytest.fixture
def edge(stack: UpProcess) -> Iterator[httpx.Client]:
    with edge_client(stack, f"127.0.0.{next(_next_source)}") as c:
        yield c


def register(client: httpx.Client) -> tuple[dict, str]:
    handle = unique("e")
    r = client.post(
        "/v1/users", json={"handle": handle, "email": f"{handle}@e.com", "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    login = client.post("/v1/auth:login", json={"handle": handle, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return r.json(), login.json()["accessToken"]


def bearer(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


def field_violations(body: dict) -> dict[str, str]:
    return {
        v["field"]: v["description"]
        for d in body.get("details", [])
        for v in d.get("fieldViolations", [])
    }


def h2_post_status(stack: UpProcess, path: str, body: bytes, source: str) -> int:
    """The :status an HTTP/2 (h2c, prior knowledge) POST gets, sending as flow control allows.

    httpx gives up when the server answers before the body is sent (RST_STREAM), which is
    exactly what a 413 looks like over HTTP/2, so this speaks h2 directly.
    """
    import socket

    import h2.config
    import h2.connection
    import h2.events

    sock = socket.create_connection(("127.0.0.1", stack.edge_port), source_address=(source, 0))
    sock.settimeout(20)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1,
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{stack.edge_port}"),
            (":path", path),
            ("content-type", "application/json"),
        ],
    )
    sock.sendall(conn.data_to_send())
    sent = 0
    try:
        while True:
            window = min(conn.local_flow_control_window(1), conn.max_outbound_frame_size)
            while sent < len(body) and window > 0:
                chunk = body[sent : sent + window]
                conn.send_data(1, chunk, end_stream=sent + len(chunk) == len(body))
                sent += len(chunk)
                window = min(conn.local_flow_control_window(1), conn.max_outbound_frame_size)
            sock.sendall(conn.data_to_send())
            data = sock.recv(65536)
            if not data:
                raise AssertionError("connection closed without a response")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    return int(dict(event.headers)[b":status"])
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


@pytest.mark.e2e
def test_edge_h1_oversized_bodies_get_413_over_http1_and_http2(stack: UpProcess) -> None:
    ten_mb = json.dumps({"handle": "h" * (10 * 1024 * 1024), "password": "x" * 10}).encode()
    with edge_client(stack, "127.0.0.2") as c:
        for path in ("/v1/auth:login", "/v1/users"):
            r = c.post(path, content=ten_mb, headers={"content-type": "application/json"})
            assert r.status_code == 413, (path, r.status_code, r.text[:200])
            # Over HTTP/2 too, where the transcoder's own limit never capped a JSON body.
            assert h2_post_status(stack, path, ten_mb, "127.0.0.2") == 413
        # Under the edge limit, the handle itself is refused by name, before any work.
        r = c.post("/v1/auth:login", json={"handle": "h" * 200_000, "password": "x" * 10})
        assert r.status_code == 400 and "handle" in field_violations(r.json()), r.text[:300]
        assert c.get("/healthz").status_code == 200


@pytest.mark.e2e
def test_edge_l1_nul_and_bad_utf8_are_400_without_internals(edge: httpx.Client) -> None:
    r = edge.post(
        "/v1/auth:login",
        content=b'{"handle":"a\\u0000","password":"password-123"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and "handle" in field_violations(r.json()), r.text
    r = edge.get("/v1/users:lookup?handles=%FF%FE")
    assert r.status_code == 400, r.text
    assert "class" not in r.text and "DecodeError" not in r.text
    assert "handles" in field_violations(r.json())


@pytest.mark.e2e
def test_edge_m2_m3_limits_key_on_the_client_address_not_its_headers(
    stack: UpProcess,
) -> None:
    with edge_client(stack, "127.0.0.3") as owner:
        victim, _ = register(owner)
    with edge_client(stack, "127.0.0.4") as attacker:
        codes = []
        for i in range(11):
            # A spoofed X-Forwarded-For changes nothing: the edge appends the real peer.
            r = attacker.post(
                "/v1/auth:login",
                json={"handle": victim["handle"], "password": f"guess-{i}-xxxx"},
                headers={"x-forwarded-for": f"10.9.8.{i}", "x-envoy-external-address": "1.2.3.4"},
            )
            codes.append(r.status_code)
        assert codes == [401] * 10 + [429], codes
        r = attacker.post("/v1/auth:login", json={"handle": victim["handle"], "password": PASSWORD})
        assert r.status_code == 429
    with edge_client(stack, "127.0.0.3") as owner:  # M2: the owner is not locked out
        r = owner.post("/v1/auth:login", json={"handle": victim["handle"], "password": PASSWORD})
        assert r.status_code == 200, r.text


@pytest.mark.e2e
def test_edge_m4_registration_answers_the_same_for_a_registered_email(
    edge: httpx.Client,
) -> None:
    first, _ = register(edge)
    handle = unique("m")
    r = edge.post(
        "/v1/users", json={"handle": handle, "email": first["email"], "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    assert set(r.json()) == set(first) and r.json()["handle"] == handle
    # Handles are public: a taken one is still 409 (nothing secret to reveal).
    r = edge.post(
        "/v1/users",
        json={"handle": first["handle"], "email": "fresh@e.com", "password": PASSWORD},
    )
    assert r.status_code == 409


@pytest.mark.e2e
def test_edge_l2_query_parameters_cannot_rebind_path_ids(edge: httpx.Client) -> None:
    _, mine_token = register(edge)
    _, theirs_token = register(edge)
    mine = edge.post("/v1/posts", json={"text": "mine"}, headers=bearer(mine_token)).json()
    theirs = edge.post("/v1/posts", json={"text": "theirs"}, headers=bearer(theirs_token)).json()
    for param in ("postId", "post_id"):
        r = edge.post(
            f"/v1/posts/{mine['postId']}:like",
            params={param: theirs["postId"]},
            json={},
            headers=bearer(mine_token),
        )
        assert r.status_code == 400, r.text
    r = edge.get(f"/v1/posts/{theirs['postId']}", headers=bearer(theirs_token))
    assert r.json()["likeCount"] in ("0", 0), r.text


@pytest.mark.e2e
def test_edge_bearer_scheme_is_case_insensitive_and_typ_is_minted(edge: httpx.Client) -> None:
    user, token = register(edge)
    assert jwt.get_unverified_header(token)["typ"] == ACCESS_TOKEN_TYPE
    for scheme in ("bearer", "BEARER", "bEaReR"):
        r = edge.patch(
            f"/v1/users/{user['userId']}",
            params={"updateMask": "bio"},
            json={"bio": scheme},
            headers=bearer(token, scheme),
        )
        assert r.status_code == 200, (scheme, r.text)
    r = edge.patch(
        f"/v1/users/{user['userId']}",
        params={"updateMask": "bio"},
        json={"bio": "x"},
        headers=bearer("not-a-token", "bearer"),
    )
    assert r.status_code == 401


@pytest.mark.e2e
def test_edge_logout_revokes_the_access_token(edge: httpx.Client) -> None:
    user, token = register(edge)
    r = edge.post("/v1/auth:logout", json={}, headers=bearer(token))
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = edge.get(f"/v1/users/{user['userId']}", headers=bearer(token))
        if r.status_code == 401:
            break
        time.sleep(0.1)
    assert r.status_code == 401, r.text
    assert edge.post("/v1/auth:logout", json={}).status_code == 401


@pytest.mark.e2e
def test_edge_blocks_and_comment_oracle(edge: httpx.Client) -> None:
    blocker, blocker_token = register(edge)
    _, blocked_token = register(edge)
    blocked_id = jwt.decode(blocked_token, options={"verify_signature": False})["sub"]
    r = edge.post(f"/v1/users/{blocked_id}:block", json={}, headers=bearer(blocker_token))
    assert r.status_code == 200, r.text
    r = edge.get(f"/v1/users/{blocker['userId']}/relationship", headers=bearer(blocked_token))
    assert r.status_code == 404, r.text

    post = edge.post(
        "/v1/posts",
        json={"text": "fo", "visibility": "VISIBILITY_FOLLOWERS"},
        headers=bearer(blocker_token),
    ).json()
    comment = edge.post(
        f"/v1/posts/{post['postId']}/comments", json={"text": "c"}, headers=bearer(blocker_token)
    ).json()
    _, stranger = register(edge)
    real = edge.delete(
        f"/v1/posts/{post['postId']}/comments/{comment['commentId']}", headers=bearer(stranger)
    )
    fake = edge.delete(
        f"/v1/posts/{post['postId']}/comments/{int(comment['commentId']) + 1}",
        headers=bearer(stranger),
    )
    assert (real.status_code, real.json()["message"]) == (
        fake.status_code,
        fake.json()["message"],
    )


@pytest.mark.e2e
def test_edge_l8_each_client_address_has_its_own_bucket(stack: UpProcess, tmp_path: Path) -> None:
    with own_edge(stack, tmp_path, rate_limit_per_client_per_second=1) as url:

        def codes(source: str, n: int) -> list[int]:
            transport = httpx.HTTPTransport(local_address=source)
            with httpx.Client(base_url=url, timeout=10, transport=transport) as c:
                return [c.get("/v1/auth:caller").status_code for _ in range(n)]

        # A burst of two (twice the rate), then 429 for this address only...
        assert codes("127.0.0.2", 3) == [401, 401, 429]
        # ...while a client that has sent nothing keeps its whole budget.
        assert codes("127.0.0.3", 2) == [401, 401]


@pytest.mark.e2e
def test_edge_l7_silent_connections_are_reaped_and_capped(stack: UpProcess, tmp_path: Path) -> None:
    with own_edge(
        stack,
        tmp_path,
        idle_timeout_seconds=1,
        first_bytes_timeout_seconds=1,
        max_downstream_connections=5,
    ) as url:
        host, port = url.removeprefix("http://").split(":")
        silent = [socket.create_connection((host, int(port)), timeout=5) for _ in range(5)]
        # Past the cap, a connection is refused at accept: closed before any reply.
        extra = socket.create_connection((host, int(port)), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            assert extra.recv(1024) == b""
        except ConnectionResetError:
            pass
        extra.close()
        # Sockets that never send a byte are closed at the first-bytes deadline (1 s
        # here, 10 s by default), not kept for an hour.
        started = time.monotonic()
        for conn in silent:
            try:
                assert conn.recv(1024) == b""
            except ConnectionResetError:
                pass
            conn.close()
        assert time.monotonic() - started < 5
        # Capacity is back once they are gone.
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200


@pytest.mark.e2e
def test_edge_tls_offers_http2_and_http1_by_alpn(stack: UpProcess, tmp_path: Path) -> None:
    from services.devstack import self_signed_certificate

    cert, key = self_signed_certificate(tmp_path / "tls")
    with own_edge(
        stack, tmp_path, tls_cert_file=str(cert), tls_key_file=str(key), scheme="https"
    ) as url:
        with httpx.Client(base_url=url, verify=str(cert), http2=True, timeout=10) as h2:
            r = h2.get("/healthz")
            assert r.status_code == 200 and r.http_version == "HTTP/2"
            assert h2.get("/v1/auth:caller").status_code == 401  # the API behind it, over h2
        with httpx.Client(base_url=url, verify=str(cert), timeout=10) as h1:
            assert h1.get("/healthz").http_version == "HTTP/1.1"
        # Plaintext is not served on a TLS listener.
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "/healthz", timeout=5)
