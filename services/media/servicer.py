"""MediaService's RPCs: each reads the caller and the request, delegates to a job, and replies.

The jobs: `uploads.Uploads` (streamed uploads checked by content), `library.Library`
(an uploader's reads and changes, internal batch reads), `attachments.attach`
(AttachMedia), `downloads` (variant bytes over gRPC; `files.FileServer` serves them
over plain HTTP when MEDIA_HTTP_PORT is set) and `collector.Collector` (unattached
uploads and unreferenced blobs). Consumer groups, one class each, registered in
`on_ready`: `processor.Processor` (`media-processing`: variants, READY/FAILED) and
`post_attachments.PostAttachments` (`media-attach`). Tunables are `config.MediaConfig`;
the jobs read `self.config` when they run, so a change to it is seen by all of them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2
from socialmesh.media.v1 import media_pb2, media_pb2_grpc

from services.kit.auth import require_caller
from services.kit.consumers import ConsumerGroup
from services.kit.errors import InvalidArgument
from services.kit.idempotency import apply_idempotency_key
from services.kit.server import Runtime, ServicerBase

from .attachments import attach
from .blobs import BlobStore
from .collector import Collector, collect
from .config import MediaConfig
from .downloads import FIRST_PIECE, PIECE, find_variant
from .files import CACHE_FOREVER, FileServer
from .library import Library
from .post_attachments import PostAttachments
from .processor import Processor
from .store import MediaStore
from .uploads import Uploads


class MediaServicer(ServicerBase, media_pb2_grpc.MediaServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.config = MediaConfig.from_env(os.environ)
        self._store: MediaStore | None = None
        self._blobs: BlobStore | None = None
        self._library: Library | None = None
        self._uploads: Uploads | None = None
        self._processor: Processor | None = None
        self._attachments: PostAttachments | None = None
        self._gc: Collector | None = None
        #: The plain-HTTP file handler, when MEDIA_HTTP_PORT is set.
        self.files: FileServer | None = None

    async def on_ready(self) -> None:
        self._store = store = MediaStore(self._rt.db, self._rt.ids)
        self._blobs = blobs = BlobStore(self.config.storage_url)

        def config() -> MediaConfig:
            return self.config

        self._library = library = Library(store, config, self.poke_relay)
        self._uploads = Uploads(store, blobs, library, config, self.poke_relay)
        self._processor = Processor(store, blobs, config, self.poke_relay)
        self._attachments = PostAttachments(store)
        groups: tuple[ConsumerGroup, ...] = (self._processor, self._attachments)
        for group in groups:
            await self.consume(group.GROUP, group.handlers(), start=group.START)
        self._gc = Collector(store, blobs, config, self.poke_relay)
        self._gc.start()
        if self.config.http_port is not None:
            self.files = FileServer(lambda: self.store, lambda: self.blobs)
            await self.files.start(self._rt.settings.grpc_host, self.config.http_port)

    async def on_stop(self) -> None:
        if self._gc is not None:
            await self._gc.stop()
        if self.files is not None:
            await self.files.stop()
        await super().on_stop()

    @property
    def store(self) -> MediaStore:
        return self.ready(self._store)

    @property
    def blobs(self) -> BlobStore:
        return self.ready(self._blobs)

    @property
    def library(self) -> Library:
        return self.ready(self._library)

    # -- the jobs' entry points under their former names (tests drive them directly) --

    @property
    def _on_uploaded(self) -> Any:
        return self.ready(self._processor).on_uploaded

    @property
    def _on_post_created(self) -> Any:
        return self.ready(self._attachments).on_post_created

    async def collect(self, *, unattached_ttl: float, blob_grace: float) -> tuple[int, int]:
        """One collection pass now: (unattached media deleted, blobs deleted)."""
        return await collect(
            self.store,
            self.blobs,
            self.poke_relay,
            unattached_ttl=unattached_ttl,
            blob_grace=blob_grace,
        )

    # -- RPCs ----------------------------------------------------------------------

    async def UploadMedia(
        self,
        request_iterator: AsyncIterator[media_pb2.UploadMediaRequest],
        context: grpc.aio.ServicerContext,
    ) -> media_pb2.Media:
        caller = require_caller()
        first = await anext(aiter(request_iterator), None)
        if first is None:
            raise InvalidArgument([("file", "required: the upload stream was empty")])
        if not isinstance(first, media_pb2.UploadMediaRequest):
            raise InvalidArgument([("request", "not a well-formed UploadMediaRequest")])
        apply_idempotency_key(first, context.invocation_metadata())
        uploads = self.ready(self._uploads)
        return await uploads.upload(caller.user_id, first, request_iterator)

    async def GetMedia(
        self, request: media_pb2.GetMediaRequest, context: grpc.aio.ServicerContext
    ) -> media_pb2.Media:
        caller = require_caller()
        return await self.library.owned(caller.user_id, request.media_id)

    async def UpdateMedia(
        self, request: media_pb2.UpdateMediaRequest, context: grpc.aio.ServicerContext
    ) -> media_pb2.Media:
        caller = require_caller()
        return await self.library.update(caller.user_id, request)

    async def DeleteMedia(
        self, request: media_pb2.DeleteMediaRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        caller = require_caller()
        await self.library.delete(caller.user_id, request.media_id)
        return empty_pb2.Empty()

    async def BatchGetMedia(
        self, request: media_pb2.BatchGetMediaRequest, context: grpc.aio.ServicerContext
    ) -> media_pb2.BatchGetMediaResponse:
        return await self.library.batch(list(request.media_ids))

    async def AttachMedia(
        self, request: media_pb2.AttachMediaRequest, context: grpc.aio.ServicerContext
    ) -> media_pb2.AttachMediaResponse:
        return await attach(self.store, self.library, request)

    async def Download(
        self, request: media_pb2.DownloadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        variant = await find_variant(self.store, request)
        await context.send_initial_metadata(
            (("etag", f'"{variant.sha256}"'), ("cache-control", CACHE_FOREVER))
        )
        async for piece in self.blobs.stream(variant.sha256, first=FIRST_PIECE, rest=PIECE):
            yield httpbody_pb2.HttpBody(content_type=variant.content_type, data=piece)
