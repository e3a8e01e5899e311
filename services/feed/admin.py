"""The feed's operator commands: `socialmesh train-ranker` and `socialmesh experiments report`.

Both read the feed schema through DATABASE_URL, else the embedded PostgreSQL of
a `socialmesh up` data dir (`--data-dir`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from services.kit.db import Database

from .ranking import experiments, learn
from .store import FeedStore

T = TypeVar("T")


def _with_database(data_dir: str, work: Callable[[Database], Awaitable[T]]) -> T:
    url = os.environ.get("DATABASE_URL", "")
    server: Any = None
    if not url:
        import pgserver

        # Shares the instance `socialmesh up` runs on this data dir, if any.
        server = pgserver.get_server(str(Path(data_dir).resolve() / "postgres"))
        url = server.get_uri()

    async def run() -> T:
        db = await Database.connect(url, attempts=3)
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(run())
    finally:
        if server is not None:
            server.cleanup()


def train_ranker(args: argparse.Namespace) -> int:
    since = datetime.now(UTC) - timedelta(days=args.days)
    try:
        path, meta = _with_database(
            args.data_dir,
            lambda db: learn.train(
                db,
                Path(args.out),
                since=since,
                estimator=args.estimator,
                min_rows=args.min_rows,
                min_positives=args.min_positives,
                page=args.page_size,
            ),
        )
    except learn.NotEnoughData as exc:
        print(f"socialmesh train-ranker: {exc}", file=sys.stderr)
        return 1
    print(f"model: {path} (now current)")
    print(
        f"rows: {meta['rows']} ({meta['positives']} engaged); "
        f"holdout AUC {meta['holdout_auc']:.3f} on {meta['holdout_rows']} rows"
    )
    print(
        f"inference: {meta['inference_ms_per_page']:.3f} ms median per page of "
        f"{meta['inference_page_size']} candidates ({meta['estimator']}, one batched call)"
    )
    return 0


def experiments_report(args: argparse.Namespace) -> int:
    if args.experiment:
        names = [args.experiment]
    else:
        try:
            names = [e.name for e in experiments.load(os.environ.get("FEED_EXPERIMENTS", ""))]
        except (OSError, experiments.ConfigError) as exc:
            print(f"socialmesh experiments report: {exc}", file=sys.stderr)
            return 2
        if not names:
            print(
                "socialmesh experiments report: no FEED_EXPERIMENTS configured; "
                "name one with --experiment",
                file=sys.stderr,
            )
            return 2
    for name in names:
        if not experiments.NAME.match(name):
            print(f"socialmesh experiments report: bad experiment name {name!r}", file=sys.stderr)
            return 2
    since = datetime.now(UTC) - timedelta(days=args.days)

    async def gather(db: Database) -> list[experiments.Report]:
        store = FeedStore(db)
        return [
            experiments.report(name, await store.experiment_counts(name, since)) for name in names
        ]

    for report in _with_database(args.data_dir, gather):
        print(experiments.format_report(report))
    return 0
