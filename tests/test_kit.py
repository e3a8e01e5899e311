"""Unit tests of the shared kit (no servers)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.kit import auth, errors
from services.kit.cache import LocalTTLCache
from services.kit.channels import service_config, upstream_error
from services.kit.ids import IdGenerator, timestamp_ms
from services.kit.migrations import migration_files
from services.kit.pagination import PageSizes, PageTokens, page_size
from services.kit.validation import Violations, batch_ids, strip_control_characters

from .helpers import acting_as


def test_ids_are_unique_monotonic_and_carry_their_time():
    gen = IdGenerator(5)
    before = int(time.time() * 1000)
    ids = [gen.next_id() for _ in range(100_000)]
    after = int(time.time() * 1000)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert before <= timestamp_ms(ids[0]) <= timestamp_ms(ids[-1]) <= after + 1
    assert (ids[0] >> 12) & 0x3FF == 5
    assert ids[-1] < 2**63
    with pytest.raises(ValueError):
        IdGenerator(1024)


def test_violations_collect_every_field():
    v = Violations()
    v.check(True, "ok", "never")
    v.check(False, "a", "bad a")
    v.add("b", "bad b")
    with pytest.raises(errors.InvalidArgument) as err:
        v.raise_if_any()
    assert err.value.violations == [("a", "bad a"), ("b", "bad b")]
    assert strip_control_characters("a\x00b\x1b[0m\tc\nd\x7f\u0085") == "ab[0m\tc\nd"
    assert batch_ids([3, 1, 3], "ids", 5) == [3, 1]
    for bad in ([], [0], list(range(1, 7))):
        with pytest.raises(errors.InvalidArgument):
            batch_ids(bad, "ids", 5)


def _details(exc: errors.ServiceError) -> tuple[grpc.StatusCode, list]:
    status = exc.to_status()
    metadata = dict(status.trailing_metadata)
    proto = rpc_status.status_pb2.Status.FromString(metadata["grpc-status-details-bin"])
    return status.code, list(proto.details)


def test_errors_carry_rich_details():
    code, details = _details(errors.InvalidArgument([("handle", "too short"), ("email", "bad")]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    bad = error_details_pb2.BadRequest()
    assert details[0].Unpack(bad)
    assert [(f.field, f.description) for f in bad.field_violations] == [
        ("handle", "too short"),
        ("email", "bad"),
    ]
    code, details = _details(
        errors.ResourceExhausted("slow down", subject="u:1", retry_after_seconds=2.5)
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    quota, retry = error_details_pb2.QuotaFailure(), error_details_pb2.RetryInfo()
    assert details[0].Unpack(quota) and details[1].Unpack(retry)
    assert quota.violations[0].subject == "u:1" and retry.retry_delay.ToMilliseconds() == 2500
    code, details = _details(errors.AlreadyExists("taken", field="handle"))
    info = error_details_pb2.ErrorInfo()
    assert code == grpc.StatusCode.ALREADY_EXISTS and details[0].Unpack(info)
    assert info.metadata["field"] == "handle"
    for cls, expected in (
        (errors.NotFound, grpc.StatusCode.NOT_FOUND),
        (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
        (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
        (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    ):
        assert _details(cls("x"))[0] == expected


@pytest.fixture(scope="module")
def keypair():
    key = ec.generate_private_key(ec.SECP256R1())
    signer = auth.TokenSigner(key, issuer="socialmesh", audience="socialmesh-api", ttl=60)
    verifier = auth.TokenVerifier(
        [key.public_key()], issuer="socialmesh", audience="socialmesh-api"
    )
    return key, signer, verifier


def test_tokens_round_trip(keypair):
    _, signer, verifier = keypair
    caller = verifier.verify(signer.sign(42, 7))
    assert (caller.user_id, caller.session_id) == (42, 7) and caller.bearer


def _claims(**overrides):
    now = int(time.time())
    claims = {"iss": "socialmesh", "aud": "socialmesh-api", "sub": "1", "iat": now, "exp": now + 60}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_tokens_are_refused_for_every_rfc8725_pitfall(keypair):
    key, _, verifier = keypair
    kid = {"kid": auth.key_id(key.public_key())}
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    other = ec.generate_private_key(ec.SECP256R1())
    forged = [
        jwt.encode(_claims(exp=int(time.time()) - 60), key, "ES256", headers=kid),  # expired
        jwt.encode(_claims(aud="someone-else"), key, "ES256", headers=kid),
        jwt.encode(_claims(iss="evil"), key, "ES256", headers=kid),
        jwt.encode(_claims(exp=None), key, "ES256", headers=kid),  # no exp
        jwt.encode(_claims(), other, "ES256", headers=kid),  # wrong key, right kid
        jwt.encode(_claims(), None, "none", headers=kid),  # alg=none
        "garbage",
    ]
    try:  # algorithm confusion: HS256 keyed with the public key
        forged.append(jwt.encode(_claims(), public_pem, "HS256", headers=kid))
    except jwt.InvalidKeyError:
        pass  # PyJWT refuses to even build it; the verifier pins ES256 regardless
    for token in forged:
        with pytest.raises(errors.Unauthenticated):
            verifier.verify(token)


def test_bearer_parsing():
    assert auth.bearer_token((("x", "y"),)) is None
    assert auth.bearer_token((("authorization", "Bearer abc"),)) == "abc"
    with pytest.raises(errors.Unauthenticated):
        auth.bearer_token((("authorization", "Basic abc"),))


def test_jwks_matches_the_key(keypair):
    key, _, _ = keypair
    document = json.loads(auth.jwks_json([key.public_key()]))
    (entry,) = document["keys"]
    assert (entry["kty"], entry["crv"], entry["alg"]) == ("EC", "P-256", "ES256")
    assert entry["kid"] == auth.key_id(key.public_key())


def test_migration_files_are_validated(tmp_path):
    (tmp_path / "0001_init.sql").write_text("select 1")
    (tmp_path / "0002_more.sql").write_text("select 1")
    assert [v for v, _ in migration_files(tmp_path)] == [1, 2]
    (tmp_path / "0002_again.sql").write_text("select 1")
    with pytest.raises(ValueError, match="duplicate"):
        migration_files(tmp_path)
    (tmp_path / "0002_again.sql").unlink()
    (tmp_path / "bad name.sql").write_text("select 1")
    with pytest.raises(ValueError, match="0001_name"):
        migration_files(tmp_path)


def test_local_cache_expires_and_is_bounded():
    cache = LocalTTLCache(max_entries=2, ttl_seconds=0.05)
    cache.set("a", b"1")
    cache.set("b", b"2")
    assert cache.get("a") == b"1"  # a is now most recent
    cache.set("c", b"3")  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("a") == b"1"
    time.sleep(0.06)
    assert cache.get("a") is None


def test_page_tokens_are_signed_and_scoped():
    tokens = PageTokens(b"0123456789abcdef")
    token = tokens.encode("followers:1", {"e": 99})
    assert tokens.decode("followers:1", token) == {"e": 99}
    assert tokens.decode("followers:1", "") is None
    for scope, bad in (("followers:2", token), ("followers:1", token[:-2] + "xx")):
        with pytest.raises(errors.InvalidArgument):
            tokens.decode(scope, bad)
    with pytest.raises(errors.InvalidArgument):
        PageTokens(b"another-secret-123").decode("followers:1", token)
    assert page_size(0) == 50 and page_size(5000, maximum=1000) == 1000
    with pytest.raises(errors.InvalidArgument):
        page_size(-1)


@dataclass
class ListRequest:
    page_size: int = 0
    page_token: str = ""


def test_page_helper_names_its_position_and_binds_it_to_the_list():
    tokens = PageTokens(b"0123456789abcdef")
    first = tokens.page("followers:1", "edge_id", ListRequest(page_size=2))
    assert (first.size, first.limit, first.position) == (2, 3, None)
    rows = [30, 20, 10]  # one more than the page: another page follows
    assert first.rows(rows) == [30, 20]
    token = first.next_token(rows, lambda r: r)
    assert tokens.decode("followers:1", token) == {"edge_id": 20}  # a meaningful key
    second = tokens.page("followers:1", "edge_id", ListRequest(2, token))
    assert second.position == 20
    assert second.next_token([10], lambda r: r) == ""  # the last page
    assert tokens.page("x", "edge_id", ListRequest()).size == 50
    sizes = PageSizes(default=7, maximum=100)
    assert tokens.page("x", "edge_id", ListRequest(), sizes).size == 7
    assert tokens.page("x", "edge_id", ListRequest(page_size=10**6), sizes).size == 100
    with pytest.raises(errors.InvalidArgument):
        tokens.page("followers:2", "edge_id", ListRequest(2, token))  # another list's token
    with pytest.raises(errors.InvalidArgument):  # a token of a list keyed otherwise
        tokens.page("followers:1", "post_id", ListRequest(2, token))
    for position in ({"edge_id": "20"}, {"edge_id": True}, {}):
        with pytest.raises(errors.InvalidArgument):
            tokens.page("x", "edge_id", ListRequest(2, tokens.encode("x", position)))
    with pytest.raises(errors.InvalidArgument) as err:
        tokens.page("x", "edge_id", ListRequest(page_size=-1))
    assert err.value.violations[0][0] == "pageSize"
    with pytest.raises(errors.InvalidArgument) as err:
        page_size(-1, field="per_author_limit")
    assert err.value.violations[0][0] == "perAuthorLimit"


def _peer_failure(exc: errors.ServiceError) -> grpc.aio.AioRpcError:
    """What a peer's rich error looks like to the caller's stub."""
    status = exc.to_status()
    return grpc.aio.AioRpcError(
        status.code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*status.trailing_metadata),
        details=status.details,
    )


def _seen_by_our_caller(mapped: Exception) -> grpc.StatusCode:
    """A ServiceError aborts with its code; anything else is the interceptor's INTERNAL."""
    return mapped.code if isinstance(mapped, errors.ServiceError) else grpc.StatusCode.INTERNAL


