"""Which JSON fields each REST request body may carry, for the edge to refuse the rest.

Envoy's transcoder drops JSON body fields the request message does not define and
forwards the call (envoyproxy/envoy#46623: no option to refuse them). A typo then loses
data silently: `PATCH /v1/users/{id}?updateMask=displayName` with `{"displayname": ...}`
answered 200 and cleared the display name (client review, item 4). The edge's Lua filter
parses each JSON body against the schema built here and answers 400 naming the first
unknown field, before jwt_authn and the transcoder see it.

A schema is a message's field names as the transcoder accepts them (JSON name and proto
name), each mapped to the nested message to check inside it, or to "any" where the value
is not checked further: scalars, enums, well-known types (Timestamp, FieldMask, Struct,
... have JSON forms of their own) and maps (their keys are data, not field names).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

from .descriptors import Contract

#: The value of a field whose JSON is not checked further.
ANY = ""
#: The value of a field the path already binds (body "*"): refused in the body, where
#: the transcoder let a camelCase `{"userId": ...}` lose silently to the path's id
#: (security review I1; the snake_case spelling was already refused).
IN_PATH = "@path"

#: message full name -> {accepted field name -> nested message full name, or ANY}
Schemas = dict[str, dict[str, str]]


def body_schemas(contract: Contract, services: Iterable[str]) -> tuple[Schemas, dict[str, str]]:
    """The message schemas reachable from request bodies, and (verb, template) -> the
    body's message (as "VERB template" keys) for every binding that has a JSON body."""
    pool = descriptor_pool.DescriptorPool()
    for f in contract.files.file:
        pool.Add(f)
    schemas: Schemas = {}
    bodies: dict[str, str] = {}
    for service in services:
        for method in pool.FindServiceByName(service).methods:
            if method.client_streaming:
                continue  # a stream is not one JSON body
            opts = descriptor_pb2.MethodOptions.FromString(method.GetOptions().SerializeToString())
            if not opts.HasExtension(annotations_pb2.http):
                continue
            rule = opts.Extensions[annotations_pb2.http]
            for r in (rule, *rule.additional_bindings):
                target = _body_message(method.input_type, r)
                if target is None:
                    continue
                verb, template = _verb_template(r)
                _collect(target, schemas)
                name = target.full_name
                bound = _path_fields(template) if r.body == "*" else set()
                if bound & set(schemas[name]):
                    name = f"{name}{IN_PATH}{template}"
                    schemas[name] = {
                        field: IN_PATH if _field_name(field, target) in bound else nested
                        for field, nested in schemas[target.full_name].items()
                    }
                bodies[f"{verb} {template}"] = name
    return schemas, bodies


def _body_message(
    request: descriptor.Descriptor, rule: http_pb2.HttpRule
) -> descriptor.Descriptor | None:
    """The message a binding's JSON body is parsed into, or None (no body, a scalar or
    google.api.HttpBody body: raw bytes, nothing to check)."""
    if not rule.body:
        return None
    if rule.body == "*":
        return None if request.full_name == "google.api.HttpBody" else request
    field = request.fields_by_name.get(rule.body)
    if field is None or field.message_type is None:
        return None
    if field.message_type.full_name.startswith(("google.api.", "google.protobuf.")):
        return None
    return field.message_type


def _path_fields(template: str) -> set[str]:
    """Top-level request fields a path template binds (`{user_id}` -> user_id)."""
    return {v.split("=")[0].split(".")[0] for v in re.findall(r"\{([^}]+)\}", template)}


def _field_name(accepted: str, message: descriptor.Descriptor) -> str:
    """The proto name of a field, given either spelling the transcoder accepts."""
    for field in message.fields:
        if accepted in (field.name, field.json_name):
            return field.name
    return accepted


def _verb_template(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    return str(kind).upper(), str(getattr(rule, str(kind)))


def _collect(message: descriptor.Descriptor, schemas: Schemas) -> None:
    if message.full_name in schemas:
        return
    fields: dict[str, str] = {}
    schemas[message.full_name] = fields  # before recursing: messages may nest themselves
    for field in message.fields:
        nested = ANY
        child = field.message_type
        if (
            child is not None
            and not child.GetOptions().map_entry
            and not child.full_name.startswith("google.protobuf.")
        ):
            nested = child.full_name
            _collect(child, schemas)
        fields[field.json_name] = nested
        fields[field.name] = nested
    return


def lua_table(schemas: Mapping[str, Mapping[str, str]]) -> str:
    """The schemas as a Lua table literal: field -> nested message name, true (ANY:
    not checked further) or false (IN_PATH: refused in the body)."""

    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def value(nested: str) -> str:
        if nested == IN_PATH:
            return "false"
        return quote(nested) if nested else "true"

    lines = ["{"]
    for name in sorted(schemas):
        entries = ", ".join(
            f"[{quote(field)}] = {value(nested)}" for field, nested in sorted(schemas[name].items())
        )
        lines.append(f"  [{quote(name)}] = {{{entries}}},")
    lines.append("}")
    return "\n".join(lines)
