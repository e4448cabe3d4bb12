"""A simple live loop for the demo: citizens press kiosk buttons, staff call tickets.

The full scenarios (mpp-pagi, banjir, gangguan) with arrival profiles come with
the simulator's scenario files; this loop just keeps the hall busy so the page moves.
"""

from __future__ import annotations

import asyncio
import random

from simulator.board import VirtualBoard
from simulator.fleet import Fleet


async def _citizens(kiosks: list[VirtualBoard], rnd: random.Random, mean_gap_s: float) -> None:
    while True:
        await asyncio.sleep(rnd.expovariate(1 / mean_gap_s))
        k = rnd.choice(kiosks)
        services = k.settings.get("services") or []
        if not services:
            continue
        if rnd.random() < 0.05 and k.settings.get("prio_button", True):
            await k.press("prio")
        await k.press("svc_" + rnd.choice(services))


async def _staff(counter: VirtualBoard, rnd: random.Random, mean_service_s: float) -> None:
    await asyncio.sleep(rnd.uniform(0, mean_service_s))
    while True:
        await counter.press("next")  # finishes the current ticket and calls the next
        if rnd.random() < 0.1:
            await asyncio.sleep(rnd.uniform(3, 6))
            await counter.press("recall")  # the citizen did not come at once
        await asyncio.sleep(rnd.uniform(0.5, 1.5) * mean_service_s)
        if rnd.random() < 0.5:
            await counter.press("rate" + str(rnd.choice((3, 4, 4, 4, 2))))


async def busy_hall(fleet: Fleet, seed: int = 1, mean_gap_s: float = 1.5, mean_service_s: float = 12.0) -> None:
    """Forever: citizens take tickets every ~mean_gap_s; each counter serves in ~mean_service_s."""
    rnd = random.Random(seed)
    boards = list(fleet.boards.values())
    kiosks = [b for b in boards if b.settings["role"] == "kiosk"]
    counters = [b for b in boards if b.settings["role"] == "counter"]
    tasks = []
    if kiosks:
        tasks.append(asyncio.create_task(_citizens(kiosks, random.Random(rnd.random()), mean_gap_s)))
    for c in counters:
        tasks.append(asyncio.create_task(_staff(c, random.Random(rnd.random()), mean_service_s)))
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
