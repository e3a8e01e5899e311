"""checkov scans k8s/ offline; every finding must be accepted, with a reason, in
k8s/checkov-baseline.yaml, and every accepted finding must still occur.

checkov lives in its own venv (`.venv/checkov`, made by `make install`): it pins
`packaging<24`, which pytest 9 cannot share. `CHECKOV` points at another binary.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
BASELINE = K8S / "checkov-baseline.yaml"


def checkov_binary() -> str:
    candidates = [os.environ.get("CHECKOV"), str(ROOT / ".venv" / "checkov" / "bin" / "checkov")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("checkov")
    if found is None:
        pytest.fail("checkov not installed: run `make install` (it makes .venv/checkov)")
    return found


@pytest.fixture(scope="module")
def findings() -> list[tuple[str, str]]:
    """(check id, resource id) of every failed check."""
    env = {
        **os.environ,
        # Offline: no guideline mapping from the platform, no external checks download.
        "BC_SKIP_MAPPING": "TRUE",
        "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false",
    }
    proc = subprocess.run(
        [
            checkov_binary(),
            "--directory",
            str(K8S),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--quiet",
            "--compact",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: some check failed
    report: Any = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    (kubernetes,) = [r for r in reports if r.get("check_type") == "kubernetes"]
    summary = kubernetes["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] >= 20, summary  # it really read the manifests
    return [(f["check_id"], f["resource"]) for f in kubernetes["results"]["failed_checks"]]


def baseline() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = yaml.safe_load(BASELINE.read_text())["accepted"]
    return entries


def test_every_accepted_finding_has_a_reason() -> None:
    for entry in baseline():
        assert entry["check"].startswith("CKV_K8S_"), entry
        assert entry["resources"], entry
        assert len(entry.get("reason", "").split()) >= 10, f"{entry['check']}: say why"


def accepted(check: str, resource: str) -> bool:
    return any(
        entry["check"] == check and any(fnmatch.fnmatch(resource, r) for r in entry["resources"])
        for entry in baseline()
    )


def test_no_finding_outside_the_baseline(findings: list[tuple[str, str]]) -> None:
    new = sorted({f for f in findings if not accepted(*f)})
    assert not new, "fix these or accept them in k8s/checkov-baseline.yaml:\n" + "\n".join(
        f"{check} {resource}" for check, resource in new
    )


def test_no_stale_baseline_entry(findings: list[tuple[str, str]]) -> None:
    for entry in baseline():
        for pattern in entry["resources"]:
            hits = [r for c, r in findings if c == entry["check"] and fnmatch.fnmatch(r, pattern)]
            assert hits, f"{entry['check']} {pattern} no longer fails: drop it from the baseline"


def test_fixed_findings_stay_fixed(findings: list[tuple[str, str]]) -> None:
    """What the November review found and the manifests now fix (ops review #17, #20)."""
    checks = {check for check, _ in findings}
    assert "CKV_K8S_38" not in checks  # service-account token automounted
    assert "CKV_K8S_14" not in checks  # image tag latest or blank
