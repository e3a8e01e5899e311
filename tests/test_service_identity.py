"""Service identity: access levels from the contract, service credentials, outbound auth.

Unit tests of the kit's pieces first (no infrastructure), then the running mesh.
"""

from __future__ import annotations

import dataclasses
import time

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.post.v1 import post_pb2, post_pb2_grpc
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit import auth, errors
from services.kit.channels import open_channel
from services.kit.server import Runtime, build_service_credentials, build_verifier

from .conftest import Infra, Mesh
from .helpers import acting_as, code_of

GRAPH = graph_pb2.DESCRIPTOR.services_by_name["GraphService"].full_name
USER = user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name
POST = post_pb2.DESCRIPTOR.services_by_name["PostService"].full_name

# -- access levels come from the contract -------------------------------------------


def test_method_access_is_read_from_the_contract():
    assert auth.method_access(f"/{USER}/GetUser") == auth.PUBLIC
    assert auth.method_access(f"/{USER}/UpdateUser") == auth.SIGNED_IN
    assert auth.method_access(f"/{GRAPH}/ListFollowerIds") == auth.INTERNAL
    assert auth.method_access(f"/{POST}/BatchGetPostCounts") == auth.INTERNAL
    # Unknown methods and services get the strictest level a user can pass.
    assert auth.method_access(f"/{USER}/NoSuchMethod") == auth.SIGNED_IN
    assert auth.method_access("/no.such.v1.Service/Get") == auth.SIGNED_IN
    table = auth.service_methods_access([GRAPH])
    assert len(table) == len(graph_pb2.DESCRIPTOR.services_by_name["GraphService"].methods)
    assert {p for p, a in table.items() if a == auth.INTERNAL} == {
        f"/{GRAPH}/BatchGetRelationships",
        f"/{GRAPH}/BatchGetFollowCounts",
        f"/{GRAPH}/ListFollowerIds",
        f"/{GRAPH}/ListSuggestedAccounts",
        f"/{GRAPH}/ExportRelationships",
    }
    assert auth.PUBLIC not in table.values()  # graph has no anonymous method any more


# -- service credentials ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {name: ec.generate_private_key(ec.SECP256R1()) for name in ("feed", "graph")}


def credentials(key: ec.EllipticCurvePrivateKey, service: str = "feed", **kw):
    return auth.ServiceCredentials(
        service, key, issuer="socialmesh", audience="socialmesh-internal", **kw
    )


def service_verifier(keys) -> auth.ServiceTokenVerifier:
    return auth.ServiceTokenVerifier(
        {name: key.public_key() for name, key in keys.items()},
        issuer="socialmesh",
        audience="socialmesh-internal",
    )


def test_service_credentials_are_cached_and_reminted_before_they_expire(keys):
    clock = Clock()
    creds = credentials(keys["feed"], ttl=300, clock=clock)
    first = creds.token()
    header = jwt.get_unverified_header(first)
    claims = jwt.decode(first, options={"verify_signature": False})
    assert header["kid"] == auth.key_id(keys["feed"].public_key())
    assert (claims["sub"], claims["aud"], claims["iss"]) == (
        "svc:feed",
        "socialmesh-internal",
        "socialmesh",
    )
    assert claims["exp"] - claims["iat"] == 300
    clock.now += 200
    assert creds.token() == first  # cached
    clock.now += 50  # 250 s: four fifths of its life are gone
    second = creds.token()
    assert second != first
    assert jwt.decode(second, options={"verify_signature": False})["exp"] > claims["exp"]


def test_a_service_key_speaks_for_its_own_service_only(keys):
    verifier = service_verifier(keys)
    caller = verifier.verify(credentials(keys["feed"]).token())
    assert (caller.service, caller.user_id, caller.is_service, caller.bearer) == (
        "feed",
        0,
        True,
        "",
    )
    now = int(time.time())

    def forged(key, **claims) -> str:
        base = {
            "iss": "socialmesh",
            "aud": "socialmesh-internal",
            "sub": "svc:feed",
            "iat": now,
            "exp": now + 300,
        }
        base.update(claims)
        kid = auth.key_id(key.public_key())
        return jwt.encode(
            {k: v for k, v in base.items() if v is not None}, key, "ES256", {"kid": kid}
        )

    stranger = ec.generate_private_key(ec.SECP256R1())
    refused = [
        forged(keys["graph"]),  # graph's key minting for feed
        forged(keys["graph"], sub="svc:evil"),  # a service nobody published
        forged(stranger, sub="svc:feed"),
        forged(keys["feed"], aud="socialmesh-api"),  # the edge's audience
        forged(keys["feed"], iss="elsewhere"),
        forged(keys["feed"], exp=now - 60),
        forged(keys["feed"], exp=None),
        forged(keys["feed"], iat=now, exp=now + 3600),  # far longer than credentials live
        jwt.encode({"sub": "svc:feed"}, "a-shared-secret-of-at-least-32-bytes", "HS256"),
        "garbage",
    ]
    for token in refused:
        with pytest.raises(errors.Unauthenticated):
            verifier.verify(token)


