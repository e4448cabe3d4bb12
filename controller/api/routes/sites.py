"""GET /api/sites: the sites of this installation (for the web page's picker)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from controller.api.deps import ControllerDep

router = APIRouter(prefix="/api", tags=["sites"])


@router.get("/sites")
def sites(ctrl: ControllerDep) -> list[dict[str, Any]]:
    """Each site with its id, name and whether it runs a queue."""
    return [
        {"id": s.id, "name": s.name, "queue": bool(s.services), "timezone": s.timezone}
        for s in ctrl.cfg.sites
    ]
