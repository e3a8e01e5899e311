"""Post tunables, from the environment (twelve-factor, like every kit setting)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.kit.search import ANONYMOUS_SEARCHES_PER_MINUTE


@dataclass(frozen=True)
class PostConfig:
    """SEARCH_ANONYMOUS_PER_MINUTE (shared with user's search: kit/search.py); the
    write budgets are the contract's (post.proto) and not read from the environment."""

    #: Posts (and edits) an author may write per minute.
    posts_per_minute: int = 30
    #: Comments an account may write per minute.
    comments_per_minute: int = 60
    #: Anonymous searches per client address per minute.
    anonymous_searches_per_minute: int = ANONYMOUS_SEARCHES_PER_MINUTE

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PostConfig:
        searches = int(env.get("SEARCH_ANONYMOUS_PER_MINUTE", str(ANONYMOUS_SEARCHES_PER_MINUTE)))
        if searches < 1:
            raise SystemExit("SEARCH_ANONYMOUS_PER_MINUTE must be a positive number")
        return cls(anonymous_searches_per_minute=searches)
