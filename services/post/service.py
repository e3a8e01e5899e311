"""Wires the post service into the kit's server bootstrap."""

from __future__ import annotations

from pathlib import Path

import grpc
from socialmesh.post.v1 import post_pb2, post_pb2_grpc

from services.kit.server import Runtime, ServiceSpec

from .servicer import PostServicer

SERVICE_NAME = post_pb2.DESCRIPTOR.services_by_name["PostService"].full_name
#: Reading public posts needs no account; everything else does.
PUBLIC_METHODS = frozenset(
    f"/{SERVICE_NAME}/{m}"
    for m in ("GetPost", "BatchGetPosts", "ListUserPosts", "ListComments", "BatchGetPostCounts")
)


def build_spec() -> ServiceSpec:
    holder: dict[str, PostServicer] = {}

    def register(server: grpc.aio.Server, runtime: Runtime) -> None:
        holder["servicer"] = PostServicer(runtime)
        post_pb2_grpc.add_PostServiceServicer_to_server(holder["servicer"], server)

    async def on_ready(runtime: Runtime) -> None:
        await holder["servicer"].on_ready()

    async def on_stop(runtime: Runtime) -> None:
        await holder["servicer"].on_stop()

    return ServiceSpec(
        name="post",
        schema="post",
        migrations_dir=Path(__file__).parent / "migrations",
        grpc_services=(SERVICE_NAME,),
        public_methods=PUBLIC_METHODS,
        register=register,
        on_ready=on_ready,
        on_stop=on_stop,
    )
