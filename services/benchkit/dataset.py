"""Graphs the benchmark runs on, and the Zipf sampler its workloads pick users with.

* `reed98()`: socfb-Reed98, the Facebook friendship network of Reed College
  (962 users, 18,812 undirected edges; the default graph of DeathStarBench's
  socialNetwork). A copy ships in `data/socfb-Reed98/` with its README and
  attribution (Network Data Repository, Rossi and Ahmed, AAAI 2015). Each
  undirected edge becomes a follow in both directions.
* `powerlaw(n)`: `socialmesh seed`'s generator (one celebrity, Zipf-like followees).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REED98_DIR = Path(__file__).resolve().parent / "data" / "socfb-Reed98"
REED98_EDGES = REED98_DIR / "socfb-Reed98.edges"


@dataclass(frozen=True)
class Graph:
    """Users are indexes 0..users-1; `follows` are directed (follower, followee) pairs."""

    name: str
    users: int
    undirected_edges: int
    follows: list[tuple[int, int]] = field(repr=False)
    source: str = ""

    def following(self) -> list[list[int]]:
        """For each user index, the indexes it follows."""
        out: list[list[int]] = [[] for _ in range(self.users)]
        for a, b in self.follows:
            out[a].append(b)
        return out


def load_edge_list(path: Path, name: str, source: str = "") -> Graph:
    """An `a b` per line edge list (0-based ids, `%`/`#` comments), undirected."""
    edges: set[tuple[int, int]] = set()
    ids: set[int] = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "%#":
            continue
        a, b = (int(x) for x in line.split()[:2])
        if a == b:
            continue
        ids.update((a, b))
        edges.add((min(a, b), max(a, b)))
    index = {uid: i for i, uid in enumerate(sorted(ids))}
    follows = [(index[a], index[b]) for a, b in sorted(edges)]
    follows += [(b, a) for a, b in follows]
    return Graph(name, len(index), len(edges), follows, source)


def reed98() -> Graph:
    return load_edge_list(
        REED98_EDGES,
        "socfb-Reed98",
        "Network Data Repository (Rossi and Ahmed, AAAI 2015), shipped in "
        "services/benchkit/data/socfb-Reed98/",
    )


def powerlaw(users: int, seed: int = 42) -> Graph:
    from services.seed import power_law_edges

    follows = power_law_edges(users, users * 5, max(users // 10, 1), random.Random(seed))
    return Graph(f"powerlaw-{users}", users, len(follows), follows, "socialmesh seed generator")


class Zipf:
    """Picks items with P(rank k) ∝ 1 / k**s; ranks are a seeded shuffle of the items,
    so the hot items are not simply the first ids."""

    def __init__(self, items: Sequence[int], s: float = 1.0, seed: int = 7) -> None:
        if not items:
            raise ValueError("Zipf needs at least one item")
        self.items = list(items)
        random.Random(seed).shuffle(self.items)
        self.s = s
        self._cumulative = list(
            itertools.accumulate(1.0 / (k**s) for k in range(1, len(self.items) + 1))
        )

    def sample(self, rng: random.Random) -> int:
        x = rng.random() * self._cumulative[-1]
        return self.items[min(bisect.bisect_left(self._cumulative, x), len(self.items) - 1)]

    def rank_of(self, item: int) -> int:
        """1-based popularity rank of an item (1 = hottest)."""
        return self.items.index(item) + 1
