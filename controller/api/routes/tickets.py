"""GET /api/tickets/{token}: a citizen's ticket status (the link on the printed ticket)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from controller.api.deps import ControllerDep

router = APIRouter(prefix="/api/tickets", tags=["tickets"])


@router.get("/{token}")
def ticket_status(token: str, ctrl: ControllerDep) -> dict[str, Any]:
    """Status, people ahead and estimated wait of one ticket."""
    view = ctrl.queues.ticket_view(token)
    if view is None:
        raise HTTPException(status_code=404, detail="no such ticket")
    return view
