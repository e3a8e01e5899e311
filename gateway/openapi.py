"""OpenAPI 3.1 description of the REST edge, generated from the contract (descriptor set).

The edge's REST surface *is* the `google.api.http` annotations as Envoy's transcoder
applies them, so this reads the same descriptor set the edge loads and writes what the
transcoder does: proto3 JSON (lowerCamelCase names, 64-bit integers as strings, enums
as names, well-known types in their JSON forms), path variables from the template,
the `body` field (or `*`) as the request body and every other field as a query
parameter (nested fields dotted), errors as `google.rpc.Status`. Internal methods are
left out: the edge refuses them. Server streams are Server-Sent Events.

`make gen` writes `gen/socialmesh/openapi.json` (package data, beside the descriptor
set); a test fails when it drifts from the protos, and the edge serves it at
`GET /openapi.json`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FieldDescriptor as FD

from .descriptors import Contract, load_contract

_INT64 = {FD.TYPE_INT64, FD.TYPE_UINT64, FD.TYPE_FIXED64, FD.TYPE_SINT64, FD.TYPE_SFIXED64}
_INT32 = {FD.TYPE_INT32, FD.TYPE_UINT32, FD.TYPE_FIXED32, FD.TYPE_SINT32, FD.TYPE_SFIXED32}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "comma-separated paths"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.Int32Value": {"type": "integer"},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64"},
    "google.protobuf.DoubleValue": {"type": "number"},
}
_VARIABLE = re.compile(r"\{([^}=]+)(=[^}]*)?\}")
ERROR_SCHEMA = "google.rpc.Status"


class _Schemas:
    """components/schemas, filled as messages and enums are referenced."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}

    def ref(self, name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def message(self, d: descriptor.Descriptor) -> dict[str, Any]:
        if d.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[d.full_name])
        if d.full_name not in self.schemas:
            self.schemas[d.full_name] = {}  # placeholder: recursion ends here
            properties = {f.json_name: self.field(f) for f in d.fields}
            schema: dict[str, Any] = {"type": "object", "properties": properties}
            self.schemas[d.full_name] = schema
        return self.ref(d.full_name)

    def enum(self, e: descriptor.EnumDescriptor) -> dict[str, Any]:
        if e.full_name not in self.schemas:
            self.schemas[e.full_name] = {"type": "string", "enum": [v.name for v in e.values]}
        return self.ref(e.full_name)

    def scalar(self, f: descriptor.FieldDescriptor) -> dict[str, Any]:
        if f.type in _INT64:
            return {"type": "string", "format": "int64"}
        if f.type in _INT32:
            return {"type": "integer", "format": "int32"}
        if f.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
            return {"type": "number"}
        if f.type == FD.TYPE_BOOL:
            return {"type": "boolean"}
        if f.type == FD.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if f.enum_type is not None:
            return self.enum(f.enum_type)
        if f.message_type is not None:
            return self.message(f.message_type)
        return {"type": "string"}

    def field(self, f: descriptor.FieldDescriptor) -> dict[str, Any]:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            value = f.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.scalar(value)}
        if f.is_repeated:
            return {"type": "array", "items": self.scalar(f)}
        return self.scalar(f)


def _http_rules(method: descriptor.MethodDescriptor) -> list[http_pb2.HttpRule]:
    # Re-parsed: a private pool's options do not resolve extensions by themselves.
    options = descriptor_pb2.MethodOptions.FromString(method.GetOptions().SerializeToString())
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    return [rule, *rule.additional_bindings]


