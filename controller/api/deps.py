"""Dependency aliases for routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer

from controller.auth import User, role_allows

if TYPE_CHECKING:
    from controller.service import Controller


def _controller(request: Request) -> Any:
    return request.app.state.controller


ControllerDep = Annotated["Controller", Depends(_controller)]

_bearer = OAuth2PasswordBearer(tokenUrl="/api/token", auto_error=False)


def _user(request: Request, token: Annotated[str | None, Depends(_bearer)]) -> User:
    user = request.app.state.controller.auth.verify(token) if token else None
    if user is None:
        raise HTTPException(status_code=401, detail="login required", headers={"WWW-Authenticate": "Bearer"})
    return user


def _operator(user: Annotated[User, Depends(_user)]) -> User:
    if not role_allows(user.role, "operator"):
        raise HTTPException(status_code=403, detail=f"needs the operator role (you are {user.role})")
    return user


UserDep = Annotated[User, Depends(_user)]
"""Any logged-in user (viewer, operator, admin)."""
OperatorDep = Annotated[User, Depends(_operator)]
"""A logged-in operator or admin."""
