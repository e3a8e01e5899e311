"""Calls to the post, graph and user services, batched to their limits.

Service-credential reads (`anonymous_calls`: follower ids, authors' recent posts)
serve the write side; reads under the caller's own token (`hydrate`, `authors`,
`following`, `get_post`) let the peer drop whatever the caller may not see.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from google.protobuf import field_mask_pb2
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.post.v1 import post_pb2, post_pb2_grpc
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.auth import anonymous_calls
from services.kit.channels import peer_call

from .timelines import Entry, share_key, share_sort_key

#: ListFollowerIds: at most 10,000 per page (graph.proto).
FOLLOWER_PAGE = 10_000
#: BatchListAuthorPosts: 1 to 1,000 authors (post.proto).
AUTHOR_BATCH = 1000
#: BatchGetPosts / BatchGetUsers: at most 500 ids (post.proto, user.proto).
HYDRATE_BATCH = 500
#: How long a repost's sort key is remembered (for PostUnshared to find its entry).
SHARE_KEY_TTL_SECONDS = 30 * 86400
#: Posts a follow back-fills (and a rebuild takes per followed account).
BACKFILL_PER_AUTHOR = 20
#: A rebuild reads at most this many followed accounts (ListFollowing pages of 1,000).
REBUILD_MAX_FOLLOWING = 5000
#: What an author card carries (no counts: those cost extra calls).
AUTHOR_FIELDS = field_mask_pb2.FieldMask(
    paths=[
        "user_id",
        "handle",
        "display_name",
        "avatar_url",
        "is_private",
        "is_following",
        "followed_by",
        "requested",
        "muting",
        "blocking",
        "is_limited_view",
    ]
)


def chunks(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Peers:
    """The feed's view of post, graph and user (stubs on the servicer's channels)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        posts: post_pb2_grpc.PostServiceAsyncStub,
        graph: graph_pb2_grpc.GraphServiceAsyncStub,
        users: user_pb2_grpc.UserServiceAsyncStub,
    ) -> None:
        self._redis = redis
        self.posts = posts
        self.graph = graph
        self.users = users

    async def follower_pages(self, user_id: int) -> list[list[int]]:
        """Every follower id, in ListFollowerIds pages (service credential)."""
        pages: list[list[int]] = []
        token = ""
        while True:
            with anonymous_calls():
                async with peer_call("graph"):
                    reply = await self.graph.ListFollowerIds(
                        graph_pb2.ListFollowerIdsRequest(
                            user_id=user_id, page_size=FOLLOWER_PAGE, page_token=token
                        )
                    )
            pages.append(list(reply.follower_ids))
            token = reply.next_page_token
            if not token:
                return pages

    async def following(self, viewer: int) -> list[int]:
        """Up to REBUILD_MAX_FOLLOWING accounts the viewer follows (the viewer's token)."""
        followees: list[int] = []
        token = ""
        while len(followees) < REBUILD_MAX_FOLLOWING:
            async with peer_call("graph"):  # the viewer's own list, under the viewer's token
                reply = await self.graph.ListFollowing(
                    graph_pb2.ListFollowingRequest(user_id=viewer, page_size=1000, page_token=token)
                )
            followees.extend(edge.user_id for edge in reply.following)
            token = reply.next_page_token
            if not token:
                break
        return followees

    async def author_posts(
        self, author_ids: Sequence[int], *, since_days: int | None = None
    ) -> list[Entry]:
        """Recent posts and reposts of many authors (BatchListAuthorPosts, service credential).

        A repost keeps the sort key its `PostShared` gave it when that is still
        remembered (the same member, never a duplicate beside a fanned-out one);
        otherwise the share time gives one, remembered as `PostShared` does, so a
        later `PostUnshared` finds and removes the rebuilt entry too.
        """
        entries: list[Entry] = []
        reposts: list[post_pb2.RepostRef] = []
        for chunk in chunks(author_ids, AUTHOR_BATCH):
            request = post_pb2.BatchListAuthorPostsRequest(
                author_ids=chunk, per_author_limit=BACKFILL_PER_AUTHOR, include_reposts=True
            )
            if since_days is not None:
                request.since_time.FromDatetime(utcnow() - timedelta(days=since_days))
            with anonymous_calls():
                async with peer_call("post"):
                    reply = await self.posts.BatchListAuthorPosts(request)
            entries.extend(Entry.post(r.post_id, r.author_id) for r in reply.posts)
            reposts.extend(reply.reposts)
        if not reposts:
            return entries
        redis = self._redis
        keys = [share_key(r.post_id, r.sharer_id) for r in reposts]
        known = await redis.mget(keys)
        pipe = redis.pipeline(transaction=False)
        for r, key, remembered in zip(reposts, keys, known, strict=True):
            if remembered is not None:
                sort_key = int(remembered)
            else:
                sort_key = share_sort_key(r.share_time.ToDatetime(tzinfo=UTC), r.post_id)
                pipe.set(key, sort_key, ex=SHARE_KEY_TTL_SECONDS, nx=True)
            entries.append(Entry(sort_key, r.post_id, r.author_id, r.sharer_id))
        await pipe.execute()
        return entries

    async def hydrate(
        self, post_ids: Sequence[int], cards: dict[int, user_pb2.User] | None = None
    ) -> dict[int, post_pb2.Post]:
        """The posts as the caller may see them (their own token): invisible ones are absent.

        Given `cards`, their authors' cards come in the same call (post reads them
        where it decides visibility) and land there.
        """
        found: dict[int, post_pb2.Post] = {}
        wanted = list(dict.fromkeys(post_ids))
        for chunk in chunks(wanted, HYDRATE_BATCH):
            async with peer_call("post"):
                request = post_pb2.BatchGetPostsRequest(
                    post_ids=chunk, include_authors=cards is not None
                )
                reply = await self.posts.BatchGetPosts(request)
            found.update((p.post_id, p) for p in reply.posts)
            if cards is not None:
                cards.update((c.user_id, c) for c in reply.authors)
        return found

    async def authors(self, user_ids: Sequence[int]) -> list[user_pb2.User]:
        """Author cards (AUTHOR_FIELDS) as the caller may see them."""
        wanted = list(dict.fromkeys(user_ids))
        cards: list[user_pb2.User] = []
        for chunk in chunks(wanted, HYDRATE_BATCH):
            async with peer_call("user"):
                reply = await self.users.BatchGetUsers(
                    user_pb2.BatchGetUsersRequest(user_ids=chunk, read_mask=AUTHOR_FIELDS)
                )
            cards.extend(reply.users)
        return cards

    async def get_post(self, post_id: int) -> post_pb2.Post:
        """One post as the caller may see it: NOT_FOUND / PERMISSION_DENIED pass through."""
        async with peer_call("post"):
            return await self.posts.GetPost(post_pb2.GetPostRequest(post_id=post_id))

    async def suggested_accounts(
        self, viewer: int, max_results: int, candidate_ids: Sequence[int]
    ) -> graph_pb2.ListSuggestedAccountsResponse:
        """Graph's ranked suggestions (it applies follows, requests, mutes and blocks)."""
        async with peer_call("graph"):
            return await self.graph.ListSuggestedAccounts(
                graph_pb2.ListSuggestedAccountsRequest(
                    viewer_id=viewer, max_results=max_results, candidate_ids=candidate_ids
                )
            )
