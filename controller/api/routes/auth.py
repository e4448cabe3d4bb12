"""POST /api/token (OAuth2 password flow → bearer token); the web login: POST /api/login, /api/logout, GET /api/me."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from controller.api.deps import SESSION_COOKIE, ControllerDep, UserDep
from controller.auth import TOKEN_TTL_S

router = APIRouter(prefix="/api", tags=["auth"])


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _login_or_raise(ctrl: Any, request: Request, username: str, password: str) -> str:
    """A token for good credentials; 429 (with Retry-After) for a client that failed too often, 401 for bad ones."""
    client = _client(request)
    if ctrl.auth.limited(client):
        raise HTTPException(status_code=429, detail="too many failed logins; try again in a minute",
                            headers={"Retry-After": str(ctrl.auth.retry_after_s(client))})
    tok: str | None = ctrl.auth.login(username, password, client)
    if tok is None:
        raise HTTPException(status_code=401, detail="wrong username or password",
                            headers={"WWW-Authenticate": "Bearer"})
    return tok


@router.post("/token")
def token(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()],
          ctrl: ControllerDep) -> dict[str, str]:
    """Form fields username, password → {"access_token", "token_type": "bearer"}; 401 bad; 429 too many tries."""
    return {"access_token": _login_or_raise(ctrl, request, form.username, form.password), "token_type": "bearer"}


async def _credentials(request: Request) -> tuple[str, str]:
    """`username` and `password` from a JSON object or a form body; 422 when either is missing."""
    data: Any
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        try:
            data = json.loads(await request.body())
        except ValueError:
            raise HTTPException(status_code=422, detail="body is not JSON") from None
    else:
        data = dict(await request.form())
    if not isinstance(data, dict):
        raise HTTPException(status_code=422, detail="expected an object with username and password")
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        raise HTTPException(status_code=422, detail="username and password are required")
    return username, password


@router.post("/login")
def login(request: Request, response: Response, ctrl: ControllerDep,
          credentials: Annotated[tuple[str, str], Depends(_credentials)]) -> dict[str, str]:
    """JSON or form `username`, `password` → session cookie and {"user", "role", "csrf"}; 401 bad; 429 too many.

    The cookie holds a signed token like /api/token's (same secret, same expiry),
    HttpOnly, SameSite=Strict, Path=/, Secure on https. `csrf` goes in the
    X-Sigap-CSRF header of the session's state-changing requests.
    """
    tok = _login_or_raise(ctrl, request, *credentials)
    user = ctrl.auth.verify(tok)
    if user is None:  # the user was deleted in between
        raise HTTPException(status_code=401, detail="wrong username or password")
    response.set_cookie(SESSION_COOKIE, tok, max_age=TOKEN_TTL_S, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return {"user": user.name, "role": user.role, "csrf": ctrl.auth.csrf_token(tok)}


@router.post("/logout", status_code=204)
def logout(request: Request, response: Response, ctrl: ControllerDep) -> None:
    """Ends the session: its token is revoked (a copy of the cookie stops working too)
    and the cookie cleared (also when it is already gone or expired)."""
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        ctrl.auth.revoke(session)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


@router.get("/me")
def me(request: Request, ctrl: ControllerDep, user: UserDep) -> dict[str, str]:
    """The logged-in user {"user", "role"}, plus "csrf" when logged in by the session cookie; 401 otherwise."""
    out = {"user": user.name, "role": user.role}
    session = getattr(request.state, "session", None)
    if session:
        out["csrf"] = ctrl.auth.csrf_token(session)
    return out
