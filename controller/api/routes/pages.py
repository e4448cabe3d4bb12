"""HTML pages: the live hall page and a citizen's ticket page (the QR code's link)."""

from __future__ import annotations

import pathlib

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = pathlib.Path(__file__).resolve().parents[2] / "web" / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """The live queue page."""
    return FileResponse(STATIC / "index.html")


@router.get("/t/{token}")
def ticket_page(token: str) -> FileResponse:
    """The page a citizen opens from the printed ticket's QR code; it reads /api/tickets/{token}."""
    return FileResponse(STATIC / "ticket.html")
