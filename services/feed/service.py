"""Wires the feed service into the kit's server bootstrap.

Who may call each RPC is the contract's `(socialmesh.api.v1.access)` method option
(proto/socialmesh/feed/v1/feed.proto); the kit's interceptor enforces it.
"""

from __future__ import annotations

from pathlib import Path

from socialmesh.feed.v1 import feed_pb2, feed_pb2_grpc

from services.kit.server import ServiceSpec, servicer_spec

from .servicer import FeedServicer

SERVICE_NAME = feed_pb2.DESCRIPTOR.services_by_name["FeedService"].full_name


def build_spec() -> ServiceSpec:
    return servicer_spec(
        name="feed",
        grpc_service=SERVICE_NAME,
        servicer=FeedServicer,
        add_to_server=feed_pb2_grpc.add_FeedServiceServicer_to_server,
        migrations_dir=Path(__file__).parent / "migrations",
    )