C = grpc.StatusCode


@pytest.mark.parametrize(
    ("peer", "ours"),
    [
        # The peer (or the network) failed: retry later.
        (C.UNAVAILABLE, C.UNAVAILABLE),
        (C.DEADLINE_EXCEEDED, C.UNAVAILABLE),
        (C.CANCELLED, C.UNAVAILABLE),
        # Facts about the resource or the user: as true for our caller.
        (C.NOT_FOUND, C.NOT_FOUND),
        (C.PERMISSION_DENIED, C.PERMISSION_DENIED),
        (C.FAILED_PRECONDITION, C.FAILED_PRECONDITION),
        (C.ALREADY_EXISTS, C.ALREADY_EXISTS),
        (C.ABORTED, C.ABORTED),
        (C.RESOURCE_EXHAUSTED, C.RESOURCE_EXHAUSTED),
        # Our request to the peer was wrong, or the peer broke: our 500, not a 503.
        (C.INVALID_ARGUMENT, C.INTERNAL),
        (C.OUT_OF_RANGE, C.INTERNAL),
        (C.UNIMPLEMENTED, C.INTERNAL),
        (C.INTERNAL, C.INTERNAL),
        (C.UNKNOWN, C.INTERNAL),
        (C.DATA_LOSS, C.INTERNAL),
        # No user token was forwarded: our own service credential was refused.
        (C.UNAUTHENTICATED, C.INTERNAL),
    ],
)
def test_upstream_errors_keep_their_meaning(peer, ours):
    exc = grpc.aio.AioRpcError(peer, grpc.aio.Metadata(), grpc.aio.Metadata(), details="peer says")
    assert _seen_by_our_caller(upstream_error(exc, "graph")) == ours


