"""Ranking features: one definition for serving and for `socialmesh train-ranker`.

Both sides ask the store's `facts` query (what the interaction log knew about a
viewer, a post and its author at a point in time: "now" when serving, the
impression's time when training) and turn each row into numbers here, with
`feature_vector` and `components`. Nothing else computes a feature, so the
model sees at serve time exactly what it was trained on (no train/serve skew).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.kit.ids import timestamp_ms

#: Candidate sources, as recorded (through the tracking token) with impressions.
IN_NETWORK = "in-network"
CO_ENGAGEMENT = "co-engagement"
AFFINITY = "affinity"
TRENDING = "trending"
SOURCES = (IN_NETWORK, CO_ENGAGEMENT, AFFINITY, TRENDING)

#: The learned model's inputs, in order (stored with every model file and checked on load).
FEATURE_NAMES = (
    "log_age_hours",
    "log_likes",
    "log_shares",
    "log_comments",
    "log_viewer_author",
    "tag_hits",
    "log_peer_engaged",
    "in_network",
)


@dataclass(frozen=True)
class Facts:
    """What the log knew about (viewer, post) at `at` (the store's `facts` row)."""

    post_id: int
    age_hours: float
    likes: int
    shares: int
    comments: int
    viewer_author: int
    tag_hits: int
    peer_engaged: int
    in_network: bool

    @classmethod
    def from_row(cls, post_id: int, at: datetime, row: Mapping[str, Any], source: str) -> Facts:
        age_ms = int(at.timestamp() * 1000) - timestamp_ms(post_id)
        return cls(
            post_id=post_id,
            age_hours=max(age_ms, 0) / 3_600_000,
            likes=max(int(row["likes"]), 0),
            shares=max(int(row["shares"]), 0),
            comments=max(int(row["comments"]), 0),
            viewer_author=int(row["viewer_author"]),
            tag_hits=int(row["tag_hits"]),
            peer_engaged=int(row["peer_engaged"]),
            # "": an impression from before sources were recorded (in-network only then)
            in_network=source in (IN_NETWORK, ""),
        )


def feature_vector(f: Facts) -> list[float]:
    """The model's input row (FEATURE_NAMES order)."""
    return [
        math.log1p(f.age_hours),
        math.log1p(f.likes),
        math.log1p(f.shares),
        math.log1p(f.comments),
        math.log1p(f.viewer_author),
        float(min(f.tag_hits, 10)),
        math.log1p(f.peer_engaged),
        1.0 if f.in_network else 0.0,
    ]


def _saturate(x: float, half: float) -> float:
    """0 at 0, 0.5 at `half`, towards 1: a fixed normalisation to [0, 1)."""
    return x / (x + half) if x > 0 else 0.0


#: Following an account counts as this many engagements with it (an explicit choice).
FOLLOW_WEIGHT = 2.0


def collaborative(f: Facts) -> float:
    """People like the viewer engaged with it, the viewer engages with its author, or
    follows its author (or a reposter)."""
    signal = f.peer_engaged + f.viewer_author + (FOLLOW_WEIGHT if f.in_network else 0.0)
    return _saturate(signal, 2.0)


def content(f: Facts) -> float:
    """The viewer's hashtags, and how much engagement the post drew overall."""
    popularity = math.log1p(f.likes + 2 * f.shares + f.comments)
    return 0.5 * _saturate(f.tag_hits, 1.0) + 0.5 * _saturate(popularity, 2.0)


def matrix(facts: Sequence[Facts]) -> list[list[float]]:
    return [feature_vector(f) for f in facts]
