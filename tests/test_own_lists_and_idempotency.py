"""Week-one settings lists (blocked and muted accounts) and idempotent creates
(`request_id` on comments, the `Idempotency-Key` header on every create), over real
gRPC against real PostgreSQL and Redis."""

from __future__ import annotations

import grpc
import pytest
from socialmesh.chat.v1 import chat_pb2
from socialmesh.graph.v1 import graph_pb2
from socialmesh.post.v1 import post_pb2

from .helpers import publish, reason_of, violations


async def test_blocked_and_muted_accounts_are_listed_newest_first_with_cards(graph, make_person):
    me, *others = [await make_person() for _ in range(4)]
    for other in others:
        await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=other.id), metadata=me.md)
    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=others[0].id), metadata=me.md)

    first = await graph.ListBlockedUsers(
        graph_pb2.ListBlockedUsersRequest(page_size=2), metadata=me.md
    )
    assert [a.user_id for a in first.blocked_users] == [others[2].id, others[1].id]
    card = first.blocked_users[0].user
    assert card.handle == others[2].handle and card.blocking
    assert first.blocked_users[0].HasField("create_time") and first.next_page_token
    rest = await graph.ListBlockedUsers(
        graph_pb2.ListBlockedUsersRequest(page_size=2, page_token=first.next_page_token),
        metadata=me.md,
    )
    assert [a.user_id for a in rest.blocked_users] == [others[0].id]
    assert rest.next_page_token == ""

    muted = await graph.ListMutedUsers(graph_pb2.ListMutedUsersRequest(), metadata=me.md)
    assert [a.user_id for a in muted.muted_users] == [others[0].id]
    assert muted.muted_users[0].user.muting

    # Only ever the caller's own lists: another account sees its own (empty) list, a
    # token of one list does not page another, and nobody lists anonymously.
    theirs = await graph.ListBlockedUsers(
        graph_pb2.ListBlockedUsersRequest(), metadata=others[0].md
    )
    assert list(theirs.blocked_users) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.ListBlockedUsers(
            graph_pb2.ListBlockedUsersRequest(page_token=first.next_page_token),
            metadata=others[0].md,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pageToken" in violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.ListMutedUsers(
            graph_pb2.ListMutedUsersRequest(page_token=first.next_page_token), metadata=me.md
        )
    assert "pageToken" in violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await graph.ListBlockedUsers(graph_pb2.ListBlockedUsersRequest())
    assert reason_of(err.value) == "TOKEN_MISSING"

    await graph.UnblockUser(graph_pb2.UnblockUserRequest(user_id=others[1].id), metadata=me.md)
    after = await graph.ListBlockedUsers(graph_pb2.ListBlockedUsersRequest(), metadata=me.md)
    assert [a.user_id for a in after.blocked_users] == [others[2].id, others[0].id]


async def test_a_retried_comment_is_stored_once(posts, make_person):
    author, fan = await make_person(), await make_person()
    post = await publish(posts, author, "comment on me")
    request = post_pb2.CreateCommentRequest(
        post_id=post.post_id, comment=post_pb2.Comment(text="first!"), request_id="c-1"
    )
    first = await posts.CreateComment(request, metadata=fan.md)
    again = await posts.CreateComment(request, metadata=fan.md)
    assert again.comment_id == first.comment_id
    # The header works as the key too, and a new key is a new comment.
    by_header = post_pb2.CreateCommentRequest(
        post_id=post.post_id, comment=post_pb2.Comment(text="second")
    )
    keyed = [*fan.md, ("idempotency-key", "c-2")]
    second = await posts.CreateComment(by_header, metadata=keyed)
    assert (await posts.CreateComment(by_header, metadata=keyed)).comment_id == second.comment_id
    assert second.comment_id != first.comment_id
    listed = await posts.ListComments(
        post_pb2.ListCommentsRequest(post_id=post.post_id), metadata=fan.md
    )
    assert [c.comment_id for c in listed.comments] == [first.comment_id, second.comment_id]
    reread = await posts.GetPost(post_pb2.GetPostRequest(post_id=post.post_id), metadata=fan.md)
    assert reread.comment_count == 2
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await posts.CreateComment(
            post_pb2.CreateCommentRequest(
                post_id=post.post_id, comment=post_pb2.Comment(text="x"), request_id="r" * 65
            ),
            metadata=fan.md,
        )
    assert "requestId" in violations(err.value)


async def test_the_idempotency_key_header_dedupes_posts_and_messages(posts, chat, make_person):
    alice, bob = await make_person(), await make_person()
    keyed = [*alice.md, ("idempotency-key", "post-key-1")]
    request = post_pb2.CreatePostRequest(post=post_pb2.Post(text="only once"))
    first = await posts.CreatePost(request, metadata=keyed)
    assert (await posts.CreatePost(request, metadata=keyed)).post_id == first.post_id
    # A request_id in the request wins over the header.
    explicit = post_pb2.CreatePostRequest(post=post_pb2.Post(text="explicit"), request_id="own")
    other = await posts.CreatePost(explicit, metadata=keyed)
    assert other.post_id != first.post_id

    conversation = await chat.CreateConversation(
        chat_pb2.CreateConversationRequest(
            conversation=chat_pb2.Conversation(
                type=chat_pb2.CONVERSATION_TYPE_DIRECT, member_ids=[bob.id]
            )
        ),
        metadata=alice.md,
    )
    send = chat_pb2.SendMessageRequest(
        conversation_id=conversation.conversation_id, message=chat_pb2.Message(text="hi")
    )
    message_key = [*alice.md, ("idempotency-key", "msg-key-1")]
    sent = await chat.SendMessage(send, metadata=message_key)
    resent = await chat.SendMessage(send, metadata=message_key)
    assert resent.message_id == sent.message_id
