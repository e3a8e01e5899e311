"""Wires the post service into the kit's server bootstrap.

Who may call each RPC is the contract's `(socialmesh.api.v1.access)` method option
(proto/socialmesh/post/v1/post.proto); the kit's interceptor enforces it.
"""

from __future__ import annotations

from pathlib import Path

from socialmesh.post.v1 import post_pb2, post_pb2_grpc

from services.kit.server import ServiceSpec, servicer_spec

from .servicer import PostServicer

SERVICE_NAME = post_pb2.DESCRIPTOR.services_by_name["PostService"].full_name


def build_spec() -> ServiceSpec:
    return servicer_spec(
        name="post",
        grpc_service=SERVICE_NAME,
        servicer=PostServicer,
        add_to_server=post_pb2_grpc.add_PostServiceServicer_to_server,
        migrations_dir=Path(__file__).parent / "migrations",
    )
