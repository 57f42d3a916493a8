"""A fault-injecting TCP proxy (asyncio, in a background thread) in front of PostgreSQL or S3.

``outage(mode)`` makes the upstream unreachable until ``heal()``:

- ``reset``: every open connection is aborted (RST) and new ones are accepted and reset at once,
  as when a database fails over or a load balancer drops its backends;
- ``stall``: nothing is forwarded in either direction and new connections hang, as in a network
  partition; at ``heal()`` the bytes held back flow on (TCP would retransmit them), so clients
  that were mid-query simply see a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Literal

Mode = Literal["up", "reset", "stall"]


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], name: str = "proxy") -> None:
        self.upstream = upstream
        self.name = name
        self.mode: Mode = "up"
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._healed: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name=f"faultproxy-{name}", daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{self.name} proxy did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    # -- faults (called from other threads) ---------------------------------------------------
    def outage(self, mode: Literal["reset", "stall"]) -> None:
        asyncio.run_coroutine_threadsafe(self._set(mode), self._loop).result(timeout=10)

    def heal(self) -> None:
        asyncio.run_coroutine_threadsafe(self._set("up"), self._loop).result(timeout=10)

    async def _set(self, mode: Mode) -> None:
        assert self._healed is not None
        self.mode = mode
        if mode == "up":
            self._healed.set()
            return
        self._healed.clear()
        if mode == "reset":
            for writer in list(self._writers):
                _abort(writer)
            self._writers.clear()

    # -- serving -----------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._healed = asyncio.Event()
        self._healed.set()
        server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", self.port, backlog=512)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "reset":
            _abort(writer)
            return
        assert self._healed is not None
        await self._healed.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            _abort(writer)
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers.discard(writer)
            self._writers.discard(up_writer)
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._healed is not None
        try:
            while data := await reader.read(65536):
                if self.mode == "stall":
                    await self._healed.wait()
                if writer.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if not writer.is_closing():
                with contextlib.suppress(Exception):
                    writer.write_eof()


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    with contextlib.suppress(Exception):
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    transport.abort()
