"""GET /api/sensors and /api/sensors/{id}/readings: water levels now and their history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException

from controller.api.deps import ControllerDep

router = APIRouter(prefix="/api/sensors", tags=["sensors"])

DEFAULT_RANGE = timedelta(hours=24)
RAW_UP_TO = timedelta(days=2)
"""Longer ranges are answered from 5-minute aggregates (mean level, with min, max and n)."""
MAX_ROWS = 100_000
"""Raw readings returned at most by one request (a year at one per 5 minutes)."""


def parse_time(value: str, name: str) -> int:
    """ISO 8601 (a time without offset is UTC) or Unix seconds → Unix seconds; 422 otherwise."""
    v = value.strip()
    try:
        return int(float(v))
    except (ValueError, OverflowError):
        pass
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00") if v.endswith("Z") else v)
    except ValueError:
        raise HTTPException(
            status_code=422,
            detail=f"{name}: {value!r} is neither ISO 8601 (2026-11-23T08:00:00+07:00) nor Unix seconds",
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


@router.get("")
def sensors(ctrl: ControllerDep) -> list[dict[str, Any]]:
    """Every water sensor with its level, status (``offline`` while offline), rate and last reading time."""
    return ctrl.water.sensor_views()


@router.get("/{sensor_id}/readings")
def readings(sensor_id: str, ctrl: ControllerDep, since: str | None = None,
             until: str | None = None) -> list[dict[str, Any]]:
    """Accepted readings ``[{"ts", "level_mm"}]`` with since <= ts <= until, oldest first (default: last 24 h).

    Up to 2 days: raw readings. Longer: one row per 5-minute bucket, ``ts`` its
    start and ``level_mm`` its mean, plus ``min_mm``, ``max_mm`` and ``n``.
    """
    if sensor_id not in ctrl.water.sensors:
        raise HTTPException(status_code=404, detail=f"no water sensor {sensor_id!r}")
    end = parse_time(until, "until") if until else int(ctrl.clock().timestamp())
    start = parse_time(since, "since") if since else end - int(DEFAULT_RANGE.total_seconds())
    if start > end:
        raise HTTPException(status_code=422, detail=f"since ({start}) is after until ({end})")
    if end - start > RAW_UP_TO.total_seconds():
        return [
            {"ts": b["bucket"], "level_mm": round(b["level_sum"] / b["n"]), "min_mm": b["level_min"],
             "max_mm": b["level_max"], "n": b["n"]}
            for b in ctrl.store.load_aggregates(sensor_id, start, end)
        ]
    rows = ctrl.store.load_readings(sensor_id, start, end, limit=MAX_ROWS)
    return [{"ts": r["ts"], "level_mm": r["level_mm"]} for r in rows]
