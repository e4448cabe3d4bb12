"""Fan-out of state changes to live subscribers (the SSE stream at GET /api/events).

Publishing never blocks ingest: each subscriber has a bounded queue, and a
subscriber too slow to keep up loses its oldest events (counted), not the
controller its pace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

Event = tuple[int, str, dict[str, Any]]


class EventHub:
    """State changes (queue, water, alert, device) to every current subscriber."""

    queue_size = 256

    def __init__(self) -> None:
        self.seq = 0
        self.dropped = 0
        self._subscribers: set[asyncio.Queue[Event]] = set()

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Hand one change to every subscriber, now."""
        self.seq += 1
        event = (self.seq, kind, data)
        for q in self._subscribers:
            if q.full():
                q.get_nowait()
                self.dropped += 1
            q.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue of events from now on, for the lifetime of the context."""
        q: asyncio.Queue[Event] = asyncio.Queue(self.queue_size)
        self._subscribers.add(q)
        try:
            yield q
        finally:
            self._subscribers.discard(q)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
