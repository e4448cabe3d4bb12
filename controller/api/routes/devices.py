"""GET /api/devices (login): every board of the registry and every unknown id seen, with presence."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from controller.api.deps import ControllerDep, UserDep

router = APIRouter(prefix="/api/devices", tags=["devices"])


@router.get("")
async def devices(ctrl: ControllerDep, user: UserDep) -> list[dict[str, Any]]:
    """Registry devices (sorted by id), then unknown ids that have published, each with what was last seen.

    `sleeping` is true for a board that disconnected cleanly to deep-sleep
    (`sleep_s` seconds); the water service judges such a board by its readings.
    Async on purpose: presence changes on the event loop, so it is read there.
    """
    seen = ctrl.presence.devices
    out: list[dict[str, Any]] = []
    for dev in sorted(ctrl.cfg.devices, key=lambda d: d.id):
        out.append(_view(dev.id, dev.role, dev.site, True, seen.get(dev.id)))
    registry = {d.id for d in ctrl.cfg.devices}
    for dev_id in sorted(set(seen) - registry):
        out.append(_view(dev_id, None, None, False, seen[dev_id]))
    return out


def _view(dev_id: str, role: str | None, site: str | None, known: bool, d: Any) -> dict[str, Any]:
    online = bool(d is not None and d.online)
    sleep_s = None if d is None or online else d.sleep_s
    return {
        "id": dev_id,
        "role": role,
        "site": site,
        "known": known,
        "online": online,
        "last_seen": d.last_seen.isoformat() if d is not None and d.last_seen is not None else None,
        "fw": d.fw if d is not None else None,
        "rssi": d.rssi if d is not None else None,
        "heap": d.heap if d is not None else None,
        "boot": d.boot if d is not None else None,
        "sleeping": sleep_s is not None,
        "sleep_s": sleep_s,
    }
