"""Editing a post (client review item 15: no post edit): the author's new text, the
hashtags and mentions read again, an `editTime` marker, and refusals for everyone else."""

from __future__ import annotations

import httpx
import pytest

from .e2e_support import person, register

pytestmark = pytest.mark.e2e


def test_the_author_edits_a_post_and_it_says_so(client: httpx.Client) -> None:
    _, headers = person(client)
    friend = register(client)
    r = client.post("/v1/posts", json={"text": "first #Draft"}, headers=headers)
    assert r.status_code == 200, r.text
    post = r.json()
    assert "editTime" not in post  # never edited: no marker
    r = client.patch(
        f"/v1/posts/{post['postId']}",
        params={"updateMask": "text"},
        json={"text": f"second #Final with @{friend['handle']}"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    edited = r.json()
    assert edited["text"] == f"second #Final with @{friend['handle']}"
    assert edited["hashtags"] == ["final"]
    assert edited["mentionIds"] == [friend["userId"]]
    assert edited["editTime"] >= post["createTime"]
    assert edited["createTime"] == post["createTime"]
    mention = [f for f in edited["facets"] if "mention" in str(f)]
    assert mention, edited["facets"]
    again = client.get(f"/v1/posts/{post['postId']}").json()
    assert again["text"] == edited["text"] and again["editTime"] == edited["editTime"]
    # The tag timeline follows the text.
    tagged = client.get("/v1/tags/final/posts").json()
    assert post["postId"] in [p["postId"] for p in tagged.get("posts", [])], tagged


def test_only_the_author_edits_and_only_the_text(client: httpx.Client) -> None:
    _, author_h = person(client)
    _, other_h = person(client)
    post = client.post("/v1/posts", json={"text": "mine"}, headers=author_h).json()
    path = f"/v1/posts/{post['postId']}"
    r = client.patch(path, params={"updateMask": "text"}, json={"text": "theirs"}, headers=other_h)
    assert r.status_code == 403, r.text
    assert r.json()["details"][-1]["reason"] == "NOT_OWNER"
    r = client.patch(path, params={"updateMask": "text"}, json={"text": "anon"})
    assert r.status_code == 401
    r = client.patch(
        path,
        params={"updateMask": "visibility"},
        json={"visibility": "VISIBILITY_FOLLOWERS"},
        headers=author_h,
    )
    assert r.status_code == 400 and "updateMask" in r.text, r.text
    r = client.patch(path, params={"updateMask": "text"}, json={"text": ""}, headers=author_h)
    assert r.status_code == 400, r.text
    assert client.get(path).json()["text"] == "mine"
