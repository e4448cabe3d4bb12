"""GET /api/events: Server-Sent Events stream of state changes (public)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from controller.api.deps import ControllerDep

router = APIRouter(prefix="/api", tags=["events"])

KEEPALIVE_S = 15.0


def sse(event_id: int, kind: str, data: object) -> bytes:
    """One SSE frame."""
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


@router.get("/events")
async def events(request: Request, ctrl: ControllerDep) -> StreamingResponse:
    """Events `queue` (a site's snapshot), `water` (a sensor's level/status), `alert` (an alert
    change) and `device` (a board online/offline); first a `hello`; a comment every 15 s keeps
    proxies from closing the stream."""

    async def stream() -> AsyncIterator[bytes]:
        async with ctrl.events.subscribe() as q:
            yield sse(ctrl.events.seq, "hello", {"version": ctrl.version})
            while not await request.is_disconnected():
                try:
                    event_id, kind, data = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                yield sse(event_id, kind, data)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
