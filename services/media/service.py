"""Wires the media service into the kit's server bootstrap.

Who may call each RPC is the contract's `(socialmesh.api.v1.access)` method option
(proto/socialmesh/media/v1/media.proto); the kit's interceptor enforces it.
"""

from __future__ import annotations

from pathlib import Path

from socialmesh.media.v1 import media_pb2, media_pb2_grpc

from services.kit.server import ServiceSpec, servicer_spec

from .servicer import MediaServicer

SERVICE_NAME = media_pb2.DESCRIPTOR.services_by_name["MediaService"].full_name


def build_spec() -> ServiceSpec:
    return servicer_spec(
        name="media",
        grpc_service=SERVICE_NAME,
        servicer=MediaServicer,
        add_to_server=media_pb2_grpc.add_MediaServiceServicer_to_server,
        migrations_dir=Path(__file__).parent / "migrations",
    )
