"""Wires the user service into the kit's server bootstrap."""

from __future__ import annotations

from pathlib import Path

import grpc
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.auth import TokenSigner, load_private_key
from services.kit.server import Runtime, ServiceSpec

from .servicer import UserServicer

SERVICE_NAME = user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name
PUBLIC_METHODS = frozenset(
    f"/{SERVICE_NAME}/{m}"
    for m in ("CreateUser", "Login", "RefreshToken", "GetUser", "BatchGetUsers", "LookupUsers")
)


def build_spec() -> ServiceSpec:
    holder: dict[str, UserServicer] = {}

    def register(server: grpc.aio.Server, runtime: Runtime) -> None:
        servicer = UserServicer(runtime)
        holder["servicer"] = servicer
        user_pb2_grpc.add_UserServiceServicer_to_server(servicer, server)

    async def on_ready(runtime: Runtime) -> None:
        s = runtime.settings
        if not s.jwt_private_key_file:
            raise SystemExit("the user service needs JWT_PRIVATE_KEY_FILE (the signing key)")
        signer = TokenSigner(
            load_private_key(s.jwt_private_key_file),
            issuer=s.jwt_issuer,
            audience=s.jwt_audience,
            ttl=s.access_token_ttl_seconds,
        )
        await holder["servicer"].on_ready(signer)

    async def on_stop(runtime: Runtime) -> None:
        await holder["servicer"].on_stop()

    return ServiceSpec(
        name="user",
        schema="user",
        migrations_dir=Path(__file__).parent / "migrations",
        grpc_services=(SERVICE_NAME,),
        public_methods=PUBLIC_METHODS,
        register=register,
        on_ready=on_ready,
        on_stop=on_stop,
    )
