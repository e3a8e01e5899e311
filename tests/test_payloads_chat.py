"""Chat answers side-load what an inbox and a notification list render:
members' cards on conversations, actors' cards and the post on notifications;
ids that mean "none" are absent, never "0"; blocks hold on every card."""

from __future__ import annotations

from google.protobuf import json_format
from socialmesh.chat.v1 import chat_pb2
from socialmesh.graph.v1 import graph_pb2
from socialmesh.media.v1 import media_pb2, media_pb2_grpc
from socialmesh.post.v1 import post_pb2

from .chat_support import direct, group, send
from .helpers import eventually, follow, like, publish
from .media_support import image_bytes, settled, upload


def _printed(message) -> dict:
    """As the edge prints it (always_print_primitive_fields)."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


async def test_conversations_carry_their_members_cards(chat, graph, make_person):
    me, friend, other = await make_person(), await make_person(), await make_person()
    await follow(graph, me, friend)
    await follow(graph, friend, me)
    dm = await direct(chat, me, friend)
    cards = {m.user_id: m.user for m in dm.members}
    assert cards[friend.id].handle == friend.handle
    assert cards[friend.id].is_following and cards[friend.id].followed_by
    assert cards[me.id].handle == me.handle

    room = await group(chat, me, friend, other)
    first = await send(chat, me, room.conversation_id, "hello")
    assert "replyToMessageId" not in _printed(first)  # not a reply: absent, not "0"

    # A member who blocks me keeps their seat but shows me no card.
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=me.id), metadata=other.md)
    inbox = await chat.ListConversations(chat_pb2.ListConversationsRequest(), metadata=me.md)
    listed = {c.conversation_id: c for c in inbox.conversations}
    assert {dm.conversation_id, room.conversation_id} <= set(listed)
    members = {m.user_id: m for m in listed[room.conversation_id].members}
    assert set(members) == {me.id, friend.id, other.id}
    assert members[friend.id].user.handle == friend.handle
    assert not members[other.id].HasField("user")
    got = await chat.GetConversation(
        chat_pb2.GetConversationRequest(conversation_id=room.conversation_id), metadata=friend.md
    )
    assert {m.user_id for m in got.members if m.HasField("user")} == {me.id, friend.id, other.id}


async def test_notifications_carry_actor_cards_and_the_post(chat, posts, graph, make_person):
    author, fan, hater = await make_person(), await make_person(), await make_person()
    post = await publish(posts, author, "like me")
    await like(posts, fan, post)
    await like(posts, hater, post)
    await follow(graph, fan, author)

    async def listed() -> list[chat_pb2.Notification]:
        reply = await chat.ListNotifications(
            chat_pb2.ListNotificationsRequest(), metadata=author.md
        )
        return list(reply.notifications)

    async def arrived() -> bool:
        types = {n.type: n for n in await listed()}
        likes = types.get(chat_pb2.NOTIFICATION_TYPE_LIKE)
        return (
            likes is not None
            and likes.actor_count == 2
            and chat_pb2.NOTIFICATION_TYPE_FOLLOW in types
        )

    await eventually(arrived)
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=author.id), metadata=hater.md)
    by_type = {n.type: n for n in await listed()}
    likes = by_type[chat_pb2.NOTIFICATION_TYPE_LIKE]
    assert set(likes.sample_actor_ids) == {fan.id, hater.id}
    # The actor who blocks the reader has no card; the other one has theirs.
    assert [a.user_id for a in likes.sample_actors] == [fan.id]
    assert likes.sample_actors[0].handle == fan.handle and likes.sample_actors[0].followed_by
    assert likes.post.post_id == post.post_id and likes.post.text == "like me"
    assert likes.post.author.user_id == author.id
    assert "commentId" not in _printed(likes)

    followed = by_type[chat_pb2.NOTIFICATION_TYPE_FOLLOW]
    printed = _printed(followed)
    assert "postId" not in printed and "commentId" not in printed and "post" not in printed
    assert [a.handle for a in followed.sample_actors] == [fan.handle]


async def test_the_mention_notification_shows_the_post(chat, posts, make_person):
    author, bob = await make_person(), await make_person()
    post = await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(text=f"hey @{bob.handle} look")),
        metadata=author.md,
    )

    async def mention() -> chat_pb2.Notification | None:
        reply = await chat.ListNotifications(
            chat_pb2.ListNotificationsRequest(types=[chat_pb2.NOTIFICATION_TYPE_MENTION]),
            metadata=bob.md,
        )
        return reply.notifications[0] if reply.notifications else None

    async def arrived() -> bool:
        return await mention() is not None

    await eventually(arrived)
    found = await mention()
    assert found is not None
    assert found.snippet == f"hey @{bob.handle} look"
    assert found.post.post_id == post.post_id
    assert [f.mention.user_id for f in found.post.facets] == [bob.id]
    assert found.sample_actors[0].user_id == author.id


async def test_reactions_say_which_are_mine(chat, make_person):
    me, friend = await make_person(), await make_person()
    room = await group(chat, me, friend)
    message = await send(chat, friend, room.conversation_id, "react to this")
    for who, emoji in ((me, "👍"), (friend, "👍"), (friend, "🎉")):
        answer = await chat.AddReaction(
            chat_pb2.AddReactionRequest(
                conversation_id=room.conversation_id, message_id=message.message_id, emoji=emoji
            ),
            metadata=who.md,
        )
    # The answer to the reactor is theirs.
    assert {(r.emoji, r.count, r.reacted_by_me) for r in answer.reactions} == {
        ("👍", 2, True),
        ("🎉", 1, True),
    }
    for who, mine in ((me, {"👍"}), (friend, {"👍", "🎉"})):
        page = await chat.ListMessages(
            chat_pb2.ListMessagesRequest(conversation_id=room.conversation_id), metadata=who.md
        )
        (listed,) = [m for m in page.messages if m.message_id == message.message_id]
        assert {r.emoji for r in listed.reactions if r.reacted_by_me} == mine
        assert listed.sender.user_id == friend.id and listed.sender.handle == friend.handle


async def test_message_media_is_the_slim_view(chat, make_person, mesh):
    media = media_pb2_grpc.MediaServiceStub(mesh["media"].channel)
    me, friend = await make_person(), await make_person()
    room = await group(chat, me, friend)
    photo = await upload(media, me, image_bytes("PNG"), filename="holiday-raw.png")
    assert (await settled(media, me, photo.media_id)).state == media_pb2.MEDIA_STATE_READY
    await chat.SendMessage(
        chat_pb2.SendMessageRequest(
            conversation_id=room.conversation_id,
            message=chat_pb2.Message(media_ids=[photo.media_id]),
        ),
        metadata=me.md,
    )
    page = await chat.ListMessages(
        chat_pb2.ListMessagesRequest(conversation_id=room.conversation_id), metadata=friend.md
    )
    (shown,) = [m for m in page.messages if m.media]
    (medium,) = shown.media
    assert medium.variants and medium.blurhash and medium.width
    assert not (medium.filename or medium.sha256 or medium.declared_content_type)
