"""How a post, a comment or a post reference looks on the wire, and to one viewer.

Pure conversions from store rows to protos: the author's card, the text's facets
(a mention is a facet only when the viewer may see that account) and the slim
media view for everyone but the author. Deciding *which* rows a viewer may see is
`visibility.py`'s job; this module only dresses the rows it is given.
"""

from __future__ import annotations

from socialmesh.media.v1 import media_pb2
from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import user_pb2

from services.kit.mediaview import slim
from services.kit.timestamps import from_datetime

from . import text as text_rules
from .store import CommentRow, PostRef, PostRow, RepostRef

#: Account cards as one viewer sees them, by user id (kit/cards.py viewer_card).
Cards = dict[int, user_pb2.User]


def post_proto(row: PostRow) -> post_pb2.Post:
    return post_pb2.Post(
        post_id=row.post_id,
        author_id=row.author_id,
        text=row.text,
        media_ids=row.media_ids,
        media=media_pb2.AttachMediaResponse.FromString(row.media).media if row.media else [],
        visibility=row.visibility,  # type: ignore[arg-type]
        hashtags=row.hashtags,
        mention_ids=row.mention_ids,
        like_count=row.like_count,
        comment_count=row.comment_count,
        share_count=row.share_count,
        is_liked=row.is_liked,
        is_saved=row.is_saved,
        is_shared=row.is_shared,
        create_time=from_datetime(row.created_at),
        edit_time=from_datetime(row.edit_time) if row.edit_time else None,
    )


def facets_proto(text: str, handles: dict[str, int]) -> list[post_pb2.Facet]:
    """The text's facets; a mention becomes one only when `handles` resolves it
    (an account the viewer may see), else it stays plain text."""
    spans = text_rules.spans(text)
    if not spans:
        return []
    offsets = text_rules.byte_offsets(text)
    facets = []
    for span in spans:
        facet = post_pb2.Facet(
            byte_start=offsets[span.start],
            byte_end=offsets[span.end],
            char_start=span.start,
            char_end=span.end,
        )
        if span.kind == "mention":
            user_id = handles.get(span.value)
            if user_id is None:
                continue
            facet.mention.CopyFrom(post_pb2.MentionFeature(user_id=user_id, handle=span.value))
        elif span.kind == "link":
            facet.link.uri = span.value
        else:
            facet.tag.tag = span.value
        facets.append(facet)
    return facets


def shown_post(row: PostRow, viewer: int | None, cards: Cards) -> post_pb2.Post:
    """A visible post as the viewer sees it: the author's card, facets (mentions
    only of accounts whose cards the viewer may see), and the slim media view
    unless the viewer is the author (owner-only fields cleared)."""
    post = post_proto(row)
    author = cards.get(row.author_id)
    if author is not None:
        post.author.CopyFrom(author)
    handles = {cards[m].handle.lower(): m for m in row.mention_ids if m in cards}
    post.facets.extend(facets_proto(row.text, handles))
    if viewer != row.author_id:
        slim(post.media)
    return post


def post_ref_proto(ref: PostRef) -> post_pb2.PostRef:
    return post_pb2.PostRef(
        post_id=ref.post_id,
        author_id=ref.author_id,
        visibility=ref.visibility,  # type: ignore[arg-type]
        create_time=from_datetime(ref.created_at),
    )


def repost_ref_proto(ref: RepostRef) -> post_pb2.RepostRef:
    return post_pb2.RepostRef(
        post_id=ref.post_id,
        author_id=ref.author_id,
        sharer_id=ref.sharer_id,
        share_time=from_datetime(ref.share_time),
    )


def comment_proto(row: CommentRow) -> post_pb2.Comment:
    return post_pb2.Comment(
        comment_id=row.comment_id,
        post_id=row.post_id,
        author_id=row.author_id,
        text=row.text,
        create_time=from_datetime(row.created_at),
    )
