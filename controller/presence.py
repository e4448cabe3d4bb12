"""Which boards are online, from their retained `dev/{id}/state` messages."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

log = logging.getLogger("sigap.presence")


@dataclass
class DeviceSeen:
    """What the controller knows of one board."""

    id: str
    known: bool
    online: bool = False
    boot: int | None = None
    last_seen: datetime | None = None
    fw: str | None = None
    rssi: int | None = None
    heap: int | None = None
    sleep_s: int | None = None


class Presence:
    """Applies birth, Will and clean-shutdown states; ignores stale Wills."""

    def __init__(self, store: Any):
        self.store = store
        self.devices: dict[str, DeviceSeen] = {}
        for row in store.load_devices():
            self.devices[row["id"]] = DeviceSeen(
                id=row["id"], known=row["known"], online=row["online"], boot=row["boot"],
                last_seen=row["last_seen"], fw=row["fw"], rssi=row["rssi"], heap=row["heap"],
            )

    def seen(self, device_id: str, known: bool, now: datetime) -> DeviceSeen:
        """Note any message from a board (known or not)."""
        d = self.devices.get(device_id)
        if d is None:
            d = self.devices[device_id] = DeviceSeen(id=device_id, known=known)
        d.known = known
        d.last_seen = now
        return d

    def on_state(self, device_id: str, known: bool, msg: dict[str, Any], now: datetime) -> bool:
        """Apply a state message; False when it is a stale Will from an older boot."""
        d = self.seen(device_id, known, now)
        boot = msg.get("boot")
        if msg.get("online"):
            d.online = True
            d.boot = boot
            d.fw = msg.get("fw", d.fw)
            d.rssi = msg.get("rssi", d.rssi)
            d.heap = msg.get("heap", d.heap)
            d.sleep_s = None
        else:
            if d.boot is not None and boot is not None and boot < d.boot:
                log.info("ignoring stale offline state of %s (boot %s < %s)", device_id, boot, d.boot)
                return False
            d.online = False
            d.sleep_s = msg.get("sleep_s")
        self.store.save_device(
            device_id, known=known, online=d.online, boot=d.boot, last_seen=now, fw=d.fw, rssi=d.rssi, heap=d.heap
        )
        return True

    def online_count(self) -> int:
        """Boards online now."""
        return sum(1 for d in self.devices.values() if d.online)
