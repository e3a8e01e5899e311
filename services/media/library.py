"""An uploader's media: read one by id, describe it, delete it; and the internal batch
read other services show media from (they decide who may see what)."""

from __future__ import annotations

from collections.abc import Callable

from socialmesh.media.v1 import media_pb2

from services.kit.errors import InvalidArgument, NotFound, PermissionDenied, Reason
from services.kit.validation import Violations, batch_ids, require_positive_id
from services.kit.validation import strip_control_characters as clean

from .config import MediaConfig
from .presenter import media_proto
from .store import MediaRow, MediaStore

MAX_DESCRIPTION = 1500
MAX_BATCH = 100
UPDATABLE_PATHS = ("description",)


class Library:
    """Media reads and owner changes over the store, presented with the current config."""

    def __init__(
        self,
        store: MediaStore,
        config: Callable[[], MediaConfig],
        poke_relay: Callable[[], None],
    ) -> None:
        self._store = store
        self._config = config
        self._poke_relay = poke_relay

    def present(self, row: MediaRow) -> media_pb2.Media:
        return media_proto(row, self._config().public_base_url)

    async def reread(self, media_id: int) -> media_pb2.Media:
        row = await self._store.get(media_id)
        if row is None:
            raise NotFound(f"media {media_id} not found")
        return self.present(row)

    async def owned(self, owner_id: int, media_id: int) -> media_pb2.Media:
        """Media by id, for its uploader only."""
        require_positive_id(media_id, "media_id")
        row = await self._store.get(media_id)
        if row is None:
            raise NotFound(f"media {media_id} not found")
        if row.owner_id != owner_id:
            raise PermissionDenied(
                "only the uploader may read media by id", reason=Reason.NOT_OWNER
            )
        return self.present(row)

    async def update(self, owner_id: int, request: media_pb2.UpdateMediaRequest) -> media_pb2.Media:
        """The description, the one field an uploader may change."""
        v = Violations()
        v.check(request.HasField("media"), "media", "required")
        paths = list(dict.fromkeys(request.update_mask.paths))
        v.check(bool(paths), "update_mask", "name the fields to update: description")
        bad = [p for p in paths if p not in UPDATABLE_PATHS]
        v.check(not bad, "update_mask", f"only description may be updated, not {', '.join(bad)}")
        v.raise_if_any()
        require_positive_id(request.media.media_id, "media.media_id")
        description = clean(request.media.description).strip()
        if len(description) > MAX_DESCRIPTION:
            raise InvalidArgument([("media.description", f"at most {MAX_DESCRIPTION} characters")])
        await self._store.update_description(request.media.media_id, owner_id, description)
        return await self.reread(request.media.media_id)

    async def delete(self, owner_id: int, media_id: int) -> None:
        require_positive_id(media_id, "media_id")
        await self._store.delete(media_id, owner_id)
        self._poke_relay()

    async def batch(self, media_ids: list[int]) -> media_pb2.BatchGetMediaResponse:
        """Internal (never routed by the edge): the calling service decides who may see
        what (post visibility, chat membership) and checks owner and state itself."""
        ids = batch_ids(media_ids, "media_ids", MAX_BATCH)
        found = await self._store.get_many(ids)
        return media_pb2.BatchGetMediaResponse(
            media=[self.present(found[i]) for i in ids if i in found]
        )
