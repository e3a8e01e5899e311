"""The feed service's tunables, read once from the environment (`FeedConfig.from_env`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from . import ranking
from .ranking import experiments

#: FEED_MODEL_DIR's default, and `socialmesh train-ranker --out`'s.
DEFAULT_MODEL_DIR = ".socialmesh/models/feed"


def ranking_config(weights: str) -> ranking.RankingConfig:
    """FEED_RANK_WEIGHTS: `collab,content,model`, e.g. `0.4,0.3,0.3`."""
    parts = [float(p) for p in weights.split(",")]
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0:
        raise ValueError("FEED_RANK_WEIGHTS: three non-negative numbers, e.g. 0.4,0.3,0.3")
    return ranking.RankingConfig(w_collab=parts[0], w_content=parts[1], w_model=parts[2])


@dataclass(frozen=True)
class FeedConfig:
    """Tunables (environment): FEED_FANOUT_THRESHOLD, FEED_ACTIVE_DAYS, FEED_RANK_TIMEOUT_MS,
    FEED_RANK_WEIGHTS, FEED_MODEL_DIR, FEED_EXPERIMENTS.

    Frozen: a change (tests, operators) replaces the servicer's `config`, and its
    jobs read it through the servicer, so all of them see one value.
    """

    #: Accounts with at least this many followers are merged at read time, not fanned out.
    fanout_threshold: int = 10_000
    #: Fan out only to followers who read their feed within this many days.
    active_days: int = 7
    #: RANKED falls back to FOLLOWING when scoring takes longer.
    rank_timeout_seconds: float = 0.5
    ranking: ranking.RankingConfig = field(default_factory=ranking.RankingConfig)
    #: Where `socialmesh train-ranker` writes models (empty: no model).
    model_dir: str = DEFAULT_MODEL_DIR
    experiments: tuple[experiments.Experiment, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FeedConfig:
        return cls(
            fanout_threshold=int(env.get("FEED_FANOUT_THRESHOLD", "10000")),
            active_days=int(env.get("FEED_ACTIVE_DAYS", "7")),
            rank_timeout_seconds=int(env.get("FEED_RANK_TIMEOUT_MS", "500")) / 1000,
            ranking=ranking_config(env.get("FEED_RANK_WEIGHTS", "0.4,0.3,0.3")),
            model_dir=env.get("FEED_MODEL_DIR", DEFAULT_MODEL_DIR),
            experiments=tuple(experiments.load(env.get("FEED_EXPERIMENTS", ""))),
        )

    @property
    def active_seconds(self) -> int:
        return self.active_days * 86400