def test_user_tokens_and_service_credentials_never_pass_for_each_other(keys):
    user_key = ec.generate_private_key(ec.SECP256R1())
    signer = auth.TokenSigner(user_key, issuer="socialmesh", audience="socialmesh-api", ttl=60)
    users = auth.TokenVerifier(
        [user_key.public_key()], issuer="socialmesh", audience="socialmesh-api"
    )
    both = auth.CallerVerifier(users, service_verifier(keys))
    user = both.verify(signer.sign(42, 7))
    assert (user.user_id, user.is_service, user.service) == (42, False, "")
    service_token = credentials(keys["feed"]).token()
    assert both.verify(service_token).service == "feed"
    with pytest.raises(errors.Unauthenticated):
        users.verify(service_token)  # what the edge checks: wrong audience, unknown key
    with pytest.raises(errors.Unauthenticated):
        auth.CallerVerifier(users, None).verify(service_token)
    # The user service's signing key is no service key, whatever the subject says.
    with pytest.raises(errors.Unauthenticated):
        both.verify(credentials(user_key).token())


def test_caller_helpers_tell_users_services_and_anonymous_apart():
    user = auth.Caller(user_id=5, session_id=1, token_id="t", bearer="user-token")
    service = auth.Caller(user_id=0, session_id=0, token_id="s", service="feed")
    for caller, viewer, forwarded in (
        (None, None, ()),
        (user, 5, (("authorization", "Bearer user-token"),)),
        (service, None, ()),
    ):
        with acting_as(caller):
            assert auth.current_viewer_id() == viewer
            assert auth.forwarded_auth() == forwarded
            with auth.anonymous_calls():
                assert auth.current_caller() is None
            assert auth.current_caller() is caller
    with acting_as(service):
        with pytest.raises(errors.PermissionDenied):
            auth.require_caller()
        assert auth.require_service() is service
    with acting_as(user), pytest.raises(errors.PermissionDenied):
        auth.require_service()


def test_services_refuse_to_start_without_a_matching_service_key(infra: Infra):
    settings = infra.settings("post")
    assert build_service_credentials(settings).service == "post"
    assert build_verifier(settings).services is not None
    for broken in (
        dataclasses.replace(settings, service_key_file=""),
        dataclasses.replace(settings, service_public_keys_dir=""),
        # graph's private key under post's name: peers would refuse it.
        dataclasses.replace(settings, service_key_file=str(infra.service_key_file("graph"))),
        dataclasses.replace(settings, service_token_audience=settings.jwt_audience),
        dataclasses.replace(settings, service_token_ttl_seconds=3600),
    ):
        with pytest.raises(SystemExit):
            Runtime(broken)
            build_verifier(broken)


# -- outbound calls carry the right credential -------------------------------------------


