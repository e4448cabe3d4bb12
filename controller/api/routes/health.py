"""GET /api/health: broker and database reachability."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from controller.api.deps import ControllerDep

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health")
def health(ctrl: ControllerDep) -> JSONResponse:
    """{"status": "ok", "broker": "connected", "db": "ok"}; 503 naming the failing part."""
    broker = "connected" if ctrl.bus.is_connected else "disconnected"
    db = "ok" if ctrl.store.ping() else "unreachable"
    ok = broker == "connected" and db == "ok"
    body = {"status": "ok" if ok else "degraded", "broker": broker, "db": db}
    if not ok:
        body["failing"] = ",".join(p for p, good in (("broker", broker == "connected"), ("db", db == "ok")) if not good)
    return JSONResponse(body, status_code=200 if ok else 503)
