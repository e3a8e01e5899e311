"""Payloads a screen can render (post service): every post and comment a read
returns carries its author's card as the viewer sees it (viewer state, no
counts it does not know), rich-text facets, and media without owner-only
fields; blocks hold on all of it."""

from __future__ import annotations

from google.protobuf import json_format
from socialmesh.graph.v1 import graph_pb2
from socialmesh.media.v1 import media_pb2, media_pb2_grpc
from socialmesh.post.v1 import post_pb2

from .conftest import Mesh
from .helpers import follow, publish, word
from .media_support import image_bytes, settled, upload


def _facets(message: post_pb2.Post | post_pb2.Comment) -> list[tuple[str, str, int, int]]:
    """(kind, value, byte_start, char_start) of each facet."""
    out = []
    for f in message.facets:
        kind = f.WhichOneof("feature")
        value = {
            "mention": f"{f.mention.user_id}:{f.mention.handle}",
            "link": f.link.uri,
            "tag": f.tag.tag,
        }[kind]
        out.append((kind, value, f.byte_start, f.char_start))
    return out


async def test_a_post_read_carries_its_author_s_card_with_the_viewer_state(
    posts, graph, make_person
):
    author, fan, stranger = await make_person(), await make_person(), await make_person()
    await follow(graph, fan, author)
    post = await publish(posts, author, "card please")

    seen = await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id), metadata=fan.md)
    assert seen.author.user_id == author.id and seen.author.handle == author.handle
    assert seen.author.is_following and not seen.author.followed_by
    # A card knows no counts, so it prints none (never "0"); no avatar, no "0" id.
    printed = json_format.MessageToDict(seen.author, always_print_fields_with_no_presence=True)
    for absent in ("followerCount", "followingCount", "postCount", "avatarMediaId"):
        assert absent not in printed

    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=author.id), metadata=stranger.md)
    anon = await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id))
    assert anon.author.handle == author.handle and not anon.author.is_following
    muted = await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id), metadata=stranger.md)
    assert muted.author.muting and not muted.author.is_following

    # The author's own answers (create, like) carry their own card too.
    assert post.author.user_id == author.id
    liked = await posts.LikePost(post_pb2.LikePostRequest(post_id=post.post_id), metadata=fan.md)
    assert liked.post.author.user_id == author.id and liked.post.author.is_following


async def test_every_post_list_side_loads_the_authors(posts, graph, make_person):
    author, viewer = await make_person(), await make_person()
    tag = word()
    post = await publish(posts, author, f"listed #{tag}")
    await posts.SavePost(post_pb2.SavePostRequest(post_id=post.post_id), metadata=viewer.md)

    timeline = await posts.ListUserPosts(
        post_pb2.ListUserPostsRequest(user_id=author.id), metadata=viewer.md
    )
    tagged = await posts.ListTagPosts(post_pb2.ListTagPostsRequest(tag=tag), metadata=viewer.md)
    found = await posts.SearchPosts(
        post_pb2.SearchPostsRequest(query=f"#{tag}"), metadata=viewer.md
    )
    saved = await posts.ListSavedPosts(post_pb2.ListSavedPostsRequest(), metadata=viewer.md)
    batch = await posts.BatchGetPosts(
        post_pb2.BatchGetPostsRequest(post_ids=[post.post_id]), metadata=viewer.md
    )
    for reply in (timeline, tagged, found, saved, batch):
        (shown,) = [p for p in reply.posts if p.post_id == post.post_id]
        assert shown.author.user_id == author.id and shown.author.handle == author.handle


async def test_comments_carry_their_authors_cards_and_blocks_hide_them(posts, graph, make_person):
    author, commenter, blocker = await make_person(), await make_person(), await make_person()
    post = await publish(posts, author, "talk to me")
    mine = await posts.CreateComment(
        post_pb2.CreateCommentRequest(
            post_id=post.post_id, comment=post_pb2.Comment(text=f"hi @{author.handle}")
        ),
        metadata=commenter.md,
    )
    assert mine.author.user_id == commenter.id and mine.author.handle == commenter.handle
    await posts.CreateComment(
        post_pb2.CreateCommentRequest(post_id=post.post_id, comment=post_pb2.Comment(text="x")),
        metadata=blocker.md,
    )
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=commenter.id), metadata=blocker.md)
    await posts.CreateComment(
        post_pb2.CreateCommentRequest(
            post_id=post.post_id, comment=post_pb2.Comment(text=f"cc @{blocker.handle}")
        ),
        metadata=author.md,
    )

    listed = await posts.ListComments(
        post_pb2.ListCommentsRequest(post_id=post.post_id), metadata=commenter.md
    )
    # The account that blocks the viewer is neither listed nor carded, nor a facet.
    assert [c.author.user_id for c in listed.comments] == [commenter.id, author.id]
    comment, cc = listed.comments
    assert _facets(comment) == [("mention", f"{author.id}:{author.handle}", 3, 3)]
    assert _facets(cc) == []
    for_author = await posts.ListComments(
        post_pb2.ListCommentsRequest(post_id=post.post_id), metadata=author.md
    )
    assert {c.author.user_id for c in for_author.comments} == {
        commenter.id,
        blocker.id,
        author.id,
    }
    assert _facets(for_author.comments[-1]) == [("mention", f"{blocker.id}:{blocker.handle}", 3, 3)]


