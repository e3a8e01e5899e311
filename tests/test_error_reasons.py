"""One error shape (AIP-193): specific reasons, the request id, camelCase field paths."""

from __future__ import annotations

import time

import grpc
import jwt
import pytest
from google.rpc import error_details_pb2
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.user.v1 import user_pb2

from services.kit import errors
from services.kit.errors import Reason

from .conftest import Infra, unique
from .helpers import auth, error_info, reason_of, violations


def test_every_reason_is_documented_once():
    """docs/errors.md is the client's table: every reason the kit knows is in it."""
    from pathlib import Path

    table = Path(__file__).resolve().parents[1].joinpath("docs", "errors.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = [row.split("`")[1] for row in rows]
    assert sorted(documented) == sorted(set(documented)), "a reason is listed twice"
    assert set(documented) >= {r.value for r in Reason}
    # The edge's own replies too, in the same domain.
    from gateway.local_replies import EDGE_ERROR_DOMAIN, LOCAL_REPLIES

    assert set(documented) >= {reply.reason for reply in LOCAL_REPLIES}
    assert EDGE_ERROR_DOMAIN == errors.ERROR_DOMAIN


def test_status_carries_reason_domain_metadata_and_request_id():
    token = errors.set_request_id("req-123")
    try:
        status = errors.NotFound("post 42 not found").status_proto()
    finally:
        errors.reset_request_id(token)
    info, resource = error_details_pb2.ErrorInfo(), error_details_pb2.ResourceInfo()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(resource)
    assert (info.reason, info.domain) == ("NOT_FOUND", "socialmesh.dev")
    assert dict(info.metadata) == {
        "resourceType": "post",
        "resourceId": "42",
        "requestId": "req-123",
    }
    assert (resource.resource_type, resource.resource_name) == ("post", "42")
    found = errors.NotFound("push endpoint 7 not found")
    assert found.metadata["resourceType"] == "pushEndpoint"
    # Outside a request there is no request id to name.
    assert "requestId" not in errors.Unavailable("x").error_info().metadata


def test_field_paths_are_camel_case_and_violations_name_the_reason():
    err = errors.InvalidArgument(
        [("post.media_ids", "too many"), ("impressions[0].tracking_token", "forged")],
        reason=Reason.WRONG_PASSWORD,
    )
    bad = error_details_pb2.BadRequest()
    assert err.status_proto().details[0].Unpack(bad)
    assert [(v.field, v.reason) for v in bad.field_violations] == [
        ("post.mediaIds", "WRONG_PASSWORD"),
        ("impressions[0].trackingToken", "WRONG_PASSWORD"),
    ]
    assert err.error_info().metadata["fields"] == "post.mediaIds,impressions[0].trackingToken"
    assert "post.mediaIds: too many" in err.message


def test_rate_limits_say_limit_window_and_retry_after():
    err = errors.ResourceExhausted(
        "slow down", subject="s", retry_after_seconds=2.2, limit=10, window_seconds=60
    )
    assert err.headers() == (
        ("retry-after", "3"),
        ("x-ratelimit-limit", "10"),
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", "3"),
    )
    assert dict(err.error_info().metadata) == {"limit": "10", "window": "60s", "retryAfter": "3"}
    assert errors.retry_after_header(0.01) == "1" and errors.retry_after_header(5.0) == "5"


async def test_a_service_error_names_the_request_id_it_came_with(users):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.GetUser(
            user_pb2.GetUserRequest(user_id=9_000_000_000_000_001),
            metadata=[("x-request-id", "0b5e2c7d-req")],
        )
    info = error_info(err.value)
    assert (info.reason, info.domain) == ("NOT_FOUND", "socialmesh.dev")
    assert info.metadata["requestId"] == "0b5e2c7d-req"
    assert info.metadata["resourceType"] == "user"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.BatchGetUsers(
            user_pb2.BatchGetUsersRequest(), metadata=[("x-request-id", "bad-req")]
        )
    assert "userIds" in violations(err.value)
    assert error_info(err.value).metadata["requestId"] == "bad-req"


async def test_token_failures_tell_refresh_from_sign_in(users, infra: Infra):
    handle = unique("tok")
    user = await users.CreateUser(
        user_pb2.CreateUserRequest(handle=handle, email=f"{handle}@e.com", password="password123")
    )
    caller = user_pb2.GetCallerRequest()
    expired = infra.signer().sign(user.user_id, 5, now=time.time() - 3600)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.GetCaller(caller, metadata=auth(expired))
    assert reason_of(err.value) == "TOKEN_EXPIRED"  # refresh
    forged = jwt.encode({"sub": "1"}, "secret", algorithm="HS256")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.GetCaller(caller, metadata=auth(forged))
    assert reason_of(err.value) == "TOKEN_INVALID"  # sign in again
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.GetCaller(caller)
    assert reason_of(err.value) == "TOKEN_MISSING"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.Login(user_pb2.LoginRequest(handle=handle, password="wrong password"))
    assert reason_of(err.value) == "INVALID_CREDENTIALS"
    token = (
        await users.Login(user_pb2.LoginRequest(handle=handle, password="password123"))
    ).access_token
    await users.DeleteUser(user_pb2.DeleteUserRequest(user_id=user.user_id), metadata=auth(token))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.GetCaller(caller, metadata=auth(token))
    assert reason_of(err.value) == "TOKEN_REVOKED"


async def test_permission_and_conflict_reasons(users, mesh, infra: Infra):
    handle = unique("own")
    first = await users.CreateUser(
        user_pb2.CreateUserRequest(handle=handle, email=f"{handle}@e.com", password="password123")
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.CreateUser(
            user_pb2.CreateUserRequest(handle=handle, email="x@e.com", password="password123")
        )
    info = error_info(err.value)
    assert (info.reason, info.metadata["field"]) == ("HANDLE_TAKEN", "handle")
    other = infra.signer().sign(first.user_id + 1, 1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.DeleteUser(
            user_pb2.DeleteUserRequest(user_id=first.user_id), metadata=auth(other)
        )
    assert (err.value.code(), reason_of(err.value)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_OWNER",
    )
    # A service credential on a user's method; a user on a service's method.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.GetCaller(user_pb2.GetCallerRequest(), metadata=infra.service_auth("feed"))
    assert reason_of(err.value) == "USER_CALLERS_ONLY"
    graph = graph_pb2_grpc.GraphServiceStub(mesh["graph"].channel)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.ListFollowerIds(
            graph_pb2.ListFollowerIdsRequest(user_id=first.user_id), metadata=auth(other)
        )
    assert reason_of(err.value) == "SERVICE_CALLERS_ONLY"


async def test_a_peer_refusal_keeps_its_reason_with_our_request_id(users, infra: Infra):
    """Setting an avatar asks media to attach the upload; media's NOT_FOUND comes back
    through user with its reason and details, and user's caller's request id."""
    handle = unique("peer")
    user = await users.CreateUser(
        user_pb2.CreateUserRequest(handle=handle, email=f"{handle}@e.com", password="password123")
    )
    token = infra.signer().sign(user.user_id, 1)
    from google.protobuf import field_mask_pb2

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.UpdateUser(
            user_pb2.UpdateUserRequest(
                user=user_pb2.User(user_id=user.user_id, avatar_media_id=9_000_000_000_000_003),
                update_mask=field_mask_pb2.FieldMask(paths=["avatar_media_id"]),
            ),
            metadata=[*auth(token), ("x-request-id", "peer-req")],
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(err.value)
    assert (info.reason, info.metadata["requestId"]) == ("NOT_FOUND", "peer-req")
    assert info.metadata["resourceType"] == "media"
