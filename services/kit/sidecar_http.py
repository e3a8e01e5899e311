"""A small aiohttp server a service runs beside its gRPC port, for what gRPC cannot
serve to browsers: media's file bytes (Range, 304), chat's EventSource stream. The
edge routes one path prefix to it; the subclass says which handlers answer there."""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger("socialmesh.http")


class SidecarHttpServer:
    """Start/stop of one aiohttp app; subclasses build it in `app()`."""

    #: What it serves, for the start-up log line.
    label = "HTTP"

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        #: The bound port (the real one when started with port 0).
        self.port = 0

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else port
        log.info("%s served over HTTP on %s:%d", self.label, host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
