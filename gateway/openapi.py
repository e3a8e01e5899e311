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

What the edge serves beside the transcoded methods (the SSE stream for EventSource, the
refresh token as a cookie) is added by gateway/openapi_browser.py.

`make gen` writes `gen/socialmesh/openapi.json` (package data, beside the descriptor
set); a test fails when it drifts from the protos, and the edge serves it at
`GET /openapi.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FieldDescriptor as FD

from .descriptors import Contract, load_contract
from .openapi_browser import add_browser_surface

_INT64 = {FD.TYPE_INT64, FD.TYPE_UINT64, FD.TYPE_FIXED64, FD.TYPE_SINT64, FD.TYPE_SFIXED64}
_INT32 = {FD.TYPE_INT32, FD.TYPE_UINT32, FD.TYPE_FIXED32, FD.TYPE_SINT32, FD.TYPE_SFIXED32}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "examples": ["2026-12-05T18:30:00Z"],
    },
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?\d+(\.\d+)?s$",
        "description": "A duration in seconds with an `s` suffix, e.g. `1.5s`.",
        "examples": ["20s"],
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths (camelCase), e.g. `displayName,bio`.",
    },
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

# SourceCodeInfo paths: field numbers of the descriptor protos.
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6  # in FileDescriptorProto
_FIELD, _NESTED, _NESTED_ENUM = 2, 3, 4  # in DescriptorProto
_VALUE = 2  # EnumDescriptorProto.value
_METHOD = 2  # ServiceDescriptorProto.method


def leading_comments(files: descriptor_pb2.FileDescriptorSet) -> dict[str, str]:
    """Full name -> leading comment of every service, method, message, field, enum and
    enum value (enum values as `pkg.Enum.VALUE`), from the set's source info."""
    found: dict[str, str] = {}
    for file in files.file:
        by_path = {
            tuple(loc.path): _clean(loc.leading_comments)
            for loc in file.source_code_info.location
            if loc.leading_comments.strip()
        }
        for name, path in _declarations(file):
            if path in by_path:
                found[name] = by_path[path]
    return found


def _declarations(
    file: descriptor_pb2.FileDescriptorProto,
) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(full name, SourceCodeInfo path) of everything in a file that can carry a comment."""
    prefix = f"{file.package}." if file.package else ""
    for i, m in enumerate(file.message_type):
        yield from _message_declarations(m, prefix + m.name, (_MESSAGE, i))
    for i, e in enumerate(file.enum_type):
        yield from _enum_declarations(e, prefix + e.name, (_ENUM, i))
    for i, s in enumerate(file.service):
        yield prefix + s.name, (_SERVICE, i)
        for j, method in enumerate(s.method):
            yield f"{prefix}{s.name}.{method.name}", (_SERVICE, i, _METHOD, j)


def _message_declarations(
    m: descriptor_pb2.DescriptorProto, name: str, path: tuple[int, ...]
) -> Iterator[tuple[str, tuple[int, ...]]]:
    yield name, path
    for i, f in enumerate(m.field):
        yield f"{name}.{f.name}", (*path, _FIELD, i)
    for i, nested in enumerate(m.nested_type):
        yield from _message_declarations(nested, f"{name}.{nested.name}", (*path, _NESTED, i))
    for i, e in enumerate(m.enum_type):
        yield from _enum_declarations(e, f"{name}.{e.name}", (*path, _NESTED_ENUM, i))


def _enum_declarations(
    e: descriptor_pb2.EnumDescriptorProto, name: str, path: tuple[int, ...]
) -> Iterator[tuple[str, tuple[int, ...]]]:
    yield name, path
    for i, v in enumerate(e.value):
        yield f"{name}.{v.name}", (*path, _VALUE, i)


def _clean(comment: str) -> str:
    """A `//` comment block as Markdown: one leading space per line dropped."""
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    return "\n".join(lines).strip()


def _summary(text: str) -> str:
    """The first sentence of a comment, on one line."""
    flat = " ".join(text.split())
    match = re.match(r"(.+?[.:;])(\s|$)", flat)
    return (match.group(1) if match else flat).rstrip(".:;")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head[:1].lower() + head[1:] + "".join(p[:1].upper() + p[1:] for p in rest)


def _behaviors(f: descriptor.FieldDescriptor) -> set[int]:
    # Re-parsed: a private pool's options do not resolve extensions by themselves.
    options = descriptor_pb2.FieldOptions.FromString(f.GetOptions().SerializeToString())
    return set(options.Extensions[field_behavior_pb2.field_behavior])


def _read_only(f: descriptor.FieldDescriptor) -> bool:
    """Set by the server only: OUTPUT_ONLY, or IDENTIFIER (bound by the path, never a body)."""
    return bool(_behaviors(f) & {field_behavior_pb2.OUTPUT_ONLY, field_behavior_pb2.IDENTIFIER})


