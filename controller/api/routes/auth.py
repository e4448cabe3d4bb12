"""POST /api/token: OAuth2 password flow → bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import OAuth2PasswordRequestForm

from controller.api.deps import ControllerDep

router = APIRouter(prefix="/api", tags=["auth"])


@router.post("/token")
def token(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()],
          ctrl: ControllerDep) -> dict[str, str]:
    """Form fields username, password → {"access_token", "token_type": "bearer"}; 401 bad; 429 too many tries."""
    client = request.client.host if request.client else ""
    if ctrl.auth.limited(client):
        raise HTTPException(status_code=429, detail="too many failed logins; try again in a minute",
                            headers={"Retry-After": str(ctrl.auth.retry_after_s(client))})
    tok = ctrl.auth.login(form.username, form.password, client)
    if tok is None:
        raise HTTPException(status_code=401, detail="wrong username or password",
                            headers={"WWW-Authenticate": "Bearer"})
    return {"access_token": tok, "token_type": "bearer"}
