"""RANKED experiments: arms in config, assignment by hashing, per-arm reports.

`FEED_EXPERIMENTS` is a path to a JSON file, or the JSON itself (a value that
starts with `{`):

    {"experiments": [
       {"name": "ensemble-weights",
        "arms": [{"name": "control", "weight": 50},
                 {"name": "model-heavy", "weight": 50,
                  "params": {"w_collab": 0.2, "w_content": 0.2, "w_model": 0.6}}]}]}

Names are `[A-Za-z0-9_-]{1,40}`; weights are positive numbers (relative); params
are `ranking.TUNABLE` fields, applied over the service's defaults (several
experiments' params apply in the order listed). A user's arm is
`sha256("<experiment>:<user id>")` mapped onto the cumulative weights: the same
arm on every page, instance and restart, and independent between experiments.

The served arm string is `<experiment>=<arm>[;...]`; it rides in each item's
tracking token into `feed.impressions.arm`, and every served RANKED page adds
one `feed.exposures` row per experiment. `socialmesh experiments report`
joins impressions with the interaction log (an impression is "engaged" if the
viewer liked, shared or commented on the post within a day after it).
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

from . import TUNABLE, RankingConfig

NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class Arm:
    name: str
    weight: float
    params: Mapping[str, float]


@dataclass(frozen=True)
class Experiment:
    name: str
    arms: tuple[Arm, ...]
    #: Upper bounds of each arm's share of [0, 1).
    cumulative: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        total = sum(a.weight for a in self.arms)
        bounds, acc = [], 0.0
        for arm in self.arms:
            acc += arm.weight / total
            bounds.append(acc)
        object.__setattr__(self, "cumulative", tuple(bounds))

    def assign(self, user_id: int) -> Arm:
        """The user's arm: deterministic, proportional to the weights."""
        digest = hashlib.sha256(f"{self.name}:{user_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
        return self.arms[min(bisect.bisect_right(self.cumulative, point), len(self.arms) - 1)]


class ConfigError(ValueError):
    pass


def parse(data: Any) -> list[Experiment]:
    if not isinstance(data, dict) or not isinstance(data.get("experiments"), list):
        raise ConfigError('FEED_EXPERIMENTS: expected {"experiments": [...]}')
    out: list[Experiment] = []
    for i, raw in enumerate(data["experiments"]):
        at = f"experiments[{i}]"
        name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"{at}.name: 1 to 40 of A-Z a-z 0-9 _ -")
        if name in {e.name for e in out}:
            raise ConfigError(f"{at}.name: {name} is defined twice")
        arms: list[Arm] = []
        for j, rarm in enumerate(raw.get("arms") or []):
            where = f"{at}.arms[{j}]"
            arm_name = rarm.get("name") if isinstance(rarm, dict) else None
            if not isinstance(arm_name, str) or not NAME.match(arm_name):
                raise ConfigError(f"{where}.name: 1 to 40 of A-Z a-z 0-9 _ -")
            weight = rarm.get("weight", 1)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
                raise ConfigError(f"{where}.weight: a positive number")
            params = rarm.get("params") or {}
            if not isinstance(params, dict):
                raise ConfigError(f"{where}.params: an object")
            for key, value in params.items():
                if key not in TUNABLE:
                    raise ConfigError(f"{where}.params.{key}: not one of {', '.join(TUNABLE)}")
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ConfigError(f"{where}.params.{key}: a non-negative number")
            arms.append(Arm(arm_name, float(weight), dict(params)))
        if len(arms) < 2 or len({a.name for a in arms}) != len(arms):
            raise ConfigError(f"{at}.arms: at least two, with distinct names")
        out.append(Experiment(name, tuple(arms)))
    return out


def load(value: str) -> list[Experiment]:
    """FEED_EXPERIMENTS: inline JSON, a JSON file's path, or empty (no experiments)."""
    value = value.strip()
    if not value:
        return []
    text = value if value.startswith("{") else Path(value).read_text()
    try:
        return parse(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"FEED_EXPERIMENTS: not JSON ({exc})") from exc


