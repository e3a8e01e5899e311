"""Calls to the user service: whether an account exists and is private."""

from __future__ import annotations

from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.auth import anonymous_calls
from services.kit.channels import peer_call


class Accounts:
    """Accounts as anyone may see them: existence and privacy, never block-filtered."""

    def __init__(self, users: user_pb2_grpc.UserServiceAsyncStub) -> None:
        self.users = users

    async def get(self, user_id: int) -> user_pb2.User:
        """The account (NOT_FOUND when there is none), asked with this service's credential."""
        with anonymous_calls():
            async with peer_call("user"):
                return await self.users.GetUser(user_pb2.GetUserRequest(user_id=user_id))