def _verb_and_path(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    assert kind is not None and kind != "custom", "custom HTTP verbs are not used"
    return kind, getattr(rule, kind)


def _query_parameters(
    schemas: _Schemas, d: descriptor.Descriptor, skip: set[str], prefix: str = ""
) -> list[dict[str, Any]]:
    """Every leaf field not bound elsewhere, dotted for nested messages (transcoder rules)."""
    found = []
    for f in d.fields:
        path = f"{prefix}{f.json_name}"
        if f"{prefix}{f.name}" in skip or path in skip:
            continue
        nested = f.message_type
        if (
            nested is not None
            and nested.full_name not in _WELL_KNOWN
            and not f.is_repeated
            and not nested.GetOptions().map_entry
        ):
            found += _query_parameters(schemas, nested, skip, f"{path}.")
            continue
        if nested is not None and nested.GetOptions().map_entry:
            continue  # maps cannot be query parameters
        found.append({"name": path, "in": "query", "schema": schemas.field(f)})
    return found


def _operation(
    schemas: _Schemas, method: descriptor.MethodDescriptor, rule: http_pb2.HttpRule, public: bool
) -> tuple[str, str, dict[str, Any]]:
    verb, template = _verb_and_path(rule)
    path_fields = [m.group(1) for m in _VARIABLE.finditer(template)]
    # `{message.message_id}` binds a nested field; OpenAPI tools want plain names.
    names = {f: f.rsplit(".", 1)[-1] for f in path_fields}
    assert len(set(names.values())) == len(names), f"ambiguous path variables in {template}"
    openapi_path = _VARIABLE.sub(lambda m: "{" + names[m.group(1)] + "}", template)
    request = method.input_type
    op: dict[str, Any] = {
        "operationId": f"{method.containing_service.name}_{method.name}",
        "tags": [method.containing_service.name],
        "summary": method.name,
        "parameters": [
            {
                "name": names[p],
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": f"binds `{p}`",
            }
            for p in path_fields
        ],
    }
    bound = set(path_fields)
    if rule.body == "*":
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.message(request)}},
        }
        bound |= {f.name for f in request.fields}
    elif rule.body:
        body_field = request.fields_by_name[rule.body]
        if body_field.message_type is not None and (
            body_field.message_type.full_name == "google.api.HttpBody"
        ):
            content = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
        else:
            content = {"application/json": {"schema": schemas.field(body_field)}}
        op["requestBody"] = {"required": True, "content": content}
        bound.add(rule.body)
    op["parameters"] += _query_parameters(schemas, request, bound)
    output = method.output_type
    if method.server_streaming:
        ok = {"text/event-stream": {"schema": schemas.message(output)}}
        description = "Server-Sent Events: one `data:` line of JSON per message"
    elif output.full_name == "google.api.HttpBody":
        ok = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
        description = "The raw bytes"
    else:
        ok = {"application/json": {"schema": schemas.message(output)}}
        description = "OK"
    error = {"application/json": {"schema": schemas.ref(ERROR_SCHEMA)}}
    op["responses"] = {
        "200": {"description": description, "content": ok},
        "default": {"description": "A google.rpc.Status (with details)", "content": error},
    }
    op["security"] = [{}, {"bearer": []}] if public else [{"bearer": []}]
    return openapi_path, verb, op


def build(contract: Contract, title: str = "socialmesh REST API") -> dict[str, Any]:
    schemas = _Schemas()
    from google.rpc import status_pb2

    schemas.message(status_pb2.Status.DESCRIPTOR)
    pool = descriptor_pool.DescriptorPool()
    for f in contract.files.file:
        pool.Add(f)
    paths: dict[str, dict[str, Any]] = {}
    for service_name in sorted(contract.service_names()):
        infos = {m.name: m for m in contract.methods(service_name)}
        service = pool.FindServiceByName(service_name)
        for method in service.methods:
            info = infos[method.name]
            if info.internal:
                continue
            for rule in _http_rules(method):
                path, verb, op = _operation(schemas, method, rule, info.public)
                paths.setdefault(path, {})[verb] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "v1",
            "description": "Generated from proto/ (google.api.http annotations) by "
            "gateway/openapi.py; the edge transcodes these routes to gRPC.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def render(descriptor_set: Path) -> str:
    return json.dumps(build(load_contract(descriptor_set)), indent=1, sort_keys=False) + "\n"
