"""Scenario time: an asyncio event loop whose clock runs `speed` times faster.

Everything on the virtual boards that waits (asyncio.sleep, wait_for, call_later)
and every tick the firmware reads (firmware.core.clock.ticks_ms follows the
running loop's clock on CPython) lives on the loop's clock, so a fleet on a
`ScaledEventLoop(speed=60)` lives an hour in a minute. Two pieces make it:

* `time()` is `t0 + (monotonic() - t0) * speed`: continuous with the host's
  monotonic clock at the moment the loop was made, then faster;
* the selector divides every select() timeout by `speed`, so a timer due in
  60 loop seconds wakes the loop after one real second.

What it does not scale: the network and other processes (broker, a
controller in its own process) run in real time, and work the loop does
(parsing, SQLite, printing) takes real time, which is `speed` times longer in
loop seconds.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")


def loop_time() -> float:
    """The running event loop's clock (scenario seconds), or the host's monotonic clock outside a loop."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


def loop_speed() -> float:
    """How many loop seconds pass per real second on the running loop (1.0 for an ordinary loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return 1.0
    return float(getattr(loop, "speed", 1.0))


class _ScaledSelector(selectors.DefaultSelector):
    """The platform selector, waiting 1/speed of each timeout it is given."""

    def __init__(self, speed: float):
        super().__init__()
        self.speed = speed

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0:
            timeout /= self.speed
        return super().select(timeout)


class ScaledEventLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose time runs `speed` times faster than the host's."""

    def __init__(self, speed: float = 1.0):
        super().__init__(_ScaledSelector(speed if speed > 0 else 1.0))
        if not speed > 0:
            self.close()
            raise ValueError(f"speed must be above 0, not {speed}")
        self.speed = float(speed)
        self._t0 = time.monotonic()

    def time(self) -> float:
        return self._t0 + (time.monotonic() - self._t0) * self.speed


def run(main: Coroutine[Any, Any, T], speed: float = 1.0) -> T:
    """asyncio.run(main) on a ScaledEventLoop (an ordinary loop at speed 1)."""
    if speed == 1.0:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=lambda: ScaledEventLoop(speed)) as runner:
        return runner.run(main)


class ScenarioClock:
    """Wall-clock time of a scenario: `start` (aware datetime) when made, then the loop's seconds.

    Create it inside the running loop; on a ScaledEventLoop it runs as fast as the loop.
    """

    def __init__(self, start: datetime):
        if start.tzinfo is None:
            raise ValueError("a scenario's start needs a time zone")
        self.start = start
        self.t0 = loop_time()

    def elapsed(self) -> float:
        """Scenario seconds since the start."""
        return loop_time() - self.t0

    def timestamp(self) -> float:
        """Unix seconds now, in scenario time (the boards' NTP time)."""
        return self.start.timestamp() + self.elapsed()

    def __call__(self) -> datetime:
        """Now, as an aware UTC datetime (a controller's `clock`)."""
        return datetime.fromtimestamp(self.timestamp(), UTC)

    async def sleep_until(self, elapsed_s: float) -> None:
        """Sleep until `elapsed_s` scenario seconds after the start (at once if past)."""
        left = elapsed_s - self.elapsed()
        if left > 0:
            await asyncio.sleep(left)
