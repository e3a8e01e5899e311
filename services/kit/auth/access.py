"""Who may call a method: the `(socialmesh.api.v1.access)` option of its contract."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeAlias

from google.protobuf import descriptor_pool
from socialmesh.api.v1 import access_pb2

MethodAccess: TypeAlias = access_pb2.MethodAccess.ValueType
PUBLIC = access_pb2.METHOD_ACCESS_PUBLIC
SIGNED_IN = access_pb2.METHOD_ACCESS_UNSPECIFIED
INTERNAL = access_pb2.METHOD_ACCESS_INTERNAL


_access_by_path: dict[str, MethodAccess] = {}


def method_access(method_path: str) -> MethodAccess:
    """Who may call a gRPC method ("/pkg.Service/Method"), from its contract.

    Reads the `(socialmesh.api.v1.access)` option from the default descriptor
    pool, where a service's generated `_pb2` module registered itself. A method
    the pool does not know (yet) is SIGNED_IN, the strictest level a user passes.
    """
    known = _access_by_path.get(method_path)
    if known is not None:
        return known
    service_name, _, method_name = method_path.strip("/").partition("/")
    try:
        service = descriptor_pool.Default().FindServiceByName(service_name)
    except KeyError:
        return SIGNED_IN
    method = service.methods_by_name.get(method_name)
    if method is None:
        return SIGNED_IN
    access = method.GetOptions().Extensions[access_pb2.access]
    _access_by_path[method_path] = access
    return access


def service_methods_access(grpc_services: Iterable[str]) -> dict[str, MethodAccess]:
    """Access level of every method of the given (served) gRPC services, by path."""
    found: dict[str, MethodAccess] = {}
    for name in grpc_services:
        service = descriptor_pool.Default().FindServiceByName(name)
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            found[path] = method_access(path)
    return found
