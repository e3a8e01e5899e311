"""The protos' leading comments, by full name, from a descriptor set's source info.

The OpenAPI document carries them as descriptions (the descriptor set is built with
`--include_source_info`), so a client developer reads the contract's own words.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf import descriptor_pb2

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
            tuple(loc.path): clean_comment(loc.leading_comments)
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


def clean_comment(comment: str) -> str:
    """A `//` comment block as Markdown: one leading space per line dropped."""
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    return "\n".join(lines).strip()