class Recorder:
    """A fake graph service that records the `authorization` each call carried."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    def handler(self, name: str, response: type) -> grpc.RpcMethodHandler:
        async def record(request: object, context: grpc.aio.ServicerContext) -> object:
            metadata = dict(context.invocation_metadata() or ())
            value = metadata.get("authorization")
            self.seen.append((name, value if value is None else str(value)))
            return response()

        return grpc.unary_unary_rpc_method_handler(
            record,
            request_deserializer=lambda b: b,
            response_serializer=lambda m: m.SerializeToString(),
        )


async def test_outbound_calls_forward_the_user_or_use_the_service_credential_for_internal_only():
    recorder = Recorder()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                GRAPH,
                {
                    "BatchGetFollowCounts": recorder.handler(
                        "internal", graph_pb2.BatchGetFollowCountsResponse
                    ),
                    "ListFollowers": recorder.handler("signed-in", graph_pb2.ListFollowersResponse),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = open_channel(f"127.0.0.1:{port}", service_token=lambda: "svc-credential")
    graph = graph_pb2_grpc.GraphServiceStub(channel)

    async def both() -> list[tuple[str, str | None]]:
        recorder.seen.clear()
        await graph.BatchGetFollowCounts(graph_pb2.BatchGetFollowCountsRequest(user_ids=[1]))
        await graph.ListFollowers(graph_pb2.ListFollowersRequest(user_id=1))
        return list(recorder.seen)

    user = auth.Caller(user_id=5, session_id=1, token_id="t", bearer="user-token")
    service = auth.Caller(user_id=0, session_id=0, token_id="s", service="feed")
    try:
        # Anonymous request or background worker: own credential, internal methods only.
        assert await both() == [("internal", "Bearer svc-credential"), ("signed-in", None)]
        with acting_as(user):  # a signed-in user's request: the user's own token everywhere
            assert await both() == [
                ("internal", "Bearer user-token"),
                ("signed-in", "Bearer user-token"),
            ]
            with auth.anonymous_calls():
                assert await both() == [
                    ("internal", "Bearer svc-credential"),
                    ("signed-in", None),
                ]
            recorder.seen.clear()
            await graph.ListFollowers(  # an explicit authorization is left alone
                graph_pb2.ListFollowersRequest(user_id=1),
                metadata=(("authorization", "Bearer chosen"),),
            )
            assert recorder.seen == [("signed-in", "Bearer chosen")]
        with acting_as(service):  # serving another service: act as ourselves, pass nothing on
            assert await both() == [("internal", "Bearer svc-credential"), ("signed-in", None)]
    finally:
        await channel.close()
        await server.stop(None)


# -- the running mesh --------------------------------------------------------------


async def test_each_access_level_is_enforced(mesh: Mesh, make_person, infra: Infra):
    users = user_pb2_grpc.UserServiceStub(mesh["user"].channel)
    graph = graph_pb2_grpc.GraphServiceStub(mesh["graph"].channel)
    person = await make_person()
    service = infra.service_auth("feed")
    get_user = user_pb2.GetUserRequest(user_id=person.id)
    counts = graph_pb2.BatchGetFollowCountsRequest(user_ids=[person.id])
    follow = graph_pb2.FollowUserRequest(user_id=person.id)
    ok, unauthenticated, denied = (
        grpc.StatusCode.OK,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    )
    table = [
        # (call, no token, user token, service credential)
        (users.GetUser, get_user, ok, ok, denied),  # PUBLIC
        (graph.FollowUser, follow, unauthenticated, None, denied),  # signed in
        (graph.BatchGetFollowCounts, counts, unauthenticated, ok, ok),  # INTERNAL
    ]
    for method, request, anonymous, as_user, as_service in table:
        assert await code_of(method(request)) == anonymous, method
        if as_user is not None:
            assert await code_of(method(request, metadata=person.md)) == as_user, method
        assert await code_of(method(request, metadata=service)) == as_service, method
        # A bad credential is refused whatever the level.
        bad = [("authorization", "Bearer garbage")]
        assert await code_of(method(request, metadata=bad)) == unauthenticated, method


async def test_a_forged_service_credential_is_refused_by_the_mesh(mesh: Mesh, infra: Infra):
    graph = graph_pb2_grpc.GraphServiceStub(mesh["graph"].channel)
    graph_key = auth.load_private_key(infra.service_key_file("graph"))
    # graph's own key minting a "feed" credential: valid signature, wrong owner.
    forged = auth.ServiceCredentials(
        "feed", graph_key, issuer="socialmesh", audience="socialmesh-internal"
    ).token()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.ListFollowerIds(
            graph_pb2.ListFollowerIdsRequest(user_id=1),
            metadata=[("authorization", f"Bearer {forged}")],
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_anonymous_profiles_still_show_counts_through_the_service_credential(
    mesh: Mesh, make_person
):
    users = user_pb2_grpc.UserServiceStub(mesh["user"].channel)
    graph = graph_pb2_grpc.GraphServiceStub(mesh["graph"].channel)
    posts = post_pb2_grpc.PostServiceStub(mesh["post"].channel)
    author, fan = await make_person(), await make_person()
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=author.id), metadata=fan.md)
    await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(text="hi")), metadata=author.md
    )
    # BatchGetFollowCounts and BatchGetPostCounts refuse anonymous callers now...
    assert (
        await code_of(
            graph.BatchGetFollowCounts(graph_pb2.BatchGetFollowCountsRequest(user_ids=[1]))
        )
        == grpc.StatusCode.UNAUTHENTICATED
    )
    # ...yet an anonymous profile read still has them: the user service asks as itself.
    seen = await users.GetUser(user_pb2.GetUserRequest(user_id=author.id))
    assert (seen.follower_count, seen.post_count) == (1, 1)
    batch = await users.BatchGetUsers(user_pb2.BatchGetUsersRequest(user_ids=[author.id, fan.id]))
    assert [(u.follower_count, u.following_count) for u in batch.users] == [(1, 0), (0, 1)]


def test_a_verified_token_is_not_verified_again_until_it_expires(infra):
    from services.kit.auth import CallerVerifier, TokenVerifier, load_public_key

    users = TokenVerifier(
        [load_public_key(infra.public_key_file)], issuer="socialmesh", audience="socialmesh-api"
    )
    checks: list[str] = []
    real_verify = users.verify

    def counting_verify(token: str):
        checks.append(token)
        return real_verify(token)

    users.verify = counting_verify  # type: ignore[method-assign]
    verifier = CallerVerifier(users, None)
    token = infra.signer().sign(7, 70)
    assert verifier.verify(token).user_id == 7
    assert verifier.verify(token).user_id == 7
    assert len(checks) == 1  # the signature was checked once
    expired = infra.signer(ttl=-10).sign(7, 70)
    for _ in range(2):
        with pytest.raises(errors.Unauthenticated):
            verifier.verify(expired)
    assert len(checks) == 3  # a refused token is never remembered