async def test_facets_give_mentions_links_and_tags_with_byte_and_char_ranges(
    posts, graph, make_person
):
    author, bob, shy, reader = (
        await make_person(),
        await make_person(),
        await make_person(),
        await make_person(),
    )
    text = (
        f"héllo @{bob.handle.upper()} see https://x.example/a?b=1. #CamelTag "
        f"@{shy.handle} @nobody_{word()}"
    )
    post = await publish(posts, author, text)
    assert post.hashtags == ["cameltag"]

    def expected(handle_ids: dict[str, int]) -> list[tuple[str, str, int, int]]:
        out = []
        for kind, value, needle in (
            ("mention", bob.handle, f"@{bob.handle.upper()}"),
            ("link", "https://x.example/a?b=1", "https://x.example/a?b=1"),
            ("tag", "CamelTag", "#CamelTag"),
            ("mention", shy.handle, f"@{shy.handle}"),
        ):
            if kind == "mention":
                if value not in handle_ids:
                    continue
                value = f"{handle_ids[value]}:{value}"
            start = text.index(needle)
            out.append((kind, value, len(text[:start].encode()), start))
        return out

    seen = await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id), metadata=reader.md)
    assert _facets(seen) == expected({bob.handle: bob.id, shy.handle: shy.id})
    link = next(f for f in seen.facets if f.WhichOneof("feature") == "link")
    assert text.encode()[link.byte_start : link.byte_end].decode() == link.link.uri
    assert text[link.char_start : link.char_end] == link.link.uri

    # A mentioned account that blocks the viewer is no facet for them (plain text).
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=reader.id), metadata=shy.md)
    seen = await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id), metadata=reader.md)
    assert _facets(seen) == expected({bob.handle: bob.id})


async def test_only_the_owner_sees_the_uploaders_file_details(posts, make_person, mesh: Mesh):
    media = media_pb2_grpc.MediaServiceStub(mesh["media"].channel)
    author, viewer = await make_person(), await make_person()
    photo = await upload(
        media, author, image_bytes("PNG"), filename="secret-name.png", description="alt"
    )
    assert (await settled(media, author, photo.media_id)).state == media_pb2.MEDIA_STATE_READY
    post = await publish(posts, author, "", media_ids=[photo.media_id])
    (own,) = post.media
    assert own.filename == "secret-name.png" and own.sha256

    seen = await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id), metadata=viewer.md)
    (slim,) = seen.media
    assert slim.variants and slim.blurhash and slim.description == "alt"
    assert slim.width and slim.height
    assert not (slim.filename or slim.sha256 or slim.declared_content_type or slim.size_bytes)


async def test_reposts_appear_on_the_reposters_profile_with_who_and_when(posts, graph, make_person):
    writer, sharer, viewer, hidden = (
        await make_person(),
        await make_person(),
        await make_person(),
        await make_person(),
    )
    first = await publish(posts, sharer, "my own, first")
    theirs = await publish(posts, writer, "worth sharing")
    secret = await publish(posts, hidden, "from someone who blocks the viewer")
    await posts.SharePost(post_pb2.SharePostRequest(post_id=theirs.post_id), metadata=sharer.md)
    await posts.SharePost(post_pb2.SharePostRequest(post_id=secret.post_id), metadata=sharer.md)
    last = await publish(posts, sharer, "my own, last")
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=viewer.id), metadata=hidden.md)

    async def timeline(who, **fields) -> list[post_pb2.Post]:
        reply = await posts.ListUserPosts(
            post_pb2.ListUserPostsRequest(user_id=sharer.id, **fields), metadata=who.md
        )
        return list(reply.posts)

    shown = await timeline(viewer)
    assert [(p.post_id, p.HasField("repost")) for p in shown] == [
        (last.post_id, False),
        (theirs.post_id, True),  # the blocked author's post is left out for this viewer
        (first.post_id, False),
    ]
    repost = shown[1].repost
    assert repost.user_id == sharer.id and repost.user.handle == sharer.handle
    assert repost.create_time.seconds and shown[1].author.user_id == writer.id
    everyone = [p.post_id for p in await timeline(writer)]
    assert everyone == [last.post_id, secret.post_id, theirs.post_id, first.post_id]
    assert [p.post_id for p in await timeline(viewer, exclude_reposts=True)] == [
        last.post_id,
        first.post_id,
    ]

    # Pages of one entry each walk the same timeline.
    walked, token = [], ""
    while True:
        reply = await posts.ListUserPosts(
            post_pb2.ListUserPostsRequest(user_id=sharer.id, page_size=1, page_token=token),
            metadata=writer.md,
        )
        walked += [(p.post_id, p.HasField("repost")) for p in reply.posts]
        token = reply.next_page_token
        if not token:
            break
    assert [p for p, _ in walked] == everyone
