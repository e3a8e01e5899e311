"""The RANKED tab's scorer: small, explainable, and cheap enough to run per page.

score = recency * engagement * affinity * feedback, where

* recency    = 0.5 ** (age_hours / half_life_hours)
* engagement = 1 + ln(1 + likes + 2·shares + comments)       (the post's counts)
* affinity   = 1 + ln(1 + the viewer's likes of this author)  (from PostLiked events)
* feedback   = `less_factor` for authors the viewer asked to see less of,
               `more_factor` for SHOW_MORE, 1 otherwise

Candidates are the viewer's FOLLOWING entries (timeline + read-time merge of
followed above-threshold accounts); the servicer falls back to FOLLOWING when
ranking raises or times out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from socialmesh.post.v1 import post_pb2

from .store import Feedback
from .timelines import Entry, sort_key_ms


@dataclass(frozen=True)
class RankingConfig:
    half_life_hours: float = 12.0
    less_factor: float = 0.2
    more_factor: float = 2.0
    #: At most this many consecutive items by one author.
    max_consecutive: int = 2
    #: Name logged with every served item (through its tracking token).
    arm: str = "baseline-v1"


@dataclass(frozen=True)
class Scored:
    entry: Entry
    score: float


def score(
    entry: Entry,
    post: post_pb2.Post,
    now_ms: int,
    affinity: Mapping[int, int],
    feedback: Feedback,
    config: RankingConfig,
) -> float:
    age_hours = max(now_ms - sort_key_ms(entry.sort_key), 0) / 3_600_000
    recency = 0.5 ** (age_hours / config.half_life_hours)
    engagement = 1.0 + math.log1p(post.like_count + 2 * post.share_count + post.comment_count)
    affine = 1.0 + math.log1p(max(affinity.get(post.author_id, 0), 0))
    factor = 1.0
    if post.author_id in feedback.less_authors:
        factor = config.less_factor
    elif post.author_id in feedback.more_authors:
        factor = config.more_factor
    return recency * engagement * affine * factor


def diversify(items: Sequence[Scored], max_consecutive: int) -> list[Scored]:
    """Best first, but never more than `max_consecutive` in a row by one author
    (an item that would break the rule waits for the next slot that allows it)."""
    pending = list(items)
    out: list[Scored] = []
    while pending:
        for i, item in enumerate(pending):
            run = out[-max_consecutive:]
            author = item.entry.author_id
            if len(run) < max_consecutive or any(r.entry.author_id != author for r in run):
                out.append(pending.pop(i))
                break
        else:  # only one author left: nothing to interleave with
            out.extend(pending)
            break
    return out


def rank(
    entries: Sequence[Entry],
    posts: Mapping[int, post_pb2.Post],
    now_ms: int,
    affinity: Mapping[int, int],
    feedback: Feedback,
    config: RankingConfig,
) -> list[Scored]:
    scored = [
        Scored(e, score(e, posts[e.post_id], now_ms, affinity, feedback, config))
        for e in entries
        if e.post_id in posts
    ]
    scored.sort(key=lambda s: (-s.score, s.entry.member))
    return diversify(scored, config.max_consecutive)