@dataclass(frozen=True)
class Assignment:
    """A viewer's arms and the ranking configuration they make."""

    arms: tuple[tuple[str, str], ...]
    config: RankingConfig

    @property
    def label(self) -> str:
        return ";".join(f"{e}={a}" for e, a in self.arms) or self.config.arm


def assign(experiments: Sequence[Experiment], user_id: int, base: RankingConfig) -> Assignment:
    config = base
    arms = []
    for experiment in experiments:
        arm = experiment.assign(user_id)
        arms.append((experiment.name, arm.name))
        if arm.params:
            typed = {
                k: int(v) if k == "max_consecutive" else float(v) for k, v in arm.params.items()
            }
            config = dataclasses.replace(config, **typed)  # type: ignore[arg-type]
    return Assignment(tuple(arms), config)


# -- the report -------------------------------------------------------------------


@dataclass(frozen=True)
class ArmStats:
    arm: str
    users: int
    impressions: int
    engaged: int
    ctr: float
    ci_low: float
    ci_high: float
    #: Two-sided p-value of this arm's CTR against the first (control) arm; None for it.
    p_vs_control: float | None


@dataclass(frozen=True)
class Report:
    experiment: str
    arms: list[ArmStats]
    #: Chi-squared test of independence of arm and engagement over every arm.
    chi2: float | None
    p_value: float | None


def report(experiment: str, counts: Sequence[Mapping[str, Any]]) -> Report:
    """Per arm CTR with 95 % Wilson intervals (scipy binomtest), each arm against the
    first by a two-proportion test (chi-squared on the 2x2 table, no continuity
    correction: the pooled z-test), and a chi-squared test over all arms."""
    rows = [c for c in counts if c["arm"] is not None]
    arms: list[ArmStats] = []
    control = rows[0] if rows else None
    for row in rows:
        n, k = int(row["impressions"]), int(row["engaged"])
        ctr, low, high = (math.nan,) * 3
        if n > 0:
            ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            ctr, low, high = k / n, float(ci.low), float(ci.high)
        p = None
        if control is not None and row is not control:
            p = _two_proportion_p(control, row)
        arms.append(ArmStats(str(row["arm"]), int(row["users"]), n, k, ctr, low, high, p))
    chi2 = p_all = None
    table = [[int(r["engaged"]), int(r["impressions"]) - int(r["engaged"])] for r in rows]
    table = [t for t in table if sum(t) > 0]
    if len(table) >= 2 and all(sum(col) > 0 for col in zip(*table, strict=True)):
        result = stats.chi2_contingency(table, correction=False)
        chi2, p_all = float(result.statistic), float(result.pvalue)
    return Report(experiment, arms, chi2, p_all)


def _two_proportion_p(a: Mapping[str, Any], b: Mapping[str, Any]) -> float | None:
    table = [
        [int(a["engaged"]), int(a["impressions"]) - int(a["engaged"])],
        [int(b["engaged"]), int(b["impressions"]) - int(b["engaged"])],
    ]
    if any(sum(r) == 0 for r in table) or any(sum(c) == 0 for c in zip(*table, strict=True)):
        return None
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def format_report(r: Report) -> str:
    def num(x: float | None, spec: str = ".4f") -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    head = ("arm", "users", "impressions", "engaged", "CTR", "95% CI", "p vs control")
    body = [
        (
            a.arm,
            str(a.users),
            str(a.impressions),
            str(a.engaged),
            num(a.ctr),
            f"[{num(a.ci_low)}, {num(a.ci_high)}]",
            num(a.p_vs_control, ".3g"),
        )
        for a in r.arms
    ]
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = [f"experiment {r.experiment}"]
    for row in [head, *body]:
        cells = (cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        lines.append("  ".join(cells).rstrip())
    if r.p_value is not None:
        lines.append(f"chi-squared over all arms: {r.chi2:.3f}, p = {r.p_value:.3g}")
    else:
        lines.append("chi-squared over all arms: not enough data")
    return "\n".join(lines)
