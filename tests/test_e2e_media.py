"""The media service end to end through Envoy (a real `socialmesh up`): raw REST uploads.

The request body is the file itself (`body: "file"`, a google.api.HttpBody), which
Envoy streams to the service as a client stream without buffering, over HTTP/1.1
(pieces up to 1 MiB) and HTTP/2 (16 KiB frames) alike.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from .e2e_support import UpProcess, field_violations, person

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


def noisy_png(width: int, height: int) -> bytes:
    """A PNG that does not compress (random pixels), so its size is about w*h*3."""
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def upload(
    c: httpx.Client, headers: dict[str, str], data: bytes, content_type: str, **params: str
) -> httpx.Response:
    # Percent-encoding (quote), not form encoding: the transcoder reads `+` as a plus.
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return c.post(
        f"/v1/media:upload?{query}",
        content=data,
        headers={**headers, "content-type": content_type},
    )


def ready(c: httpx.Client, headers: dict[str, str], media_id: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        r = c.get(f"/v1/media/{media_id}", headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["state"] != "MEDIA_STATE_PROCESSING":
            return r.json()
        assert time.monotonic() < deadline, "processing did not finish"
        time.sleep(0.2)


def test_raw_upload_over_http1_then_served(client: httpx.Client) -> None:
    _, h = person(client)
    data = noisy_png(700, 500)  # ~1 MB: several pieces over HTTP/1.1
    request_id = uuid.uuid4().hex
    r = upload(
        client, h, data, "image/jpeg", filename="cat.jpg", description="a cat", requestId=request_id
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["contentType"] == "image/png" and body["declaredContentType"] == "image/jpeg"
    assert body["filename"] == "cat.jpg" and body["description"] == "a cat"
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert int(body["sizeBytes"]) == len(data)
    # A retry with the same request id returns the same media.
    again = upload(client, h, data, "image/png", requestId=request_id)
    assert again.status_code == 200 and again.json()["mediaId"] == body["mediaId"]

    done = ready(client, h, body["mediaId"])
    assert done["state"] == "MEDIA_STATE_READY" and done["blurhash"]
    small = next(
        v
        for v in done["variants"]
        if (v["kind"], v["contentType"]) == ("VARIANT_KIND_W320", "image/webp")
    )
    assert any(v["contentType"] == "image/avif" for v in done["variants"])
    assert body["mediaId"] not in small["url"]
    # Absolute: a client on another origin (or a native image loader) uses it as it is.
    assert small["url"].startswith(f"{client.base_url}/v1/media/files/"), small["url"]
    served = client.get(small["url"])  # anonymous: the URL itself is the capability
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/webp"
    assert served.headers["etag"] == f'"{small["sha256"]}"'
    assert "immutable" in served.headers["cache-control"]
    assert Image.open(io.BytesIO(served.content)).size == (320, 229)
    # `socialmesh up` routes file URLs to the media file server, so HTTP caching works.
    part = client.get(small["url"], headers={"range": "bytes=0-9"})
    assert part.status_code == 206 and len(part.content) == 10
    assert part.headers["content-range"].startswith("bytes 0-9/")
    fresh = client.get(small["url"], headers={"if-none-match": served.headers["etag"]})
    assert fresh.status_code == 304
    assert client.head(small["url"]).headers["content-length"] == str(len(served.content))
    # Other users cannot read it by id; nobody can download by a made-up token.
    _, stranger = person(client)
    assert client.get(f"/v1/media/{body['mediaId']}", headers=stranger).status_code == 403
    assert client.get("/v1/media/files/notatoken/w320.webp").status_code == 404


def test_raw_upload_over_http2(stack: UpProcess, client: httpx.Client) -> None:
    _, h = person(client)
    data = noisy_png(800, 700)  # ~1.7 MB: over a hundred 16 KiB frames
    with httpx.Client(base_url=stack.edge, http1=False, http2=True, timeout=30) as h2:
        r = upload(h2, h, data, "image/png", filename="big.png")
        assert r.http_version == "HTTP/2"
    assert r.status_code == 200, r.text
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert int(r.json()["sizeBytes"]) == len(data)


def test_refusals_over_rest(client: httpx.Client) -> None:
    _, h = person(client)
    text = upload(client, h, b"definitely not a picture " * 40, "image/png")
    assert text.status_code == 400
    assert "decided by its content" in field_violations(text.json())["file"]
    over = upload(client, h, noisy_png(64, 64)[:500] + os.urandom(21 * MIB), "image/png")
    assert over.status_code == 400
    assert "20 MiB limit" in field_violations(over.json())["file"]
    assert upload(client, {}, noisy_png(8, 8), "image/png").status_code == 401
    # BatchGetMedia is internal: the edge does not route it.
    internal = client.post("/socialmesh.media.v1.MediaService/BatchGetMedia", json={}, headers=h)
    assert internal.status_code == 404
