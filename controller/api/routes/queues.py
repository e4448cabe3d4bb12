"""GET /api/queues/{site}: the live queue snapshot of a site."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from controller.api.deps import ControllerDep

router = APIRouter(prefix="/api/queues", tags=["queues"])


@router.get("/{site}")
def queue_snapshot(site: str, ctrl: ControllerDep) -> dict[str, Any]:
    """Services with waiting counts, counters with what they serve, latest calls."""
    snap = ctrl.queues.snapshot(site)
    if snap is None:
        raise HTTPException(status_code=404, detail=f"no queue site {site!r}")
    return snap
