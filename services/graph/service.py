"""Wires the graph service into the kit's server bootstrap.

Who may call each RPC is the contract's `(socialmesh.api.v1.access)` method option
(proto/socialmesh/graph/v1/graph.proto); the kit's interceptor enforces it.
"""

from __future__ import annotations

from pathlib import Path

from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc

from services.kit.server import ServiceSpec, servicer_spec

from .servicer import GraphServicer

SERVICE_NAME = graph_pb2.DESCRIPTOR.services_by_name["GraphService"].full_name


def build_spec() -> ServiceSpec:
    return servicer_spec(
        name="graph",
        grpc_service=SERVICE_NAME,
        servicer=GraphServicer,
        add_to_server=graph_pb2_grpc.add_GraphServiceServicer_to_server,
        migrations_dir=Path(__file__).parent / "migrations",
    )