def test_upstream_unauthenticated_passes_through_when_the_users_token_was_forwarded():
    exc = grpc.aio.AioRpcError(
        C.UNAUTHENTICATED, grpc.aio.Metadata(), grpc.aio.Metadata(), details="token revoked"
    )
    with acting_as(auth.Caller(user_id=5, session_id=1, token_id="t", bearer="tok")):
        assert _seen_by_our_caller(upstream_error(exc, "graph")) == C.UNAUTHENTICATED
    # Serving a service, we sent our own credential: our problem.
    with acting_as(auth.Caller(user_id=0, session_id=0, token_id="s", service="feed")):
        assert _seen_by_our_caller(upstream_error(exc, "graph")) == C.INTERNAL


def test_upstream_errors_keep_rich_details_but_never_leak_the_peers_fields():
    rate_limit = errors.ResourceExhausted("slow down", subject="u:1", retry_after_seconds=3)
    limited = upstream_error(_peer_failure(rate_limit), "post")
    assert isinstance(limited, errors.ServiceError)
    code, details = _details(limited)
    assert code == C.RESOURCE_EXHAUSTED
    assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in details)
    bad = upstream_error(_peer_failure(errors.InvalidArgument([("user_ids", "bad")])), "graph")
    assert not isinstance(bad, errors.ServiceError)  # a bare INTERNAL, logged with the details
    assert "INVALID_ARGUMENT" in str(bad)
    unavailable = upstream_error(
        grpc.aio.AioRpcError(C.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()), "graph"
    )
    assert isinstance(unavailable, errors.Unavailable)
    assert "graph" in unavailable.message


def test_channel_retries_unavailable_only():
    config = json.loads(service_config())
    policy = config["methodConfig"][0]["retryPolicy"]
    assert policy["retryableStatusCodes"] == ["UNAVAILABLE"] and policy["maxAttempts"] == 3
    assert "timeout" not in config["methodConfig"][0]  # deadlines come from the interceptor


async def test_cancel_and_wait_stops_a_task_that_swallows_a_cancellation():
    """redis-py 8 can swallow a cancel during a command; a shutdown must still end."""
    import asyncio

    from services.kit.tasks import cancel_and_wait

    swallowed: list[int] = []

    async def stubborn_loop() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if not swallowed:  # like a client library finishing its command anyway
                    swallowed.append(1)
                    continue
                raise

    task = asyncio.create_task(stubborn_loop())
    await asyncio.sleep(0.02)
    await asyncio.wait_for(cancel_and_wait(task, wait_seconds=0.05), timeout=2)
    assert task.done() and swallowed == [1]


def test_json_logs_carry_the_current_trace_and_span_ids() -> None:
    import io
    import json as jsonlib
    import logging

    from opentelemetry.sdk.trace import TracerProvider

    from services.kit.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("chat"))
    logger = logging.getLogger("socialmesh.test.jsonlogs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        tracer = TracerProvider().get_tracer("test")
        with tracer.start_as_current_span("work") as span:
            logger.warning("inside %s", "a span")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (jsonlib.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["message"] == "inside a span" and inside["service"] == "chat"
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert inside["level"] == "WARNING"
    assert "trace_id" not in outside
