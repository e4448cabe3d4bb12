"""Serial lines for a SerialBoard: a TCP port (`socket://HOST:PORT`) and a pty (`/dev/pts/N`).

Both carry raw bytes both ways, as a USB-serial adapter does; pyserial (and so
mpremote and `sigap deploy --port`) opens either. Output written while nobody
listens is lost, as on a UART with nothing attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tty

from simulator.repl import SerialBoard


class TcpPort:
    """The board's console on a TCP port; one client at a time (a newer one takes over)."""

    def __init__(self, board: SerialBoard, host: str = "127.0.0.1", port: int = 0):
        self.board = board
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def name(self) -> str:
        """What to give mpremote or `sigap deploy --port`."""
        return f"socket://{self.host}:{self.port}"

    async def start(self) -> TcpPort:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for old in list(self._clients):
            old.close()
        self._clients.add(writer)

        def sink(data: bytes) -> None:
            if not writer.is_closing():
                writer.write(data)

        self.board.attach(sink)
        try:
            while data := await reader.read(4096):
                self.board.feed(data)
        except ConnectionError:
            pass
        finally:
            self.board.detach(sink)
            self._clients.discard(writer)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._clients):
                w.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None


class PtyPort:
    """The board's console on a pseudo-terminal: `name` is the path a program opens."""

    def __init__(self, board: SerialBoard):
        self.board = board
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # bytes pass unchanged: no echo, no CR/LF translation
        os.set_blocking(self.master, False)
        self.name = os.ttyname(self._slave)
        self._pending = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: asyncio.TimerHandle | None = None

    def start(self) -> PtyPort:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.master, self._readable)
        self.board.attach(self._sink)
        return self

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == errno.EIO:  # no one has the other end open
                return
            raise
        if data:
            self.board.feed(data)

    def _sink(self, data: bytes) -> None:
        self._pending += data
        self._flush()

    def _flush(self) -> None:
        while self._pending:
            try:
                n = os.write(self.master, self._pending)
            except BlockingIOError:
                # Nobody reads the other end: keep a little, drop the rest (a UART would).
                del self._pending[:-4096]
                if self._loop is not None and self._retry is None:
                    self._retry = self._loop.call_later(0.05, self._retry_flush)
                return
            del self._pending[:n]

    def _retry_flush(self) -> None:
        self._retry = None
        self._flush()

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self.board.detach(self._sink)
        if self._loop is not None:
            self._loop.remove_reader(self.master)
        os.close(self.master)
        os.close(self._slave)