def _always_printed(f: descriptor.FieldDescriptor) -> bool:
    """The transcoder prints fields without presence even at their default
    (always_print_primitive_fields): scalars, enums, repeated and map fields."""
    return f.is_repeated or not f.has_presence


def _is_map(f: descriptor.FieldDescriptor) -> bool:
    return f.message_type is not None and f.message_type.GetOptions().map_entry


@dataclass(frozen=True)
class _Key:
    """One schema to emit: a message in its response ("out") or request ("in") form; an
    "in" form may also leave out fields bound by an operation's path (`drop`)."""

    full_name: str
    mode: str
    drop: frozenset[str] = frozenset()
    hint: str = ""  # the schema's name when `drop` makes it operation-specific


@dataclass
class _Schemas:
    """components/schemas, filled as messages and enums are referenced; refs are
    placeholders until `finish` has chosen every schema's name."""

    comments: dict[str, str]
    schemas: dict[_Key, dict[str, Any]] = field(default_factory=dict)
    enums: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _ref(self, key: _Key | str) -> dict[str, Any]:
        return {"$ref": key}

    def message(
        self,
        d: descriptor.Descriptor,
        mode: str = "out",
        drop: frozenset[str] = frozenset(),
        hint: str = "",
    ) -> dict[str, Any]:
        if d.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[d.full_name])
        key = _Key(d.full_name, mode, drop, hint if drop else "")
        if key not in self.schemas:
            self.schemas[key] = {}  # placeholder: recursion ends here
            schema: dict[str, Any] = {"type": "object"}
            if d.full_name in self.comments:
                schema["description"] = self.comments[d.full_name]
            properties: dict[str, Any] = {}
            required: list[str] = []
            for f in d.fields:
                if mode == "in" and (f.name in drop or _read_only(f)):
                    continue
                prop = self.field(f, mode)
                if mode == "out" and _read_only(f):
                    prop["readOnly"] = True
                properties[f.json_name] = prop
                if mode == "out" and _always_printed(f):
                    required.append(f.json_name)
                if mode == "in" and field_behavior_pb2.REQUIRED in _behaviors(f):
                    required.append(f.json_name)
            schema["properties"] = properties
            if required:
                schema["required"] = required
            self.schemas[key] = schema
        return self._ref(key)

    def enum(self, e: descriptor.EnumDescriptor) -> dict[str, Any]:
        """An open enum: the known names, or any other string (a newer server's value)."""
        if e.full_name not in self.enums:
            values = [v.name for v in e.values]
            notes = [
                f"- `{v.name}`: {self.comments.get(f'{e.full_name}.{v.name}', '')}"
                for v in e.values
            ]
            text = self.comments.get(e.full_name, e.name)
            self.enums[e.full_name] = {
                "type": "string",
                "description": f"{text}\n\nKnown values (the enum is open: a newer server may "
                "send a value not listed here; treat it like the `_UNSPECIFIED` one):\n"
                + "\n".join(notes),
                "enum": values,
                "x-enum-open": True,
                "x-enum-descriptions": [
                    self.comments.get(f"{e.full_name}.{v.name}", "") for v in e.values
                ],
            }
        return {"anyOf": [self._ref(e.full_name), {"type": "string"}]}

    def scalar(self, f: descriptor.FieldDescriptor, mode: str) -> dict[str, Any]:
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
            return self.message(f.message_type, mode)
        return {"type": "string"}

    def field(self, f: descriptor.FieldDescriptor, mode: str = "out") -> dict[str, Any]:
        if f.message_type is not None and _is_map(f):
            value = f.message_type.fields_by_name["value"]
            schema = {"type": "object", "additionalProperties": self.scalar(value, mode)}
        elif f.is_repeated:
            schema = {"type": "array", "items": self.scalar(f, mode)}
        else:
            schema = self.scalar(f, mode)
        if f.full_name in self.comments:
            schema = {**schema, "description": self.comments[f.full_name]}
        return schema

    def detail(self, d: descriptor.Descriptor) -> dict[str, Any]:
        """An error detail as it appears in Status.details: the message plus its `@type`."""
        ref = self.message(d)
        schema = self.schemas[_Key(d.full_name, "out")]
        schema["properties"] = {
            "@type": {
                "type": "string",
                "const": f"type.googleapis.com/{d.full_name}",
                "description": "Which detail this is.",
            },
            **schema["properties"],
        }
        schema["required"] = ["@type", *schema.get("required", [])]
        return ref

    def finish(self, document: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Name every schema and replace the placeholder refs in `document` and in them."""
        names = self._names()
        components: dict[str, dict[str, Any]] = {}
        for key, schema in self.schemas.items():
            components[names[key]] = schema
        for full_name, schema in self.enums.items():
            components[names[full_name]] = schema

        def resolve(node: Any) -> None:
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, (_Key, str)) and ref in names:
                    node["$ref"] = f"#/components/schemas/{names[ref]}"
                for value in node.values():
                    resolve(value)
            elif isinstance(node, list):
                for value in node:
                    resolve(value)

        resolve(document)
        resolve(components)
        return dict(sorted(components.items()))

    def _names(self) -> dict[_Key | str, str]:
        modes: dict[str, set[str]] = {}
        for key in self.schemas:
            if not key.drop:
                modes.setdefault(key.full_name, set()).add(key.mode)
        full_names = {k.full_name for k in self.schemas if not k.drop} | set(self.enums)
        shorts = [_short(n) for n in full_names]
        clashes = {s for s in shorts if shorts.count(s) > 1}

        def base(full_name: str) -> str:
            short = _short(full_name)
            if short in clashes:
                return "".join(p[:1].upper() + p[1:] for p in full_name.split("."))
            return short

        names: dict[_Key | str, str] = {}
        for key in self.schemas:
            if key.drop:
                names[key] = key.hint
            elif key.mode == "in" and "out" in modes[key.full_name]:
                names[key] = base(key.full_name) + "Input"
            else:
                names[key] = base(key.full_name)
        for full_name in self.enums:
            names[full_name] = base(full_name)
        taken = list(names.values())
        duplicates = {n for n in taken if taken.count(n) > 1}
        assert not duplicates, f"schema names used twice: {sorted(duplicates)}"
        return names


def _short(full_name: str) -> str:
    """`socialmesh.feed.v1.FeedItem.Reason` -> `FeedItemReason` (package dropped)."""
    parts = full_name.split(".")
    while parts and parts[0][:1].islower():
        parts.pop(0)
    return "".join(parts)


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
    schemas: _Schemas, d: descriptor.Descriptor, skip: set[str], prefix: str = ""
) -> Iterator[dict[str, Any]]:
    """Every leaf field not bound elsewhere, dotted for nested messages (transcoder rules)."""
    for f in d.fields:
        path = f"{prefix}{f.json_name}"
        if f"{prefix}{f.name}" in skip or path in skip or _read_only(f):
            continue
        nested = f.message_type
        if _is_map(f):
            continue  # maps cannot be query parameters
        if nested is not None and nested.full_name not in _WELL_KNOWN and not f.is_repeated:
            yield from _query_parameters(schemas, nested, skip, f"{path}.")
            continue
        parameter: dict[str, Any] = {"name": path, "in": "query"}
        schema = schemas.field(f, "in")
        if "description" in schema:  # on both: openapi-python-client reads the schema's
            parameter["description"] = schema["description"]
        if field_behavior_pb2.REQUIRED in _behaviors(f) and not prefix:
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
    schemas: _Schemas, request: descriptor.Descriptor, variable: str
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


def _operation(schemas: _Schemas, m: _Method) -> tuple[str, str, dict[str, Any]]:
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
        drop -= {f.name for f in request.fields if _read_only(f)}
        if any(not _read_only(f) and f.name not in drop for f in request.fields):
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
            if nested is not None and drop - {f.name for f in nested.fields if _read_only(f)}:
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
                    f"each a `{_short(output.full_name)}` (see x-sse-data).",
                },
                "x-sse-data": schemas.message(output),
            }
        }
        description = f"A stream of `{_short(output.full_name)}` messages as Server-Sent Events"
        op["x-socialmesh-stream"] = "server-sent-events"
    else:
        ok = {"application/json": {"schema": schemas.message(output)}}
        description = "OK"
    error = {"application/json": {"schema": {"$ref": _Key(ERROR_SCHEMA, "out")}}}
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


def _error_schemas(schemas: _Schemas, pool: descriptor_pool.DescriptorPool) -> None:
    details = [schemas.detail(pool.FindMessageTypeByName(n)) for n in ERROR_DETAILS]
    status = pool.FindMessageTypeByName(ERROR_SCHEMA)
    schemas.message(status)
    schema = schemas.schemas[_Key(status.full_name, "out")]
    # Not every error is the transcoder's: the edge writes its own (local replies), so only
    # what every producer sends is required.
    schema["required"] = ["code", "message"]
    schema["properties"]["details"] = {
        "type": "array",
        "description": "Typed details, each with its `@type`: ErrorInfo (a machine-readable "
        "`reason`), BadRequest (`fieldViolations`), RetryInfo (`retryDelay`), ...",
        "items": {"anyOf": [*details, dict(_WELL_KNOWN["google.protobuf.Any"])]},
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
    schemas = _Schemas(comments=leading_comments(contract.files))
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
    error = {"$ref": _Key(ERROR_SCHEMA, "out")}
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
