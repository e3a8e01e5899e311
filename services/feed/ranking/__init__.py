"""The RANKED tab's scorer: an ensemble, per candidate, cheap enough for every session.

score = (FLOOR + ensemble) * recency * feedback, where

* ensemble = w_collab·collaborative + w_content·content + w_model·model, each
  component in [0, 1] (`features.py`); the weights are normalised to sum to 1,
  and without a model its weight is spread over the other two in proportion
* recency  = 0.5 ** (age_hours / half_life_hours) of the entry (a repost: its share time)
* feedback = `less_factor` for authors the viewer asked to see less of,
             `more_factor` for SHOW_MORE, 1 otherwise

then author diversity (no more than `max_consecutive` in a row by one author).
Candidates are the viewer's FOLLOWING entries plus out-of-network PUBLIC posts
(co-engagement, hashtag/author affinity, trending); the home feed falls back to
FOLLOWING when ranking raises or times out (`home.py`). RANKED sessions — candidates,
scoring and paging — are `ranking/session.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from socialmesh.post.v1 import post_pb2

from ..store import Feedback
from ..timelines import Entry, sort_key_ms
from . import features
from .features import Facts
from .model import RankerModel

#: Keeps a candidate with no signal at all (a brand new post) above zero.
FLOOR = 0.05


@dataclass(frozen=True)
class RankingConfig:
    half_life_hours: float = 12.0
    less_factor: float = 0.2
    more_factor: float = 2.0
    #: At most this many consecutive items by one author.
    max_consecutive: int = 2
    #: Ensemble weights (normalised to sum to 1).
    w_collab: float = 0.4
    w_content: float = 0.3
    w_model: float = 0.3
    #: Name logged with every served item (through its tracking token) when no
    #: experiment is configured.
    arm: str = "baseline-v1"


#: What an experiment arm may set (`experiments.py`).
TUNABLE = (
    "half_life_hours",
    "less_factor",
    "more_factor",
    "max_consecutive",
    "w_collab",
    "w_content",
    "w_model",
)


@dataclass(frozen=True)
class Candidate:
    entry: Entry
    source: str


@dataclass(frozen=True)
class Scored:
    entry: Entry
    score: float
    source: str = features.IN_NETWORK


def weights(config: RankingConfig, has_model: bool) -> tuple[float, float, float]:
    """(collab, content, model) summing to 1; no model: its share goes to the others."""
    c, t, m = (max(w, 0.0) for w in (config.w_collab, config.w_content, config.w_model))
    if not has_model:
        m = 0.0
    total = c + t + m
    if total <= 0:  # nothing configured (or only a model that is missing): equal shares
        return (0.5, 0.5, 0.0)
    return (c / total, t / total, m / total)


def score(
    entry: Entry,
    post: post_pb2.Post,
    facts: Facts,
    predicted: float | None,
    now_ms: int,
    feedback: Feedback,
    config: RankingConfig,
) -> float:
    w_c, w_t, w_m = weights(config, predicted is not None)
    ensemble = w_c * features.collaborative(facts) + w_t * features.content(facts)
    if predicted is not None:
        ensemble += w_m * predicted
    age_hours = max(now_ms - sort_key_ms(entry.sort_key), 0) / 3_600_000
    recency = 0.5 ** (age_hours / config.half_life_hours)
    factor = 1.0
    if post.author_id in feedback.less_authors:
        factor = config.less_factor
    elif post.author_id in feedback.more_authors:
        factor = config.more_factor
    return (FLOOR + ensemble) * recency * factor


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
    candidates: Sequence[Candidate],
    posts: Mapping[int, post_pb2.Post],
    facts: Mapping[int, Facts],
    now_ms: int,
    feedback: Feedback,
    config: RankingConfig,
    model: RankerModel | None,
) -> list[Scored]:
    """Scores the candidates the viewer may see (in `posts`), model inference in one batch."""
    kept = [c for c in candidates if c.entry.post_id in posts and c.entry.post_id in facts]
    predicted: list[float | None] = [None] * len(kept)
    if model is not None and kept:
        rows = features.matrix([facts[c.entry.post_id] for c in kept])
        predicted = list(model.predict(rows))
    scored = [
        Scored(
            c.entry,
            score(
                c.entry,
                posts[c.entry.post_id],
                facts[c.entry.post_id],
                p,
                now_ms,
                feedback,
                config,
            ),
            c.source,
        )
        for c, p in zip(kept, predicted, strict=True)
    ]
    scored.sort(key=lambda s: (-s.score, s.entry.member))
    return diversify(scored, config.max_consecutive)
