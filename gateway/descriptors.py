"""Reads the gRPC contract (a protoc descriptor set) into the facts the edge needs.

Everything the edge config derives from the contract - which methods exist, which of
them stream, which REST verb + path each one is bound to, who may call them (the
`(socialmesh.api.v1.access)` option) - comes from here, so that a
new service only needs its .proto file and `make gen`; nothing is hard-coded per service.
This module is plain protobuf: no Envoy types leak out of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool

# Imported for their side effect on the default pool and for their file descriptors: the
# transcoder needs google.rpc.* to render grpc-status-details-bin as JSON (see
# `with_error_detail_types`).
from google.rpc import error_details_pb2, status_pb2

# Registers the `(socialmesh.api.v1.access)` method option, so parsing a descriptor set
# fills it in as a typed extension instead of leaving it in the unknown fields.
from socialmesh.api.v1 import access_pb2

# A single path segment of a URL: what `*` and `{var}` match in a google.api.http template.
SEGMENT_REGEX = "[^/]+"

# The HTTP verbs of google.api.HttpRule's `pattern` oneof, as they appear on the wire.
_VERBS = {"get": "GET", "put": "PUT", "post": "POST", "delete": "DELETE", "patch": "PATCH"}

# RE2 metacharacters; everything else in a literal path segment is matched as itself.
_RE2_META = re.compile(r"([.^$*+?()\[\]{}|\\])")


@dataclass(frozen=True)
class HttpBinding:
    """One REST binding of a method: an HTTP verb and a google.api.http path template."""

    verb: str
    template: str

    @property
    def path_regex(self) -> str:
        """RE2 regex (full match, query string excluded) for the paths this binding serves."""
        return template_to_regex(self.template)


@dataclass(frozen=True)
class MethodInfo:
    """A gRPC method as the edge sees it."""

    service: str  # fully-qualified service name, e.g. "socialmesh.user.v1.UserService"
    name: str  # e.g. "GetUser"
    client_streaming: bool
    server_streaming: bool
    http: tuple[HttpBinding, ...]
    # The `(socialmesh.api.v1.access)` option: who may call the method.
    access: access_pb2.MethodAccess.ValueType = access_pb2.METHOD_ACCESS_UNSPECIFIED

    @property
    def public(self) -> bool:
        """METHOD_ACCESS_PUBLIC: the access token is optional (a bad one is still refused)."""
        return self.access == access_pb2.METHOD_ACCESS_PUBLIC

    @property
    def internal(self) -> bool:
        """METHOD_ACCESS_INTERNAL: for other services only; the edge must never route it."""
        return self.access == access_pb2.METHOD_ACCESS_INTERNAL

    @property
    def full_name(self) -> str:
        """Dotted name, as in descriptors and error messages: "pkg.Service.Method"."""
        return f"{self.service}.{self.name}"

    @property
    def grpc_path(self) -> str:
        """The HTTP/2 :path of the native gRPC call (and of a request after transcoding)."""
        return f"/{self.service}/{self.name}"

    @property
    def streaming(self) -> bool:
        """Any streaming direction: these must not get a finite route timeout."""
        return self.client_streaming or self.server_streaming

    @property
    def idempotent(self) -> bool:
        """Safe to retry: bound to GET, or named like a read (Get*/List*/BatchGet*)."""
        if any(b.verb == "GET" for b in self.http):
            return True
        return self.name.startswith(("Get", "List", "BatchGet"))


@dataclass(frozen=True)
class Contract:
    """The parsed descriptor set; the transcoder is given exactly these bytes (`serialized`)."""

    files: descriptor_pb2.FileDescriptorSet

    def service_names(self) -> frozenset[str]:
        """Every fully-qualified service name defined in the set."""
        return frozenset(
            f"{f.package}.{s.name}" if f.package else s.name
            for f in self.files.file
            for s in f.service
        )

    def methods(self, service: str) -> tuple[MethodInfo, ...]:
        """All methods of `service`, in declaration order; KeyError if it is not in the set."""
        for f in self.files.file:
            for s in f.service:
                full = f"{f.package}.{s.name}" if f.package else s.name
                if full == service:
                    return tuple(_method_info(full, m) for m in s.method)
        raise KeyError(f"service {service!r} is not in the descriptor set")

    def transcoding_problems(self, services: Iterable[str]) -> list[str]:
        """HTTP rules in `services` that Envoy's transcoder refuses to load, as messages.

        Envoy implements `response_body` only when it names a google.api.HttpBody field
        (envoyproxy/envoy#11136, never implemented): with any other field the transcoder
        fails at start-up - "Setting response_body is not supported yet for non-HttpBody
        fields". Reporting it here names every offending method at once, at build time.
        """
        pool = descriptor_pool.DescriptorPool()
        for f in self.files.file:
            pool.Add(f)
        problems: list[str] = []
        for service in services:
            for method in pool.FindServiceByName(service).methods:
                opts = descriptor_pb2.MethodOptions.FromString(
                    method.GetOptions().SerializeToString()
                )
                if not opts.HasExtension(annotations_pb2.http):
                    continue
                rule = opts.Extensions[annotations_pb2.http]
                for r in (rule, *rule.additional_bindings):
                    if not r.response_body:
                        continue
                    field = method.output_type.fields_by_name.get(r.response_body)
                    if (
                        field is None
                        or field.message_type is None
                        or (field.message_type.full_name != "google.api.HttpBody")
                    ):
                        problems.append(
                            f"{method.full_name}: response_body {r.response_body!r} is not a "
                            "google.api.HttpBody field; Envoy's transcoder only supports "
                            "response_body for HttpBody (envoyproxy/envoy#11136). Return the "
                            "resource itself (AIP-131: `returns (User)`) or drop response_body "
                            "(REST then returns the whole response message)"
                        )
        return problems

    def serialized(self) -> bytes:
        """The descriptor set as protoc would write it."""
        return self.files.SerializeToString()


def load_contract(path: Path) -> Contract:
    """Parse a `protoc --include_imports --descriptor_set_out` file.

    `annotations_pb2` is imported at module level, so the google.api.http extension on
    MethodOptions is parsed into a typed field rather than left as unknown bytes.
    """
    files = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
    return Contract(files=files)


def with_error_detail_types(contract: Contract) -> Contract:
    """Return the contract plus google/rpc/{status,error_details}.proto if they are missing.

    With `convert_grpc_status` the transcoder turns grpc-status-details-bin (a
    google.rpc.Status whose `details` are Any-packed BadRequest/ErrorInfo/...) into a JSON
    body. Envoy only adds google.rpc.Status and google.protobuf.Any to its pool by itself;
    if a detail type is unknown the whole conversion fails and the client gets the mapped
    HTTP status with an *empty* body. Our services attach those details, so the edge makes
    sure their descriptors are loaded even when no .proto in the contract imports them.
    """
    files = descriptor_pb2.FileDescriptorSet()
    files.CopyFrom(contract.files)
    present = {f.name for f in files.file}
    needed = _with_dependencies([status_pb2.DESCRIPTOR, error_details_pb2.DESCRIPTOR])
    for fd in needed:
        if fd.name not in present:
            proto = files.file.add()
            fd.CopyToProto(proto)
            present.add(fd.name)
    # A FileDescriptorSet must list dependencies before dependents; they were appended
    # in dependency order and nothing already present depends on them.
    return Contract(files=files)


def _with_dependencies(
    roots: Iterable[descriptor.FileDescriptor],
) -> list[descriptor.FileDescriptor]:
    """Topologically ordered file descriptors: each dependency before its dependents."""
    ordered: list[descriptor.FileDescriptor] = []
    seen: set[str] = set()

    def visit(fd: descriptor.FileDescriptor) -> None:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            visit(dep)
        ordered.append(fd)

    for root in roots:
        visit(root)
    return ordered


def _method_info(service: str, m: descriptor_pb2.MethodDescriptorProto) -> MethodInfo:
    """Collect a method's streaming flags, access option and every REST binding."""
    bindings: list[HttpBinding] = []
    if m.options.HasExtension(annotations_pb2.http):
        rule = m.options.Extensions[annotations_pb2.http]
        bindings.extend(_bindings(rule))
        for extra in rule.additional_bindings:
            bindings.extend(_bindings(extra))
    return MethodInfo(
        service=service,
        name=m.name,
        client_streaming=m.client_streaming,
        server_streaming=m.server_streaming,
        http=tuple(bindings),
        access=m.options.Extensions[access_pb2.access],
    )


def _bindings(rule: http_pb2.HttpRule) -> Sequence[HttpBinding]:
    """The (verb, template) pair of one HttpRule; `custom` carries its own verb."""
    kind = rule.WhichOneof("pattern")
    if kind is None:
        return ()
    if kind == "custom":
        return (HttpBinding(verb=rule.custom.kind.upper(), template=rule.custom.path),)
    return (HttpBinding(verb=_VERBS[kind], template=getattr(rule, kind)),)


def template_to_regex(template: str) -> str:
    """Translate a google.api.http path template into an RE2 regex over the URL path.

    Grammar (google/api/http.proto):
        Template = "/" Segments [ Verb ] ;  Segments = Segment { "/" Segment } ;
        Segment  = "*" | "**" | LITERAL | Variable ;
        Variable = "{" FieldPath [ "=" Segments ] "}" ;  Verb = ":" LITERAL ;
    `{user_id}` and `*` become one segment (`[^/]+`), `**` any number of segments, and
    a trailing slash is optional.
    Literals are escaped, so `/v1/users:batchGet` only matches itself. Envoy's safe_regex
    route matching is a full match against the path without its query string.
    """
    if not template.startswith("/"):
        raise ValueError(f"http template must start with '/': {template!r}")
    body, verb = _split_verb(template[1:])
    regex = "/" + "/".join(_segment_regex(seg) for seg in _split_top(body, "/"))
    if verb is not None:
        regex += ":" + _escape(verb)
    # The transcoder's path matcher ignores one trailing slash (`GET /v1/users/1/` is
    # GetUser); the rules built from this regex must agree with it on every path.
    return regex + "/?"


def _split_verb(body: str) -> tuple[str, str | None]:
    """Separate a trailing `:verb` (outside braces, after the last '/') from the segments."""
    depth = 0
    colon = -1
    for i, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0 and ch == "/":
            colon = -1
        elif depth == 0 and ch == ":" and colon < 0:
            colon = i
    if colon >= 0:
        return body[:colon], body[colon + 1 :]
    return body, None


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside of `{...}`."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _segment_regex(segment: str) -> str:
    """Regex for one top-level segment: wildcard, literal or variable."""
    if segment.startswith("{") and segment.endswith("}"):
        inner = segment[1:-1]
        if "=" not in inner:
            return SEGMENT_REGEX
        _, pattern = inner.split("=", 1)
        return "/".join(_segment_regex(s) for s in pattern.split("/"))
    if segment == "*":
        return SEGMENT_REGEX
    if segment == "**":
        return ".*"
    if not segment or "{" in segment or "}" in segment:
        raise ValueError(f"unsupported path template segment: {segment!r}")
    return _escape(segment)


def _escape(literal: str) -> str:
    """Escape RE2 metacharacters only (re.escape also escapes harmless characters)."""
    return _RE2_META.sub(r"\\\1", literal)
