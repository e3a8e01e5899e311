"""Payloads a screen can render, as a client sees them through the edge (which
prints every non-optional scalar): cards and facets are in the JSON, and what a
view does not know is absent rather than "0"."""

from __future__ import annotations

import httpx
import pytest

from .e2e_support import person

pytestmark = pytest.mark.e2e


def test_cards_viewer_state_and_absent_fields_over_rest(client: httpx.Client) -> None:
    carol, carol_h = person(client, private=True)
    fan, fan_h = person(client)
    stranger, stranger_h = person(client)
    handle = client.get(f"/v1/users/{fan}", headers=fan_h).json()["handle"]

    assert client.post(f"/v1/users/{carol}:follow", json={}, headers=fan_h).status_code == 200
    accepted = client.post(f"/v1/followRequests/{fan}:accept", json={}, headers=carol_h)
    assert accepted.status_code == 200, accepted.text
    assert client.post(f"/v1/users/{carol}:follow", json={}, headers=stranger_h).status_code == 200

    # Carol's limited view: no counts it may not show, no "0"; the pending request shows.
    limited = client.get(f"/v1/users/{carol}", headers=stranger_h).json()
    assert limited["isLimitedView"] is True and limited["requested"] is True
    for absent in ("followerCount", "followingCount", "postCount", "avatarMediaId"):
        assert absent not in limited, absent
    full = client.get(f"/v1/users/{carol}", headers=fan_h).json()
    assert full["followerCount"] == "1" and full["isFollowing"] is True
    back = client.get(f"/v1/users/{fan}", headers=carol_h).json()
    assert back["followedBy"] is True and back["isFollowing"] is False

    # A post read carries its author's card and its facets.
    text = f"hi @{handle} see https://x.example/p #CamelCase"
    post = client.post("/v1/posts", json={"text": text}, headers=stranger_h).json()
    read = client.get(f"/v1/posts/{post['postId']}").json()  # anonymous
    assert read["author"]["userId"] == stranger and "followerCount" not in read["author"]
    kinds = {next(k for k in ("mention", "link", "tag") if k in f): f for f in read["facets"]}
    assert kinds["mention"]["mention"] == {"userId": fan, "handle": handle}
    assert kinds["link"]["link"]["uri"] == "https://x.example/p"
    assert kinds["tag"]["tag"]["tag"] == "CamelCase"
    assert kinds["tag"]["charStart"] == text.index("#CamelCase")

    # Follow lists side-load the accounts.
    followers = client.get(f"/v1/users/{carol}/followers", headers=fan_h).json()
    (edge,) = followers["followers"]
    assert edge["userId"] == fan and edge["user"]["handle"] == handle
