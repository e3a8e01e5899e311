"""OpenAPI 3.1 description of the REST edge, generated from the contract (descriptor set).

The edge's REST surface *is* the `google.api.http` annotations as Envoy's transcoder
applies them, so this reads the same descriptor set the edge loads and writes what the
transcoder does: proto3 JSON (lowerCamelCase names, 64-bit integers as strings, enums
as names, well-known types in their JSON forms), path variables from the template,
the `body` field (or `*`) as the request body and every other field as a query
parameter (nested fields dotted), errors as `google.rpc.Status`. Internal methods are
left out: the edge refuses them. Server streams are Server-Sent Events.

Written for client generators (openapi-python-client, openapi-typescript):

* descriptions are the protos' leading comments (services, methods, messages, fields,
  enum values; the descriptor set is built with `--include_source_info`);
* a message has two forms where it is used both ways. The response form (`Post`)
  lists as `required` what the transcoder always prints (it prints every field without
  presence: scalars, enums, repeated and map fields; `optional`, oneof and message
  fields may be absent) and marks OUTPUT_ONLY and IDENTIFIER fields `readOnly`. The
  request form (`PostInput`) leaves those fields out - the server ignores them, and a
  field bound by the path must not be in the body at all (the edge rejects the
  collision) - and lists the REQUIRED fields as `required`;
* enums are open: a field is `anyOf: [{$ref: Enum}, {type: string}]`, so a client
  built today keeps working when the server adds a value;
* path parameters carry the JSON (camelCase) name of the field they bind: `{userId}`;
* public methods (METHOD_ACCESS_PUBLIC: a token is optional) have `security: []`
  (`x-socialmesh-access: public`), everything else `[{bearer: []}]`;
* every operation has the `google.rpc.Status` error as its `default` response, with
  the detail types the services attach (ErrorInfo, BadRequest, RetryInfo, ...).

This module builds the paths and operations and assembles the document; the schemas
are gateway/openapi_schemas.py's, the descriptions gateway/proto_comments.py's, and what
the edge serves beside the transcoded methods (the SSE stream for EventSource, the
refresh token as a cookie) is added by gateway/openapi_browser.py.

`make gen` writes `gen/socialmesh/openapi.json` (package data, beside the descriptor
set); a test fails when it drifts from the protos, and the edge serves it at
`GET /openapi.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

from .descriptors import Contract, load_contract
from .openapi_browser import add_browser_surface
from .openapi_schemas import (
    WELL_KNOWN,
    SchemaKey,
    SchemaSet,
    behaviors,
    is_map,
    read_only,
    short_name,
)
from .proto_comments import leading_comments

_HTTP_BODY = "google.api.HttpBody"
_VARIABLE = re.compile(r"\{([^}=]+)(=[^}]*)?\}")
ERROR_SCHEMA = "google.rpc.Status"
#: The error details the services attach to a google.rpc.Status (google/rpc/error_details).
ERROR_DETAILS = (
    "google.rpc.ErrorInfo",
    "google.rpc.BadRequest",
    "google.rpc.RetryInfo",
    "google.rpc.PreconditionFailure",
    "google.rpc.ResourceInfo",
    "google.rpc.LocalizedMessage",
)
#: What `POST /v1/media:upload` takes as its raw body (docs/media.md): the type is decided
#: from the bytes, so application/octet-stream is as good as the real type. The document
#: declares application/octet-stream and lists the rest in `x-accepted-media-types`.
UPLOAD_MEDIA_TYPES = (
    "application/octet-stream",
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/heic",
    "image/avif",
    "video/mp4",
)
#: What a variant's bytes are (MediaVariant.content_type).
DOWNLOAD_MEDIA_TYPES = ("application/octet-stream", "image/webp", "image/avif", "video/mp4")
_BINARY = {"type": "string", "format": "binary"}


def _summary(text: str) -> str:
    """The first sentence of a comment, on one line."""
    flat = " ".join(text.split())
    match = re.match(r"(.+?[.:;])(\s|$)", flat)
    return (match.group(1) if match else flat).rstrip(".:;")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head[:1].lower() + head[1:] + "".join(p[:1].upper() + p[1:] for p in rest)


def _http_rules(method: descriptor.MethodDescriptor) -> list[http_pb2.HttpRule]:
    options = descriptor_pb2.MethodOptions.FromString(method.GetOptions().SerializeToString())
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    return [rule, *rule.additional_bindings]


def _verb_and_path(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    assert kind is not None and kind != "custom", "custom HTTP verbs are not used"
    return kind, getattr(rule, kind)


def _field_at(d: descriptor.Descriptor, dotted: str) -> descriptor.FieldDescriptor:
    """The field a path variable such as `message.message_id` binds."""
    head, _, rest = dotted.partition(".")
    f = d.fields_by_name[head]
    if not rest:
        return f
    assert f.message_type is not None, f"{dotted}: {head} is not a message"
    return _field_at(f.message_type, rest)


def _query_parameters(
    schemas: SchemaSet, d: descriptor.Descriptor, skip: set[str], prefix: str = ""
) -> Iterator[dict[str, Any]]:
    """Every leaf field not bound elsewhere, dotted for nested messages (transcoder rules)."""
    for f in d.fields:
        path = f"{prefix}{f.json_name}"
        if f"{prefix}{f.name}" in skip or path in skip or read_only(f):
            continue
        nested = f.message_type
        if is_map(f):
            continue  # maps cannot be query parameters
        if nested is not None and nested.full_name not in WELL_KNOWN and not f.is_repeated:
            yield from _query_parameters(schemas, nested, skip, f"{path}.")
            continue
        parameter: dict[str, Any] = {"name": path, "in": "query"}
        schema = schemas.field(f, "in")
        if "description" in schema:  # on both: openapi-python-client reads the schema's
            parameter["description"] = schema["description"]
        if field_behavior_pb2.REQUIRED in behaviors(f) and not prefix:
            parameter["required"] = True
        if f.is_repeated:
            parameter["style"] = "form"
            parameter["explode"] = True
        parameter["schema"] = schema
        yield parameter


@dataclass(frozen=True)
class _Method:
    method: descriptor.MethodDescriptor
    rule: http_pb2.HttpRule
    public: bool
    operation_id: str


def _path_parameter(
    schemas: SchemaSet, request: descriptor.Descriptor, variable: str
) -> dict[str, Any]:
    f = _field_at(request, variable)
    schema = schemas.field(f, "in")
    description = schema.pop("description", "")
    bound = f"Binds `{variable}`." if "." in variable else ""
    parameter: dict[str, Any] = {"name": f.json_name, "in": "path", "required": True}
    if "anyOf" in schema:
        schema = {"type": "string"}
    text = " ".join(t for t in (description, bound) if t)
    if text:  # on both: openapi-python-client reads the schema's
        parameter["description"] = schema["description"] = text
    parameter["schema"] = schema
    return parameter


def _operation(schemas: SchemaSet, m: _Method) -> tuple[str, str, dict[str, Any]]:
    method, rule = m.method, m.rule
    verb, template = _verb_and_path(rule)
    path_fields = [v.group(1) for v in _VARIABLE.finditer(template)]
    request = method.input_type
    parameters = [_path_parameter(schemas, request, p) for p in path_fields]
    names = {p: q["name"] for p, q in zip(path_fields, parameters, strict=True)}
    assert len(set(names.values())) == len(names), f"ambiguous path variables in {template}"
    # The document names each variable after its field's JSON name; the transcoder matches
    # its own template, so the concrete URLs are the same.
    openapi_path = _VARIABLE.sub(lambda v: "{" + names[v.group(1)] + "}", template)
    comment = schemas.comments.get(method.full_name, method.name)
    service = method.containing_service
    op: dict[str, Any] = {
        "operationId": m.operation_id,
        "tags": [service.name],
        "summary": _summary(comment),
        "description": comment,
    }
    bound = set(path_fields)
    body: dict[str, Any] | None = None
    hint = method.name + "Body"
    if rule.body == "*":
        drop = frozenset(p for p in path_fields if "." not in p)
        drop -= {f.name for f in request.fields if read_only(f)}
        if any(not read_only(f) and f.name not in drop for f in request.fields):
            body = {
                "required": True,
                "content": {
                    "application/json": {"schema": schemas.message(request, "in", drop, hint)}
                },
            }
        bound |= {f.name for f in request.fields}
    elif rule.body:
        body_field = request.fields_by_name[rule.body]
        if body_field.message_type is not None and body_field.message_type.full_name == _HTTP_BODY:
            # One media type: openapi-python-client 0.29 warns on every other binary type
            # and, told to treat them as octet-stream, makes the body optional and always
            # sends the last type listed. The server reads the type from the bytes anyway.
            body = {
                "required": True,
                "description": "The raw file, as application/octet-stream or as its own "
                "type: " + ", ".join(UPLOAD_MEDIA_TYPES[1:]) + " (x-accepted-media-types). "
                "The type is decided from the bytes, never from the Content-Type.",
                "content": {"application/octet-stream": {"schema": dict(_BINARY)}},
                "x-accepted-media-types": list(UPLOAD_MEDIA_TYPES),
            }
        else:
            prefix = f"{rule.body}."
            drop = frozenset(
                p[len(prefix) :]
                for p in path_fields
                if p.startswith(prefix) and "." not in p[len(prefix) :]
            )
            nested = body_field.message_type
            if nested is not None and drop - {f.name for f in nested.fields if read_only(f)}:
                schema = schemas.message(nested, "in", drop, hint)
            else:
                schema = schemas.field(body_field, "in")
                schema.pop("description", None)
            body = {"required": True, "content": {"application/json": {"schema": schema}}}
            if body_field.full_name in schemas.comments:
                body["description"] = schemas.comments[body_field.full_name]
        bound.add(rule.body)
    parameters += _query_parameters(schemas, request, bound)
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    output = method.output_type
    if output.full_name == _HTTP_BODY:
        ok = {t: {"schema": dict(_BINARY)} for t in DOWNLOAD_MEDIA_TYPES}
        description = "The raw bytes"
    elif method.server_streaming:
        ok = {
            "text/event-stream": {
                "schema": {
                    "type": "string",
                    "description": "Server-Sent Events: one `data: <JSON>` frame per message, "
                    f"each a `{short_name(output.full_name)}` (see x-sse-data).",
                },
                "x-sse-data": schemas.message(output),
            }
        }
        description = f"A stream of `{short_name(output.full_name)}` messages as Server-Sent Events"
        op["x-socialmesh-stream"] = "server-sent-events"
    else:
        ok = {"application/json": {"schema": schemas.message(output)}}
        description = "OK"
    error = {"application/json": {"schema": {"$ref": SchemaKey(ERROR_SCHEMA, "out")}}}
    op["responses"] = {
        "200": {"description": description, "content": ok},
        "default": {
            "description": "An error: a google.rpc.Status, with details such as ErrorInfo "
            "(`reason`), BadRequest (which fields) and RetryInfo (when to retry)",
            "content": error,
        },
    }
    if m.public:
        # An empty requirement list: no token needed (a valid one personalizes the answer).
        op["security"] = []
        op["x-socialmesh-access"] = "public"
    else:
        op["security"] = [{"bearer": []}]
    return openapi_path, verb, op


def _error_schemas(schemas: SchemaSet, pool: descriptor_pool.DescriptorPool) -> None:
    details = [schemas.detail(pool.FindMessageTypeByName(n)) for n in ERROR_DETAILS]
    status = pool.FindMessageTypeByName(ERROR_SCHEMA)
    schemas.message(status)
    schema = schemas.schemas[SchemaKey(status.full_name, "out")]
    # Not every error is the transcoder's: the edge writes its own (local replies), so only
    # what every producer sends is required.
    schema["required"] = ["code", "message"]
    schema["properties"]["details"] = {
        "type": "array",
        "description": "Typed details, each with its `@type`: ErrorInfo (a machine-readable "
        "`reason`), BadRequest (`fieldViolations`), RetryInfo (`retryDelay`), ...",
        "items": {"anyOf": [*details, dict(WELL_KNOWN["google.protobuf.Any"])]},
    }


def build(contract: Contract, title: str = "socialmesh REST API") -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    present = {f.name for f in contract.files.file}
    for f in contract.files.file:
        pool.Add(f)
    from google.rpc import error_details_pb2

    if error_details_pb2.DESCRIPTOR.name not in present:  # the edge adds it too
        proto = descriptor_pb2.FileDescriptorProto()
        error_details_pb2.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    schemas = SchemaSet(comments=leading_comments(contract.files))
    _error_schemas(schemas, pool)
    methods: list[_Method] = []
    tags: list[dict[str, Any]] = []
    for service_name in sorted(contract.service_names()):
        infos = {m.name: m for m in contract.methods(service_name)}
        service = pool.FindServiceByName(service_name)
        exposed = [
            (method, rule)
            for method in service.methods
            if not infos[method.name].internal
            for rule in _http_rules(method)
        ]
        if exposed:
            tag: dict[str, Any] = {"name": service.name}
            if service.full_name in schemas.comments:
                tag["description"] = schemas.comments[service.full_name]
            tags.append(tag)
        for i, (method, rule) in enumerate(exposed):
            again = sum(1 for other, _ in exposed[:i] if other is method)
            operation_id = _camel_method(method.name) + (f"{again + 1}" if again else "")
            methods.append(_Method(method, rule, infos[method.name].public, operation_id))
    ids = [m.operation_id for m in methods]
    clashes = {i for i in ids if ids.count(i) > 1}
    paths: dict[str, dict[str, Any]] = {}
    for m in methods:
        if m.operation_id in clashes:  # the same method name in two services
            m = _Method(
                m.method, m.rule, m.public, _camel(m.method.containing_service.name) + m.method.name
            )
        path, verb, op = _operation(schemas, m)
        assert verb not in paths.get(path, {}), f"{verb} {path} is bound twice"
        paths.setdefault(path, {})[verb] = op
    # What is not a transcoded method: the SSE stream, the refresh cookie.
    error = {"$ref": SchemaKey(ERROR_SCHEMA, "out")}
    add_browser_surface(paths, pool, schemas.message, error, schemas.comments)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "v1",
            "description": "Generated from proto/ (google.api.http annotations and the "
            "protos' comments) by gateway/openapi.py; the edge transcodes these routes to "
            "gRPC. JSON is proto3 JSON: camelCase names, 64-bit integers (ids and counts) as "
            "decimal strings, enums as their names (open: expect new values), timestamps "
            "as RFC 3339. Errors are google.rpc.Status. Quickstart: docs/client-quickstart.md.",
        },
        "servers": [
            {
                "url": "/",
                "description": "The edge that serves this document "
                "(`socialmesh up`: http://127.0.0.1:8080)",
            }
        ],
        "security": [{"bearer": []}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
    }
    document["components"] = {
        "schemas": schemas.finish(document),
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "The `accessToken` of login or refresh (15 minutes).",
            }
        },
    }
    return document


def _camel_method(name: str) -> str:
    return name[:1].lower() + name[1:]


def render(descriptor_set: Path) -> str:
    return json.dumps(build(load_contract(descriptor_set)), indent=1, sort_keys=False) + "\n"
