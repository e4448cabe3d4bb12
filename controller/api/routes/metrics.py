"""GET /metrics: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from controller.api.deps import ControllerDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
def metrics(ctrl: ControllerDep) -> Response:
    """All controller metrics."""
    ctrl.refresh_gauges()
    return Response(ctrl.metrics.render(), media_type=CONTENT_TYPE_LATEST)
