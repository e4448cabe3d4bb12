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

SESSION_COOKIE = "sigap_session"
"""The web login's cookie: a signed token as from POST /api/token, HttpOnly, SameSite=Strict."""
CSRF_HEADER = "X-Sigap-CSRF"
"""Header that a cookie-authenticated request changing state must carry (value from /api/login or /api/me)."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _user(request: Request, token: Annotated[str | None, Depends(_bearer)]) -> User:
    """The caller, from an ``Authorization: Bearer`` token or else the session cookie; 401 without either.

    A bearer token is explicit: a wrong one is a 401 even when a session cookie is
    present too, and it needs no CSRF check (a browser never adds it by itself).

    CSRF: a browser attaches the session cookie to any request to this origin,
    so a request that changes state (not GET/HEAD/OPTIONS) authenticated by the
    cookie must also carry ``X-Sigap-CSRF`` with the value derived from that
    session (``Auth.csrf_token``, handed to the page by /api/login and /api/me),
    else 403. SameSite=Strict already keeps the cookie off cross-site requests in
    current browsers; the header is the second wall, and does not rely on
    ``Origin``/``Referer``, which proxies and old browsers drop. Another site
    cannot read the value (no CORS here) and cannot send a custom header cross-
    origin without a CORS preflight that this server does not grant. Deriving it
    from the session (HMAC under the token secret) means nothing is stored and it
    changes with each login.
    """
    auth = request.app.state.controller.auth
    if token:
        user: User | None = auth.verify(token)
    else:
        session = request.cookies.get(SESSION_COOKIE)
        user = auth.verify(session) if session else None
        if user is not None and session and request.method not in SAFE_METHODS:
            if not auth.check_csrf(session, request.headers.get(CSRF_HEADER, "")):
                raise HTTPException(status_code=403, detail=f"missing or wrong {CSRF_HEADER} header")
        request.state.session = session
    if user is None:
        raise HTTPException(status_code=401, detail="login required", headers={"WWW-Authenticate": "Bearer"})
    return user


def optional_user(request: Request) -> User | None:
    """The caller from a bearer token or the session cookie, or None (for public routes that show more to a login)."""
    auth = request.app.state.controller.auth
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        found: User | None = auth.verify(token)
        return found
    session = request.cookies.get(SESSION_COOKIE)
    return auth.verify(session) if session else None


def _operator(user: Annotated[User, Depends(_user)]) -> User:
    if not role_allows(user.role, "operator"):
        raise HTTPException(status_code=403, detail=f"needs the operator role (you are {user.role})")
    return user


UserDep = Annotated[User, Depends(_user)]
"""Any logged-in user (viewer, operator, admin), by bearer token or session cookie."""
OperatorDep = Annotated[User, Depends(_operator)]
"""A logged-in operator or admin."""
