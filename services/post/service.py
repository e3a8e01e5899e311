"""Wires the post service into the kit's server bootstrap."""

from __future__ import annotations

from pathlib import Path

from socialmesh.post.v1 import post_pb2, post_pb2_grpc

from services.kit.server import ServiceSpec, public, servicer_spec

from .servicer import PostServicer

SERVICE_NAME = post_pb2.DESCRIPTOR.services_by_name["PostService"].full_name
#: Reading public posts needs no account; everything else does.
PUBLIC_METHODS = public(
    SERVICE_NAME, "GetPost", "BatchGetPosts", "ListUserPosts", "ListComments", "BatchGetPostCounts"
)


def build_spec() -> ServiceSpec:
    return servicer_spec(
        name="post",
        grpc_service=SERVICE_NAME,
        servicer=PostServicer,
        add_to_server=post_pb2_grpc.add_PostServiceServicer_to_server,
        public_methods=PUBLIC_METHODS,
        migrations_dir=Path(__file__).parent / "migrations",
    )
