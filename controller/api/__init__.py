"""The web layer: FastAPI app, one router per resource (CONTRACT §4)."""

from controller.api.app import create_app

__all__ = ["create_app"]
