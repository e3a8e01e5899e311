"""Generates gen/ from proto/: messages, gRPC stubs, .pyi stubs, descriptor set.

Used by `make gen` and by the drift test (which generates into a temp dir and
compares), so both always run the very same protoc invocation.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
# Envoy renders google.rpc.Status details (BadRequest, RetryInfo, ...) into JSON
# error bodies only if their types are in the descriptor set it loads.
ERROR_DETAIL_PROTOS = ("google/rpc/status.proto", "google/rpc/error_details.proto")


def generate(out: Path) -> None:
    # protoc finds the mypy plugins next to this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    well_known = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    includes = [
        f"-I{ROOT / 'proto'}",
        f"-I{ROOT / 'third_party' / 'googleapis'}",
        f"-I{well_known}",
    ]
    shutil.rmtree(out / "socialmesh", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    code_args = [
        "protoc",
        *includes,
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    if protoc.main(code_args) != 0:
        raise SystemExit("protoc failed generating code")
    descriptor_args = [
        "protoc",
        *includes,
        "--include_imports",
        "--include_source_info",
        f"--descriptor_set_out={out / 'socialmesh' / 'socialmesh.binpb'}",
        *protos,
        *ERROR_DETAIL_PROTOS,
    ]
    if protoc.main(descriptor_args) != 0:
        raise SystemExit("protoc failed building the descriptor set")
    for directory in [
        out / "socialmesh",
        *(p for p in (out / "socialmesh").rglob("*") if p.is_dir()),
    ]:
        (directory / "__init__.py").touch()
    # The REST edge's OpenAPI document, from the same descriptor set (gateway/openapi.py).
    sys.path.insert(0, str(ROOT))
    from gateway.openapi import render

    (out / "socialmesh" / "openapi.json").write_text(
        render(out / "socialmesh" / "socialmesh.binpb")
    )


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "gen")
