"""Who may NOT use this session's new RPCs, on the services' own ports (the edge tests in
tests/test_e2e_post_edit.py and tests/test_e2e_event_source.py cover REST)."""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2
from socialmesh.chat.v1 import chat_pb2
from socialmesh.post.v1 import post_pb2

from .helpers import code_of


async def test_update_post_refuses_anyone_but_the_author(posts, make_person):
    author, other = await make_person(), await make_person()
    post = await posts.CreatePost(
        post_pb2.CreatePostRequest(post=post_pb2.Post(text="mine")), metadata=author.md
    )

    def edit(text: str) -> post_pb2.UpdatePostRequest:
        return post_pb2.UpdatePostRequest(
            post=post_pb2.Post(post_id=post.post_id, text=text),
            update_mask=field_mask_pb2.FieldMask(paths=["text"]),
        )

    assert await code_of(posts.UpdatePost(edit("anon"))) == grpc.StatusCode.UNAUTHENTICATED
    assert (
        await code_of(posts.UpdatePost(edit("theirs"), metadata=other.md))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    edited = await posts.UpdatePost(edit("still mine"), metadata=author.md)
    assert edited.text == "still mine" and edited.HasField("edit_time")


async def test_event_stream_tickets_need_a_signed_in_user(chat, make_person):
    request = chat_pb2.CreateEventStreamTicketRequest()
    assert await code_of(chat.CreateEventStreamTicket(request)) == grpc.StatusCode.UNAUTHENTICATED
    person = await make_person()
    first = await chat.CreateEventStreamTicket(request, metadata=person.md)
    second = await chat.CreateEventStreamTicket(request, metadata=person.md)
    assert first.ticket and first.ticket != second.ticket
    assert first.url == f"/v1/events/sse?ticket={first.ticket}"
