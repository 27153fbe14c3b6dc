"""A TCP proxy in front of a server: `cut()` drops every connection at once, as a dying server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class Link:
    """One proxied connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    closed_by: str | None = None  # "client", "server" or "cut" once it is over

    @property
    def open(self) -> bool:
        return self.closed_by is None


class CuttableProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream_port`; `links` lists every connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.links: list[Link] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await asyncio.gather(*self._handlers)
        await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every open connection at once, without a proper goodbye."""
        for link in self.links:
            if link.open:
                link.closed_by = "cut"
                link.client.transport.abort()
                link.upstream.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        link = Link(writer, up_writer)
        self.links.append(link)
        await asyncio.gather(
            self._pipe(link, reader, up_writer, "client"),
            self._pipe(link, up_reader, writer, "server"),
        )

    @staticmethod
    async def _pipe(
        link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, side: str
    ) -> None:
        """Copy one direction until `side` hangs up, then close both ends."""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        if link.open:
            link.closed_by = side
        for end in (link.client, link.upstream):
            end.transport.abort()
