"""The contracts: generated code matches proto/, buf lint and buf breaking pass."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "node_modules" / ".bin" / "buf"


def _tree(directory: Path) -> set[str]:
    return {
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    """`make gen` would change nothing: gen/ is committed and must not drift."""
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(tmp_path)], check=True
    )
    committed = ROOT / "gen"
    assert _tree(tmp_path) == _tree(committed), "files differ: run `make gen` and commit gen/"
    differing = [
        rel
        for rel in sorted(_tree(tmp_path))
        if not filecmp.cmp(tmp_path / rel, committed / rel, shallow=False)
    ]
    assert not differing, f"stale generated files (run `make gen`): {differing}"


def test_buf_lint_passes() -> None:
    result = subprocess.run([str(BUF), "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_against_released_contracts(tmp_path: Path) -> None:
    """Image against image, as `make breaking` does (same vendored files on both sides)."""
    current = tmp_path / "current.binpb"
    subprocess.run([str(BUF), "build", "-o", str(current)], cwd=ROOT, check=True)
    result = subprocess.run(
        [str(BUF), "breaking", str(current), "--against", "proto/released.binpb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_client_rpc_has_an_http_rule() -> None:
    """REST is the client API: a method without a google.api.http rule must say that it is
    not for clients, with `option (socialmesh.api.v1.access) = METHOD_ACCESS_INTERNAL` (the
    edge refuses those). Bidirectional streams cannot be transcoded: native gRPC only."""
    from google.api import annotations_pb2
    from google.protobuf import descriptor_pb2
    from socialmesh.api.v1 import access_pb2

    fds = descriptor_pb2.FileDescriptorSet.FromString(
        (ROOT / "gen" / "socialmesh" / "socialmesh.binpb").read_bytes()
    )
    missing = []
    internal = []
    for file in fds.file:
        if not file.package.startswith("socialmesh."):
            continue
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                access = method.options.Extensions[access_pb2.access]
                if access == access_pb2.METHOD_ACCESS_INTERNAL:
                    internal.append(f"{service.name}.{method.name}")
                    continue
                if method.client_streaming and method.server_streaming:
                    continue
                if not rule.WhichOneof("pattern"):
                    missing.append(f"{service.name}.{method.name}")
    assert not missing, (
        f"RPCs without google.api.http that are not METHOD_ACCESS_INTERNAL: {missing}"
    )
    # The option is really read (not left in unknown fields): these are internal today.
    assert {"GraphService.BatchGetFollowCounts", "PostService.BatchGetPostCounts"} <= set(internal)
