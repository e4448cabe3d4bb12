"""Build a board's settings.json from the site config: one source of truth.

`sigap deploy` writes the result onto the board's flash; the simulator hands the
same dict to a virtual board. Secrets (WiFi, broker password) come from a
separate secrets file and are merged in only at deploy time.
"""

from __future__ import annotations

from typing import Any

from hardware.pinmap import settings_pins


def board_settings(cfg: Any, device_id: str, broker_host: str = "127.0.0.1", broker_port: int = 1883) -> dict[str, Any]:
    """The settings dict for one device of the site config (no secrets)."""
    dev = cfg.device(device_id)
    if dev is None:
        raise KeyError(f"no device {device_id!r} in the site config")
    s: dict[str, Any] = {
        "device_id": dev.id,
        "role": dev.role,
        "site": dev.site,
        "prefix": cfg.sigap.prefix,
        "broker_host": broker_host,
        "broker_port": broker_port,
    }
    # Pins and buses come from the board profile's pin map in hardware/pins/ (one source of truth).
    s.update(settings_pins(dev))
    details = dev.model_dump(exclude={"id", "site", "role"})
    s.update({k: v for k, v in details.items() if v is not None})
    if dev.role == "water":
        s["siren_mm"] = dev.siren_level_mm  # the awas threshold unless set: the board needs a number
    return s
