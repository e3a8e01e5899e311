"""Fuzzing the REST edge from its own OpenAPI document (schemathesis): no input is a 5xx.

Bounded and seeded so CI is repeatable: a few generated requests per operation, as an
anonymous client and as a signed-in one, checked for server errors only (a 400 for a
nonsense request is the right answer; a 500 never is).
"""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from .e2e_support import UpProcess, person

pytestmark = pytest.mark.e2e


def fuzz(stack: UpProcess, *headers: str) -> subprocess.CompletedProcess[str]:
    args = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{stack.edge}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "5",
        "--seed",
        "1",
        "--workers",
        "2",
        "--phases",
        "examples,fuzzing",
        "--request-timeout",
        "20",
    ]
    for header in headers:
        args += ["-H", header]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("signed_in", [False, True])
def test_no_generated_request_gets_a_server_error(
    stack: UpProcess, client: httpx.Client, signed_in: bool
) -> None:
    headers = [f"Authorization: {person(client)[1]['Authorization']}"] if signed_in else []
    result = fuzz(stack, *headers)
    summary = result.stdout[-4000:]
    assert "passed" in summary, summary
    assert result.returncode == 0, summary + result.stderr[-2000:]
