"""Debian's Chromium driven by Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import shutil

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No internet here: keep Chromium from calling home (and the UI must not need it).
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Path of the system Chromium (SIGAP_CHROMIUM overrides)."""
    path = os.environ.get("SIGAP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        raise RuntimeError("chromium not found: run `make test` (it installs Debian's package)")
    return path
