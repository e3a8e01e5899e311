"""`socialmesh train-ranker`: the engagement model from impressions and the interaction log.

Rows are the first impression of each (viewer, post) in the window; the label
is whether the viewer liked, shared or commented on the post within a day
after it was shown; the features are what the log knew at the moment of the
impression, through the same `store.facts` query and `features.feature_vector`
the service uses when it serves (no train/serve skew).

The estimator is a standardised logistic regression (scikit-learn): the
features are few, dense and already log-scaled, it trains in well under a
second on a laptop, it gives calibrated probabilities (the ensemble adds them
to other [0, 1] components), its coefficients can be read off, and a page's
batched inference is a matrix product (0.5 ms for 500 candidates measured,
docs/feed.md), far inside FEED_RANK_TIMEOUT_MS. `--estimator hgb`
(HistGradientBoostingClassifier) learns interactions (recency x popularity)
once there is enough data; about 2 ms per 500 candidates.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from services.kit.db import Database

from ..store import FeedStore
from . import model as model_files
from .features import FEATURE_NAMES, Facts, feature_vector

#: At most this many impressions per training run.
MAX_ROWS = 200_000
#: The facts query runs over this many impressions at a time.
FACTS_BATCH = 2000


class NotEnoughData(Exception):
    pass


@dataclass
class TrainingSet:
    x: np.ndarray[Any, np.dtype[np.float64]]
    y: np.ndarray[Any, np.dtype[np.int64]]

    @property
    def positives(self) -> int:
        return int(self.y.sum())


async def training_set(store: FeedStore, since: datetime, limit: int = MAX_ROWS) -> TrainingSet:
    """Impressions since `since`, featurised as of their own time, with their labels."""
    rows = await store.training_impressions(since, limit)
    x: list[list[float]] = []
    y: list[int] = []
    for start in range(0, len(rows), FACTS_BATCH):
        chunk = rows[start : start + FACTS_BATCH]
        facts = await store.facts(
            [r["viewer_id"] for r in chunk],
            [r["post_id"] for r in chunk],
            [r["author_id"] for r in chunk],
            [r["at"] for r in chunk],
        )
        for r, f in zip(chunk, facts, strict=True):
            x.append(feature_vector(Facts.from_row(r["post_id"], r["at"], f, r["source"])))
            y.append(1 if r["engaged"] else 0)
    return TrainingSet(
        np.asarray(x, dtype=np.float64).reshape(-1, len(FEATURE_NAMES)),
        np.asarray(y, dtype=np.int64),
    )


def make_estimator(kind: str) -> Any:
    if kind == "hgb":
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=0)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


@dataclass
class Trained:
    estimator: Any
    metadata: dict[str, Any]


def fit(
    data: TrainingSet,
    *,
    estimator: str = "logistic",
    min_rows: int = 200,
    min_positives: int = 20,
    holdout: float = 0.2,
) -> Trained:
    """Fits on (1 - holdout) of the rows, reports AUC on the rest, then refits on all."""
    rows, positives = len(data.y), data.positives
    negatives = rows - positives
    if rows < min_rows or positives < min_positives or negatives < min_positives:
        raise NotEnoughData(
            f"not enough data to train: {rows} impressions ({positives} engaged, "
            f"{negatives} not); need at least {min_rows} impressions and {min_positives} "
            "of each label. Serve RANKED for longer (impressions come from clients' "
            "RecordImpressions), or lower --min-rows/--min-positives for a trial."
        )
    x_train, x_test, y_train, y_test = train_test_split(
        data.x, data.y, test_size=holdout, stratify=data.y, random_state=0
    )
    probe = make_estimator(estimator).fit(x_train, y_train)
    auc = float(roc_auc_score(y_test, probe.predict_proba(x_test)[:, 1]))
    final = make_estimator(estimator).fit(data.x, data.y)
    return Trained(
        final,
        {
            "estimator": estimator,
            "rows": rows,
            "positives": positives,
            "holdout_rows": len(y_test),
            "holdout_auc": round(auc, 4),
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "features": list(FEATURE_NAMES),
        },
    )


def inference_ms(estimator: Any, x: np.ndarray[Any, Any], page: int, repeats: int = 200) -> float:
    """Median milliseconds of one batched predict_proba over `page` candidates."""
    rng = np.random.default_rng(0)
    batch = x[rng.integers(0, len(x), size=page)] if len(x) else np.zeros((page, x.shape[1]))
    estimator.predict_proba(batch)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        estimator.predict_proba(batch)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def train(
    db: Database,
    out_dir: Path,
    *,
    since: datetime,
    estimator: str = "logistic",
    min_rows: int = 200,
    min_positives: int = 20,
    page: int = 500,
) -> tuple[Path, dict[str, Any]]:
    """Builds the set, fits, measures inference per page, writes a versioned model file."""
    data = await training_set(FeedStore(db), since)
    trained = fit(data, estimator=estimator, min_rows=min_rows, min_positives=min_positives)
    trained.metadata["inference_ms_per_page"] = round(
        inference_ms(trained.estimator, data.x, page), 4
    )
    trained.metadata["inference_page_size"] = page
    path = model_files.save(out_dir, trained.estimator, trained.metadata)
    return path, trained.metadata
