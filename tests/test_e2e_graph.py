"""The graph service end to end through Envoy's REST surface."""

from __future__ import annotations

import httpx
import pytest

from .e2e_support import field_violations, person

pytestmark = pytest.mark.e2e


def test_follow_flow_over_rest(client: httpx.Client) -> None:
    alice, alice_h = person(client)
    bob, bob_h = person(client)
    for _ in range(2):  # idempotent
        r = client.post(f"/v1/users/{bob}:follow", json={}, headers=alice_h)
        assert r.status_code == 200 and r.json()["state"] == "FOLLOW_STATE_FOLLOWING", r.text
    rel = client.get(f"/v1/users/{bob}/relationship", headers=alice_h).json()
    assert rel["following"] is True and rel["followedBy"] is False
    followers = client.get(f"/v1/users/{bob}/followers", headers=alice_h).json()
    assert [f["userId"] for f in followers["followers"]] == [alice] and followers[
        "totalSize"
    ] == "1"
    following = client.get(f"/v1/users/{alice}/following", params={"pageSize": 10}, headers=bob_h)
    assert [f["userId"] for f in following.json()["following"]] == [bob]
    profile = client.get(f"/v1/users/{bob}", headers=alice_h).json()
    assert profile["followerCount"] == "1" and profile["isFollowing"] is True
    assert client.post(f"/v1/users/{bob}:unfollow", json={}, headers=alice_h).status_code == 200
    assert client.get(f"/v1/users/{bob}").json()["followerCount"] == "0"


def test_graph_refusals_over_rest(client: httpx.Client) -> None:
    alice, alice_h = person(client)
    assert client.post(f"/v1/users/{alice}:follow", json={}).status_code == 401
    r = client.post(f"/v1/users/{alice}:follow", json={}, headers=alice_h)
    assert r.status_code == 400 and "userId" in field_violations(r.json())
    assert client.post("/v1/users/123456789:follow", json={}, headers=alice_h).status_code == 404
    r = client.get(f"/v1/users/{alice}/followers", params={"pageToken": "forged"}, headers=alice_h)
    assert r.status_code == 400 and "pageToken" in field_violations(r.json())


def test_private_request_flow_and_block_over_rest(client: httpx.Client) -> None:
    owner, owner_h = person(client, private=True)
    fan, fan_h = person(client)
    _, stranger_h = person(client)
    r = client.post(f"/v1/users/{owner}:follow", json={}, headers=fan_h)
    assert r.json()["state"] == "FOLLOW_STATE_REQUESTED"
    assert client.get(f"/v1/users/{owner}/followers", headers=fan_h).status_code == 403
    pending = client.get("/v1/followRequests", headers=owner_h).json()
    assert [p["requesterId"] for p in pending["followRequests"]] == [fan]
    r = client.post(
        f"/v1/followRequests/{fan}:accept", json={"targetId": owner}, headers=stranger_h
    )
    assert r.status_code == 403, r.text
    assert (
        client.post(f"/v1/followRequests/{fan}:accept", json={}, headers=owner_h).status_code == 200
    )
    assert client.get(f"/v1/users/{owner}/followers", headers=fan_h).status_code == 200

    assert client.post(f"/v1/users/{fan}:block", json={}, headers=owner_h).status_code == 200
    assert client.get(f"/v1/users/{owner}", headers=fan_h).status_code == 404
    assert client.post(f"/v1/users/{owner}:follow", json={}, headers=fan_h).status_code == 404
    assert client.get(f"/v1/users/{owner}", headers=owner_h).json()["followerCount"] == "0"
    limited = client.get(f"/v1/users/{owner}").json()  # anonymous: the limited view
    assert limited["isLimitedView"] is True and "followerCount" not in limited
    assert client.post(f"/v1/users/{fan}:unblock", json={}, headers=owner_h).status_code == 200
    assert client.post(f"/v1/users/{fan}:mute", json={}, headers=owner_h).status_code == 200
    assert client.get(f"/v1/users/{fan}/relationship", headers=owner_h).json()["muting"] is True
    assert client.post(f"/v1/users/{fan}:unmute", json={}, headers=owner_h).status_code == 200
