"""Dependency aliases for routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

if TYPE_CHECKING:
    from controller.service import Controller


def _controller(request: Request) -> Any:
    return request.app.state.controller


ControllerDep = Annotated["Controller", Depends(_controller)]
