"""The OpenAPI document's `components/schemas`: proto messages and enums as JSON Schema.

As the transcoder prints them (proto3 JSON: camelCase names, 64-bit integers as strings,
enums as names, well-known types in their JSON forms). A message used both ways has two
forms: the response form requires what is always printed and marks server-set fields
`readOnly`; the request form (`...Input`) leaves those out. Enums are open. Schemas are
collected as operations reference them, with placeholder refs that `SchemaSet.finish`
names once every schema is known (gateway/openapi.py builds the operations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor, descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor as FD

_INT64 = {FD.TYPE_INT64, FD.TYPE_UINT64, FD.TYPE_FIXED64, FD.TYPE_SINT64, FD.TYPE_SFIXED64}
_INT32 = {FD.TYPE_INT32, FD.TYPE_UINT32, FD.TYPE_FIXED32, FD.TYPE_SINT32, FD.TYPE_SFIXED32}
WELL_KNOWN: dict[str, dict[str, Any]] = {
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


def behaviors(f: descriptor.FieldDescriptor) -> set[int]:
    """The field's `google.api.field_behavior` values (REQUIRED, OUTPUT_ONLY, ...)."""
    # Re-parsed: a private pool's options do not resolve extensions by themselves.
    options = descriptor_pb2.FieldOptions.FromString(f.GetOptions().SerializeToString())
    return set(options.Extensions[field_behavior_pb2.field_behavior])


def read_only(f: descriptor.FieldDescriptor) -> bool:
    """Set by the server only: OUTPUT_ONLY, or IDENTIFIER (bound by the path, never a body)."""
    return bool(behaviors(f) & {field_behavior_pb2.OUTPUT_ONLY, field_behavior_pb2.IDENTIFIER})


def always_printed(f: descriptor.FieldDescriptor) -> bool:
    """The transcoder prints fields without presence even at their default
    (always_print_primitive_fields): scalars, enums, repeated and map fields."""
    return f.is_repeated or not f.has_presence


def is_map(f: descriptor.FieldDescriptor) -> bool:
    """A map field (a repeated synthetic entry message): an object in JSON."""
    return f.message_type is not None and f.message_type.GetOptions().map_entry


@dataclass(frozen=True)
class SchemaKey:
    """One schema to emit: a message in its response ("out") or request ("in") form; an
    "in" form may also leave out fields bound by an operation's path (`drop`)."""

    full_name: str
    mode: str
    drop: frozenset[str] = frozenset()
    hint: str = ""  # the schema's name when `drop` makes it operation-specific


@dataclass
class SchemaSet:
    """components/schemas, filled as messages and enums are referenced; refs are
    placeholders until `finish` has chosen every schema's name."""

    comments: dict[str, str]
    schemas: dict[SchemaKey, dict[str, Any]] = field(default_factory=dict)
    enums: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _ref(self, key: SchemaKey | str) -> dict[str, Any]:
        return {"$ref": key}

    def message(
        self,
        d: descriptor.Descriptor,
        mode: str = "out",
        drop: frozenset[str] = frozenset(),
        hint: str = "",
    ) -> dict[str, Any]:
        if d.full_name in WELL_KNOWN:
            return dict(WELL_KNOWN[d.full_name])
        key = SchemaKey(d.full_name, mode, drop, hint if drop else "")
        if key not in self.schemas:
            self.schemas[key] = {}  # placeholder: recursion ends here
            schema: dict[str, Any] = {"type": "object"}
            if d.full_name in self.comments:
                schema["description"] = self.comments[d.full_name]
            properties: dict[str, Any] = {}
            required: list[str] = []
            for f in d.fields:
                if mode == "in" and (f.name in drop or read_only(f)):
                    continue
                prop = self.field(f, mode)
                if mode == "out" and read_only(f):
                    prop["readOnly"] = True
                properties[f.json_name] = prop
                if mode == "out" and always_printed(f):
                    required.append(f.json_name)
                if mode == "in" and field_behavior_pb2.REQUIRED in behaviors(f):
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
        if f.message_type is not None and is_map(f):
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
        schema = self.schemas[SchemaKey(d.full_name, "out")]
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
                if isinstance(ref, (SchemaKey, str)) and ref in names:
                    node["$ref"] = f"#/components/schemas/{names[ref]}"
                for value in node.values():
                    resolve(value)
            elif isinstance(node, list):
                for value in node:
                    resolve(value)

        resolve(document)
        resolve(components)
        return dict(sorted(components.items()))

    def _names(self) -> dict[SchemaKey | str, str]:
        modes: dict[str, set[str]] = {}
        for key in self.schemas:
            if not key.drop:
                modes.setdefault(key.full_name, set()).add(key.mode)
        full_names = {k.full_name for k in self.schemas if not k.drop} | set(self.enums)
        shorts = [short_name(n) for n in full_names]
        clashes = {s for s in shorts if shorts.count(s) > 1}

        def base(full_name: str) -> str:
            short = short_name(full_name)
            if short in clashes:
                return "".join(p[:1].upper() + p[1:] for p in full_name.split("."))
            return short

        names: dict[SchemaKey | str, str] = {}
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


def short_name(full_name: str) -> str:
    """`socialmesh.feed.v1.FeedItem.Reason` -> `FeedItemReason` (package dropped)."""
    parts = full_name.split(".")
    while parts and parts[0][:1].islower():
        parts.pop(0)
    return "".join(parts)
