"""A simple live loop for the demo: citizens press kiosk buttons, staff call tickets.

The full scenarios (mpp-pagi, banjir, gangguan) with arrival profiles live in
simulator/scenarios/; this loop just keeps the hall busy so the page moves.
"""

from __future__ import annotations

import asyncio
import random

from simulator.fleet import Fleet


async def busy_hall(fleet: Fleet, seed: int = 1, mean_gap_s: float = 2.0) -> None:
    """Forever: a citizen takes a ticket every ~mean_gap_s; a counter calls or finishes."""
    rnd = random.Random(seed)
    kiosks = [b for b in fleet.boards.values() if b.settings["role"] == "kiosk"]
    counters = [b for b in fleet.boards.values() if b.settings["role"] == "counter"]
    while True:
        await asyncio.sleep(rnd.expovariate(1 / mean_gap_s))
        if kiosks and rnd.random() < 0.6:
            k = rnd.choice(kiosks)
            services = k.settings.get("services") or []
            if services:
                await k.press("svc_" + rnd.choice(services))
        elif counters:
            c = rnd.choice(counters)
            await c.press(rnd.choice(("next", "next", "next", "done", "recall")))
