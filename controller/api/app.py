"""FastAPI application factory."""

from __future__ import annotations

import pathlib
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from controller.api.routes import (
    alerts,
    auth,
    devices,
    events,
    health,
    metrics,
    pages,
    queues,
    sensors,
    sites,
    tickets,
)

STATIC = pathlib.Path(__file__).resolve().parents[1] / "web" / "static"


def create_app(controller: Any) -> FastAPI:
    """The web app bound to one running Controller."""
    app = FastAPI(title="Sigap", version=controller.version, docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.controller = controller
    routers = (
        health, sites, queues, tickets, sensors, devices, alerts, auth, events, metrics, pages,
    )
    for module in routers:
        r = module.router
        app.include_router(r)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
