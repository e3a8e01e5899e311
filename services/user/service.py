"""Wires the user service into the kit's server bootstrap.

Who may call each RPC is the contract's `(socialmesh.api.v1.access)` method option
(proto/socialmesh/user/v1/user.proto); the kit's interceptor enforces it.
"""

from __future__ import annotations

from pathlib import Path

from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.server import ServiceSpec, servicer_spec

from .servicer import UserServicer

SERVICE_NAME = user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name


def build_spec() -> ServiceSpec:
    return servicer_spec(
        name="user",
        grpc_service=SERVICE_NAME,
        servicer=UserServicer,
        add_to_server=user_pb2_grpc.add_UserServiceServicer_to_server,
        migrations_dir=Path(__file__).parent / "migrations",
    )
