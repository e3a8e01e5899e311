"""Who to follow (ListSuggestedUsers): shared interests from the interaction log,
ranked and filtered by graph, shown as the caller may see the accounts."""

from __future__ import annotations

from socialmesh.feed.v1 import feed_pb2
from socialmesh.graph.v1 import graph_pb2

from .peers import Peers
from .store import FeedStore

#: Shared-interest candidates handed to graph (ListSuggestedAccounts.candidate_ids: 200).
SUGGEST_CANDIDATES = 200


def suggestion_reason(account: graph_pb2.SuggestedAccount) -> feed_pb2.SuggestionReason.ValueType:
    if account.mutual_count:
        return feed_pb2.SUGGESTION_REASON_FOLLOWED_BY_FOLLOWING
    if account.from_candidates:
        return feed_pb2.SUGGESTION_REASON_SHARED_INTERESTS
    return feed_pb2.SUGGESTION_REASON_POPULAR


class Suggestions:
    def __init__(self, store: FeedStore, peers: Peers) -> None:
        self._store = store
        self._peers = peers

    async def for_viewer(self, viewer: int, size: int) -> list[feed_pb2.SuggestedUser]:
        # Shared interests from the interaction log; graph applies the exclusions
        # (followed, requested, muted, blocked either way) and ranks them.
        interests = await self._store.co_engaged_accounts(viewer, SUGGEST_CANDIDATES)
        # A little extra: hydration drops accounts the caller may not see.
        reply = await self._peers.suggested_accounts(viewer, size + 10, interests)
        accounts = reply.accounts
        cards = {u.user_id: u for u in await self._peers.authors([a.user_id for a in accounts])}
        for account in accounts:
            card = cards.get(account.user_id)
            if card is not None and not card.is_limited_view:
                # Graph counted them for the ranking: the card shows the real number
                # (never a made-up "0"), except where the profile would not.
                card.follower_count = account.follower_count
        return [
            feed_pb2.SuggestedUser(
                user=cards[a.user_id], mutual_count=a.mutual_count, reason=suggestion_reason(a)
            )
            for a in accounts
            if a.user_id in cards
        ][:size]
