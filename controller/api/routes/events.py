"""GET /api/events: Server-Sent Events stream of state changes (public)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from fastapi.security import OAuth2PasswordBearer

from controller.api.deps import ControllerDep, optional_user

router = APIRouter(prefix="/api", tags=["events"])

KEEPALIVE_S = 15.0

PEOPLE_FIELDS = ("acked_by", "resolved_by", "note")
"""Who handled an alert and their notes: login data (GET /api/alerts), not for the public stream."""

_bearer = OAuth2PasswordBearer(tokenUrl="/api/token", auto_error=False)


def public_alert_change(data: dict[str, Any]) -> dict[str, Any]:
    """An alert change as anyone may see it: what and when, without who or their notes."""
    out = {k: v for k, v in data.items() if k != "by"}
    if isinstance(data.get("alert"), dict):
        out["alert"] = {k: v for k, v in data["alert"].items() if k not in PEOPLE_FIELDS}
    return out


def sse(event_id: int, kind: str, data: object) -> bytes:
    """One SSE frame."""
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


@router.get("/events")
async def events(request: Request, ctrl: ControllerDep,
                 token: Annotated[str | None, Depends(_bearer)] = None) -> StreamingResponse:
    """Events `queue` (a site's snapshot), `water` (a sensor's level/status), `alert` (an alert
    change; who acted and their notes only with a login, as GET /api/alerts) and `device`
    (a board online/offline); first a `hello`; a comment every 15 s keeps proxies from closing
    the stream."""
    logged_in = optional_user(request) is not None  # a bearer token or the web login's cookie

    async def stream() -> AsyncIterator[bytes]:
        async with ctrl.events.subscribe() as q:
            yield sse(ctrl.events.seq, "hello", {"version": ctrl.version})
            while not await request.is_disconnected():
                try:
                    event_id, kind, data = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if kind == "alert" and not logged_in:
                    data = public_alert_change(data)
                yield sse(event_id, kind, data)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
