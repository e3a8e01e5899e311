"""The feed service end to end through Envoy's REST surface (a real `socialmesh up`)."""

from __future__ import annotations

import httpx
import pytest

from .e2e_support import eventually, field_violations, person

pytestmark = pytest.mark.e2e


def feed_ids(client: httpx.Client, headers: dict[str, str], kind: str = "FEED_KIND_FOLLOWING"):
    r = client.get("/v1/feed", params={"kind": kind, "pageSize": 50}, headers=headers)
    assert r.status_code == 200, r.text
    return [item["postId"] for item in r.json().get("items", [])]


def test_home_feed_over_rest(client: httpx.Client) -> None:
    idol, idol_h = person(client)
    _, fan_h = person(client)
    _, stranger_h = person(client)
    assert client.get("/v1/feed").status_code == 401  # anonymous
    assert client.post(f"/v1/users/{idol}:follow", json={}, headers=fan_h).status_code == 200
    cold = client.get("/v1/feed", params={"kind": "FEED_KIND_FOLLOWING"}, headers=fan_h).json()
    assert cold["partial"] is True
    client.get("/v1/feed", headers=stranger_h)  # the stranger is an active reader too

    public = client.post("/v1/posts", json={"text": "hello #e2efeed"}, headers=idol_h).json()
    friends = client.post(
        "/v1/posts",
        json={"text": "friends only", "visibility": "VISIBILITY_FOLLOWERS"},
        headers=idol_h,
    ).json()
    eventually(lambda: friends["postId"] in feed_ids(client, fan_h))

    page = client.get(
        "/v1/feed", params={"kind": "FEED_KIND_FOLLOWING", "pageSize": 1}, headers=fan_h
    ).json()
    assert page["kind"] == "FEED_KIND_FOLLOWING" and page["partial"] is False
    assert [i["postId"] for i in page["items"]] == [friends["postId"]]
    assert [p["postId"] for p in page["posts"]] == [friends["postId"]]
    assert page["authors"][0]["userId"] == idol and page["authors"][0]["handle"]
    assert "score" not in page["items"][0] and page["items"][0]["trackingToken"]
    older = client.get(
        "/v1/feed",
        params={"kind": "FEED_KIND_FOLLOWING", "pageSize": 1, "pageToken": page["nextPageToken"]},
        headers=fan_h,
    ).json()
    assert [i["postId"] for i in older["items"]] == [public["postId"]]

    ranked = client.get("/v1/feed", headers=fan_h).json()  # RANKED by default
    assert ranked["kind"] == "FEED_KIND_RANKED"
    # Suggested public posts from outside the network (trending, co-liked) may join;
    # the followed ones are exactly the two.
    followed = [i for i in ranked["items"] if i.get("reason") != "FEED_REASON_SUGGESTED"]
    assert {i["postId"] for i in followed} == {public["postId"], friends["postId"]}
    item = followed[0]
    r = client.post(
        "/v1/feed:recordImpressions",
        json={
            "impressions": [
                {
                    "impressionId": "e2e-1",
                    "trackingToken": item["trackingToken"],
                    "postId": item["postId"],
                    "surface": "SURFACE_HOME_RANKED",
                    "dwell": "1.5s",
                }
            ]
        },
        headers=fan_h,
    )
    assert r.status_code == 200 and r.json()["recordedCount"] == 1, r.text
    forged = client.post(
        "/v1/feed:recordImpressions",
        json={"impressions": [{"impressionId": "e2e-2", "trackingToken": "x", "postId": "1"}]},
        headers=fan_h,
    )
    assert forged.status_code == 400
    assert "impressions[0].trackingToken" in field_violations(forged.json())
    r = client.post(
        "/v1/feed:submitFeedback",
        json={"postId": public["postId"], "kind": "FEEDBACK_KIND_NOT_INTERESTED"},
        headers=fan_h,
    )
    assert r.status_code == 200 and r.json()["recorded"] is True, r.text
    assert public["postId"] not in feed_ids(client, fan_h)

    # The stranger never sees the followers-only post, in any tab.
    for kind in ("FEED_KIND_FOLLOWING", "FEED_KIND_RANKED"):
        assert friends["postId"] not in feed_ids(client, stranger_h, kind)
    assert (
        client.post(
            "/v1/feed:submitFeedback",
            json={"postId": friends["postId"], "kind": "FEEDBACK_KIND_NOT_INTERESTED"},
            headers=stranger_h,
        ).status_code
        == 403
    )

    tags = client.get("/v1/trends/tags", params={"window": "TREND_WINDOW_HOUR"})
    assert tags.status_code == 200, tags.text  # public: no token needed
    eventually(
        lambda: (
            "e2efeed"
            in [t["hashtag"] for t in client.get("/v1/trends/tags").json().get("tags", [])]
        )
    )
    assert client.get("/v1/trends/posts").status_code == 200


def test_suggested_users_over_rest(client: httpx.Client) -> None:
    me, me_h = person(client)
    friend, friend_h = person(client)
    their_friend, _ = person(client)
    assert client.get("/v1/users:suggested").status_code == 401  # needs an account
    assert client.post(f"/v1/users/{friend}:follow", json={}, headers=me_h).status_code == 200
    r = client.post(f"/v1/users/{their_friend}:follow", json={}, headers=friend_h)
    assert r.status_code == 200
    reply = client.get("/v1/users:suggested", params={"pageSize": 5}, headers=me_h)
    assert reply.status_code == 200, reply.text
    first = reply.json()["users"][0]
    assert first["user"]["userId"] == their_friend and first["mutualCount"] == "1"
    assert me not in [u["user"]["userId"] for u in reply.json()["users"]]
