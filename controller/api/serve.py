"""Serving a FastAPI app from an event loop the process already runs (controller and simulator)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside our loop: the process, not uvicorn, owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def parse_hostport(listen: str, min_port: int = 1) -> tuple[str, int]:
    """HOST:PORT -> (host, port), the port from min_port (0: any free one) to 65535;
    ValueError naming the expected shape."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not min_port <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port from {min_port} to 65535, got {listen!r}")
    return host, int(port)
