"""GET /api/alerts, POST /api/alerts/{id}/ack and /resolve (login; ack and resolve need an operator)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, HTTPException

from controller.api.deps import ControllerDep, OperatorDep, UserDep
from controller.domain.alerts import InvalidTransition, UnknownAlert

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

StateFilter = Literal["open", "acknowledged", "resolved", "active"]


@router.get("")
def alerts(ctrl: ControllerDep, user: UserDep, state: StateFilter | None = None) -> list[dict[str, Any]]:
    """Alerts oldest first; ``state`` filters (``active`` = open or acknowledged)."""
    return ctrl.water.alert_views(state)


def _change(ctrl: Any, action: str, alert_id: int, user: str, note: str | None) -> dict[str, Any]:
    try:
        result: dict[str, Any] = getattr(ctrl.water, action)(alert_id, user, note)
        return result
    except UnknownAlert as e:
        raise HTTPException(status_code=404, detail=str(e)) from None
    except InvalidTransition as e:
        raise HTTPException(status_code=409, detail=str(e)) from None


@router.post("/{alert_id}/ack")
def ack(alert_id: int, ctrl: ControllerDep, user: OperatorDep,
        note: str | None = Body(None, embed=True, max_length=500)) -> dict[str, Any]:
    """Acknowledge an open alert (optional JSON body ``{"note": "…"}``); 409 when it is not open."""
    return _change(ctrl, "ack", alert_id, user.name, note)


@router.post("/{alert_id}/resolve")
def resolve(alert_id: int, ctrl: ControllerDep, user: OperatorDep,
            note: str | None = Body(None, embed=True, max_length=500)) -> dict[str, Any]:
    """Resolve an open or acknowledged alert; 409 when already resolved."""
    return _change(ctrl, "resolve", alert_id, user.name, note)
