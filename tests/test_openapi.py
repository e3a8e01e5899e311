"""The OpenAPI document (gateway/openapi.py) is current and fit for client generators.

No server: these read the committed descriptor set and document. What generators make
of the document served by a real edge is tests/test_generated_clients.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.descriptors import load_contract
from gateway.openapi import UPLOAD_MEDIA_TYPES, build, render

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTOR_SET = ROOT / "gen" / "socialmesh" / "socialmesh.binpb"
DOCUMENT = ROOT / "gen" / "socialmesh" / "openapi.json"
VERBS = ("get", "put", "post", "delete", "patch")

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def doc() -> Doc:
    return build(load_contract(DESCRIPTOR_SET))


def operations(doc: Doc) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for verb in VERBS:
            if verb in item:
                yield path, verb, item[verb]


def schema(doc: Doc, name: str) -> dict[str, Any]:
    return doc["components"]["schemas"][name]


def resolve(doc: Doc, node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema(doc, ref.rsplit("/", 1)[-1]) if ref else node


def reachable(doc: Doc, node: dict[str, Any], seen: set[str] | None = None) -> Iterator[Any]:
    """Every schema reachable from `node` through $ref, properties, items and anyOf."""
    seen = set() if seen is None else seen
    ref = node.get("$ref")
    if ref:
        if ref in seen:
            return
        seen.add(ref)
    node = resolve(doc, node)
    yield node
    children = [*node.get("properties", {}).values(), *node.get("anyOf", [])]
    if isinstance(node.get("items"), dict):
        children.append(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        children.append(node["additionalProperties"])
    for child in children:
        yield from reachable(doc, child, seen)


def body_schema(op: dict[str, Any]) -> dict[str, Any] | None:
    body = op.get("requestBody")
    return None if body is None else body["content"].get("application/json", {}).get("schema")


def test_committed_document_is_what_the_protos_generate() -> None:
    """`make gen` would not change gen/socialmesh/openapi.json (the edge serves that file)."""
    assert DOCUMENT.read_text() == render(DESCRIPTOR_SET), (
        "gen/socialmesh/openapi.json is stale: run `make gen` and commit it"
    )


def test_operations_and_schemas_carry_the_proto_comments(doc: Doc) -> None:
    for path, verb, op in operations(doc):
        flat = " ".join(op["description"].split())
        assert op["summary"] and flat.startswith(op["summary"]), (verb, path)
        assert op["summary"] != op["operationId"], f"{verb} {path}: summary is just the name"
        for parameter in op.get("parameters", []):
            assert parameter.get("description"), (verb, path, parameter["name"])
    login = doc["paths"]["/v1/auth:login"]["post"]
    assert "access/refresh token" in login["description"]
    missing = [
        f"{name}.{prop}"
        for name, s in doc["components"]["schemas"].items()
        for prop, p in s.get("properties", {}).items()
        if not p.get("description")
    ]
    assert missing == []
    assert all(s.get("description") for s in doc["components"]["schemas"].values())
    tags = {t["name"]: t for t in doc["tags"]}
    assert "PostService" in tags and tags["PostService"]["description"]
    assert {op["tags"][0] for _, _, op in operations(doc)} == set(tags)


def test_response_schemas_require_what_the_transcoder_always_prints(doc: Doc) -> None:
    post = schema(doc, "Post")
    # Scalars, enums and repeated fields are always printed; message and `optional`
    # fields only when set.
    assert {"postId", "text", "likeCount", "isLiked", "mediaIds", "visibility"} <= set(
        post["required"]
    )
    assert "createTime" not in post["required"]
    user = schema(doc, "User")
    assert "handle" in user["required"] and "avatarMediaId" not in user["required"]
    assert post["properties"]["likeCount"]["readOnly"] is True  # OUTPUT_ONLY
    assert post["properties"]["postId"]["readOnly"] is True  # IDENTIFIER
    assert "readOnly" not in post["properties"]["text"]
    # Errors come from the edge too: only what every producer sends is required.
    assert schema(doc, "Status")["required"] == ["code", "message"]


def test_request_bodies_hold_no_output_only_or_path_bound_fields(doc: Doc) -> None:
    for path, verb, op in operations(doc):
        body = body_schema(op)
        if body is None:
            continue
        bound = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        top = resolve(doc, body)
        assert not bound & set(top.get("properties", {})), f"{verb} {path}: path field in body"
        for node in reachable(doc, body):
            for name, prop in node.get("properties", {}).items():
                assert not prop.get("readOnly"), f"{verb} {path}: body has read-only {name}"
    create = body_schema(doc["paths"]["/v1/posts"]["post"])
    assert create is not None and resolve(doc, create) is schema(doc, "PostInput")
    assert "likeCount" not in schema(doc, "PostInput")["properties"]
    login = resolve(doc, body_schema(doc["paths"]["/v1/auth:login"]["post"]) or {})
    assert set(login["required"]) >= {"handle", "password"}  # REQUIRED
    follow = doc["paths"]["/v1/users/{userId}:follow"]["post"]
    assert "requestBody" not in follow  # every field is in the path


def test_upload_declares_a_media_type_generators_support(doc: Doc) -> None:
    upload = doc["paths"]["/v1/media:upload"]["post"]["requestBody"]
    assert upload["required"] is True
    assert upload["content"] == {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }
    assert upload["x-accepted-media-types"] == list(UPLOAD_MEDIA_TYPES)
    for media_type in ("image/jpeg", "image/png", "image/heic", "video/mp4"):
        assert media_type in upload["x-accepted-media-types"]
        assert media_type in upload["description"]
    text = json.dumps(doc)
    assert '"*/*"' not in text


def test_server_streams_are_server_sent_events(doc: Doc) -> None:
    stream = doc["paths"]["/v1/events:stream"]["get"]
    content = stream["responses"]["200"]["content"]
    assert list(content) == ["text/event-stream"]
    assert content["text/event-stream"]["x-sse-data"] == {"$ref": "#/components/schemas/ChatEvent"}
    assert stream["x-socialmesh-stream"] == "server-sent-events"
    download = doc["paths"]["/v1/media/files/{token}/{variant}"]["get"]
    assert "text/event-stream" not in download["responses"]["200"]["content"]  # raw bytes


def test_path_parameters_are_camel_case_and_typed(doc: Doc) -> None:
    for path, verb, op in operations(doc):
        in_path = re.findall(r"\{([^}]+)\}", path)
        declared = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
        assert in_path == declared, (verb, path)
        for name in in_path:
            assert re.fullmatch(r"[a-z][A-Za-z0-9]*", name), f"{path}: {name}"
    get_user = doc["paths"]["/v1/users/{userId}"]["get"]
    user_id = get_user["parameters"][0]["schema"]
    assert user_id["type"] == "string" and user_id["format"] == "int64"
    assert "/v1/media/{mediaId}" in doc["paths"]  # PATCH binds {media.media_id}


def test_enums_are_open(doc: Doc) -> None:
    enums = {n for n, s in doc["components"]["schemas"].items() if "enum" in s}
    assert {"FeedReason", "MediaState", "Visibility"} <= enums
    for name in enums:
        assert schema(doc, name)["x-enum-open"] is True
        assert "open" in schema(doc, name)["description"]
    for name, s in doc["components"]["schemas"].items():
        for prop_name, prop in s.get("properties", {}).items():
            node = prop.get("items", prop)
            refs = [node.get("$ref", "")] + [a.get("$ref", "") for a in node.get("anyOf", [])]
            if any(r.rsplit("/", 1)[-1] in enums for r in refs):
                assert node.get("anyOf", [None])[-1] == {"type": "string"}, (name, prop_name)


def test_security_public_methods_do_not_demand_a_token(doc: Doc) -> None:
    """openapi-python-client asks for an AuthenticatedClient whenever an operation's
    `security` is non-empty, even `[{}, {bearer: []}]`."""
    assert doc["security"] == [{"bearer": []}]
    public = {op["operationId"] for _, _, op in operations(doc) if op["security"] == []}
    assert {"login", "createUser", "refreshToken", "searchPosts"} <= public
    for _, _, op in operations(doc):
        if op["operationId"] in public:
            assert op["x-socialmesh-access"] == "public"
        else:
            assert op["security"] == [{"bearer": []}]


def test_every_operation_documents_its_errors(doc: Doc) -> None:
    for path, verb, op in operations(doc):
        default = op["responses"]["default"]["content"]["application/json"]["schema"]
        assert default == {"$ref": "#/components/schemas/Status"}, (verb, path)
    details = schema(doc, "Status")["properties"]["details"]["items"]["anyOf"]
    names = {d.get("$ref", "").rsplit("/", 1)[-1] for d in details}
    assert {"ErrorInfo", "BadRequest", "RetryInfo"} <= names
    error_info = schema(doc, "ErrorInfo")
    assert error_info["properties"]["@type"]["const"] == "type.googleapis.com/google.rpc.ErrorInfo"


def test_int64_counts_are_strings_with_a_format(doc: Doc) -> None:
    like_count = schema(doc, "Post")["properties"]["likeCount"]
    assert like_count["type"] == "string" and like_count["format"] == "int64"


def test_names_servers_and_ids_are_readable(doc: Doc) -> None:
    assert doc["servers"][0]["url"] == "/" and doc["servers"][0]["description"]
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", i) for i in ids)
    assert "getHomeFeed" in ids
    names = doc["components"]["schemas"]
    assert all(re.fullmatch(r"[A-Z][A-Za-z0-9]*", n) for n in names), sorted(names)


def test_the_sse_stream_is_described_as_the_edge_serves_it(doc: Doc) -> None:
    """`GET /v1/events/sse` (chat's SSE server behind the edge) is not a proto method, yet
    a browser client needs it: the ticket, Last-Event-ID, the event names and their data."""
    from socialmesh.chat.v1 import chat_pb2

    from services.chat import sse

    stream = doc["paths"][sse.PATH]["get"]
    parameters = {p["name"]: p for p in stream["parameters"]}
    assert parameters["ticket"]["in"] == "query"
    assert "/v1/events:ticket" in parameters["ticket"]["description"]
    assert "/v1/events:ticket" in doc["paths"]  # where the ticket comes from
    assert parameters["Last-Event-ID"]["in"] == "header"
    assert parameters["since"]["in"] == "query"
    assert stream["security"] == [{"bearer": []}]
    content = stream["responses"]["200"]["content"]
    assert list(content) == ["text/event-stream"]
    sse_content = content["text/event-stream"]
    assert sse_content["x-sse-data"] == {"$ref": "#/components/schemas/ChatEvent"}
    # Every `event:` name the server writes (sse.event_kind of each ChatEvent kind), each
    # with a ChatEvent as its data; a stream that fails after it started ends with `error`.
    kinds = chat_pb2.ChatEvent.DESCRIPTOR.oneofs_by_name["event"].fields
    written = {sse.event_kind(chat_pb2.ChatEvent(**{f.name: {}})) for f in kinds}
    events = sse_content["x-sse-events"]
    assert set(events) == written | {"error"}
    for name in written:
        assert events[name]["data"] == {"$ref": "#/components/schemas/ChatEvent"}, name
        assert events[name]["description"], name
        assert f"`{name}`" in sse_content["schema"]["description"]
    assert events["error"]["data"] == {"$ref": "#/components/schemas/Status"}
    assert f"retry: {sse.RECONNECT_MILLISECONDS}" in stream["description"]
    frame = sse.frame(chat_pb2.ChatEvent(cursor="c1", heartbeat={})).decode()
    assert frame.startswith("id: c1\nevent: heartbeat\ndata: {")  # as the description says
    for status in ("204", "default"):
        assert stream["responses"][status]["description"]


def test_the_refresh_cookie_is_described_on_the_auth_calls(doc: Doc) -> None:
    """The refresh token as an HttpOnly cookie (services/user/cookies.py): the header that
    asks for it, the cookies login and refresh set, the cookie refresh reads, and logout
    clearing them."""
    from services.user import cookies

    def parameter(op: dict[str, Any], name: str) -> dict[str, Any]:
        (found,) = [p for p in op.get("parameters", []) if p["name"] == name]
        return found

    login = doc["paths"]["/v1/auth:login"]["post"]
    refresh = doc["paths"]["/v1/auth:refresh"]["post"]
    for op in (login, refresh):
        transport = parameter(op, cookies.TRANSPORT_HEADER)
        assert transport["in"] == "header"
        assert transport["schema"]["enum"] == ["cookie"]
        set_cookie = op["responses"]["200"]["headers"]["Set-Cookie"]["description"]
        assert f"{cookies.COOKIE_NAME}=" in set_cookie and "HttpOnly" in set_cookie
        assert f"Path={cookies.COOKIE_PATH}" in set_cookie
        assert f"{cookies.HINT_COOKIE_NAME}=1" in set_cookie
    assert not [p for p in login.get("parameters", []) if p["in"] == "cookie"]
    cookie = parameter(refresh, cookies.COOKIE_NAME)
    assert cookie["in"] == "cookie" and not cookie.get("required")
    assert "refreshToken" in cookie["description"]
    assert "Max-Age=0" in refresh["responses"]["default"]["headers"]["Set-Cookie"]["description"]
    for path in ("/v1/auth:logout", "/v1/auth:logoutEverywhere"):
        cleared = doc["paths"][path]["post"]["responses"]["200"]["headers"]["Set-Cookie"]
        assert f"{cookies.COOKIE_NAME}=;" in cleared["description"], path
        assert "Max-Age=0" in cleared["description"], path
    # What a client sends is exactly what the user service reads.
    metadata = [(cookies.TRANSPORT_HEADER, "cookie"), ("cookie", f"{cookies.COOKIE_NAME}=t")]
    assert cookies.wants_cookie(metadata) and cookies.refresh_cookie(metadata) == "t"
