"""The scenario engine: runs a scenario file (simulator/scenario.py) around a virtual fleet.

    engine = Engine(load_scenario("mpp-pagi"), cfg, "127.0.0.1", 1883)
    summary = await engine.run()          # start, live `minutes`, stop
    print(summary.text())

Actors, each a task on the running loop (on a ScaledEventLoop they live in
scenario time): citizens arriving by the hourly profile of each service, who
take a ticket at a kiosk and wait for their slip; staff at each counter board
pressing next, recall, skip, transfer and done, and the citizen's rating;
the flood's hydrograph under each water sensor; and the timed `[[steps]]`.
An observer on the broker records what the controller said (retained queue,
water and device states) for the summary.

Faults the simulator cannot cause itself (a broker or controller restart)
go through a `Faults` object: the test harness passes real ones; without one
the step is reported as skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from simulator.board import VirtualBoard
from simulator.clock import ScenarioClock, loop_speed
from simulator.fleet import Fleet
from simulator.scenario import (
    Flood,
    FloodSensor,
    Scenario,
    ServiceLoad,
    Step,
    check_against,
    minute_of_day,
)

log = logging.getLogger("sigap.scenario")
TICKET_RE = re.compile(r"^[A-Z]\d{3}$")
REAL_POLL_S = 0.025
"""Conditions the engine polls (a slip printed, a display changed) are looked at this often in real time."""


class Faults:
    """What the engine cannot do to the world itself. Each method raises NotImplementedError
    unless whoever runs the engine owns that part (tests/harness: MosquittoBroker, SubprocessController)."""

    async def restart_broker(self) -> None:
        """Kill the broker and start it again on the same port."""
        raise NotImplementedError("the simulator does not run the broker")

    async def restart_controller(self) -> None:
        """Kill the controller and start it again on the same database."""
        raise NotImplementedError("the simulator does not run the controller")


@dataclass
class Citizen:
    """One visitor, as the engine saw them."""

    n: int
    service: str
    prio: bool
    arrived: float  # scenario seconds since the start
    kiosk: str = ""
    slip: int | None = None  # index into the kiosk's `printed`
    ticket: str | None = None
    refused: str | None = None  # the refusal notice's text
    printed_at: float | None = None
    called_at: float | None = None
    pressed: bool = False  # pressed the service button (else still in line at the kiosk)
    outcome: str = "waiting"  # waiting, called, left, no_slip, refused, done, skipped, transferred


@dataclass
class Summary:
    """What a scenario run came to."""

    scenario: str
    minutes: float
    citizens: list[Citizen] = field(default_factory=list)
    unclaimed_slips: int = 0
    calls: int = 0
    ratings: int = 0
    water: dict[str, list[str]] = field(default_factory=dict)  # sensor -> statuses in order (retained topic)
    sirens: dict[str, list[bool]] = field(default_factory=dict)  # board -> relay switching
    went_offline: dict[str, int] = field(default_factory=dict)  # device -> times its link came back
    still_offline: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    kiosks: dict[str, dict[str, int]] = field(default_factory=dict)  # kiosk -> its role's trouble counters
    controller: dict[str, Any] | None = None

    def count(self, outcome: str) -> int:
        """Citizens with this outcome."""
        return sum(1 for c in self.citizens if c.outcome == outcome)

    @property
    def issued(self) -> list[str]:
        """Ticket numbers printed for citizens, in order."""
        return [c.ticket for c in self.citizens if c.ticket]

    def longest_wait_min(self) -> float:
        """Longest time from slip to call (or to the end, for those still waiting), minutes."""
        end = self.minutes * 60
        waits = [((c.called_at if c.called_at is not None else end) - c.printed_at) / 60
                 for c in self.citizens if c.printed_at is not None and c.outcome != "no_slip"]
        return max(waits, default=0.0)

    def text(self) -> str:
        """The summary printed at the end of `sigap simulate --scenario`."""
        lines = [f"Scenario {self.scenario}: {self.minutes:g} minutes of scenario time"]
        if self.citizens:
            waiting = sum(1 for c in self.citizens if c.ticket and c.outcome in ("waiting", "transferred"))
            lines += [
                f"  citizens {len(self.citizens)}: tickets issued {len(self.issued)}, served {self.count('done')},"
                f" skipped (no-show) {self.count('skipped')}, transferred {self.count('transferred')},"
                f" at a counter {self.count('called')}, still waiting {waiting}, refused {self.count('refused')}, no slip {self.count('no_slip')},"
                f" still in line at a kiosk {self.count('left')}",
                f"  calls {self.calls}, ratings {self.ratings}, longest wait {self.longest_wait_min():.0f} min"
                + (f", unclaimed slips {self.unclaimed_slips}" if self.unclaimed_slips else ""),
            ]
        for sensor, statuses in sorted(self.water.items()):
            lines.append(f"  water {sensor}: {' -> '.join(statuses) or 'no reading'}")
        for board, switching in sorted(self.sirens.items()):
            if any(switching):
                lines.append(f"  siren {board}: {' -> '.join('on' if s else 'off' for s in switching)}")
        if self.went_offline:
            lines.append("  offline and back: " + ", ".join(f"{d} ({n}x)" for d, n in sorted(self.went_offline.items())))
        if self.still_offline:
            lines.append("  still offline: " + ", ".join(sorted(self.still_offline)))
        trouble = {k: {n: v for n, v in st.items() if v} for k, st in self.kiosks.items()}
        trouble = {k: v for k, v in trouble.items() if v}
        if trouble:
            lines.append("  kiosk trouble: " + "; ".join(
                f"{k} " + ", ".join(f"{n} {v}" for n, v in st.items()) for k, st in sorted(trouble.items())))
        lines += [f"  step {s}" for s in self.steps]
        if self.controller:
            lines.append("  controller: " + json.dumps(self.controller, separators=(",", ":"))[:400])
        return "\n".join(lines)


def scenario_start(sc: Scenario, tz: ZoneInfo, now: datetime) -> datetime:
    """The scenario clock's start: its `start` time on the next weekday (today if still ahead), or now."""
    start = sc.scenario.start
    if start is None:
        return now
    local = now.astimezone(tz)
    day = local.date()
    if minute_of_day(local.time()) > minute_of_day(start) or day.isoweekday() > 5:
        day += timedelta(days=1)
    while day.isoweekday() > 5:
        day += timedelta(days=1)
    return datetime.combine(day, start, tz)


class Observer:
    """Watches the controller's retained outputs and the boards' states on the broker."""

    def __init__(self, host: str, port: int, prefix: str):
        self.host, self.port, self.prefix = host, port, prefix
        self.water: dict[str, list[str]] = {}
        self.queue: dict[str, dict[str, Any]] = {}
        self.online: dict[str, bool] = {}
        self.changed = asyncio.Event()
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scenario-observer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        import aiomqtt

        base = f"{self.prefix}/v1/"
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=f"sigap-scenario-{random.getrandbits(32):08x}",
                                          keepalive=30) as client:
                    for t in ("site/+/queue", "site/+/water/+", "dev/+/state"):
                        await client.subscribe(base + t, qos=1)
                    self.connected.set()
                    async for m in client.messages:
                        self._take(m.topic.value[len(base):], m.payload)
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(1.0)

    def _take(self, topic: str, payload: Any) -> None:
        try:
            data = json.loads(payload) if isinstance(payload, bytes | bytearray | str) else None
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        parts = topic.split("/")
        if parts[0] == "site" and parts[2] == "water" and isinstance(data.get("status"), str):
            seen = self.water.setdefault(parts[3], [])
            if not seen or seen[-1] != data["status"]:
                seen.append(data["status"])
        elif parts[0] == "site" and parts[2] == "queue":
            self.queue[parts[1]] = data
        elif parts[0] == "dev" and parts[2] == "state" and isinstance(data.get("online"), bool):
            self.online[parts[1]] = data["online"]
        self.changed.set()


class Engine:
    """Runs one scenario around a fleet of virtual boards (created here from the config)."""

    def __init__(self, sc: Scenario, cfg: Any, broker_host: str, broker_port: int, *,
                 faults: Faults | None = None, device_ids: list[str] | None = None,
                 board_clock: str = "scenario", controller_url: str | None = None,
                 say: Callable[[str], None] | None = None):
        asyncio.get_running_loop()  # made inside the loop it runs on: scenario time is that loop's clock
        problems = check_against(sc, cfg)
        if problems:
            from simulator.scenario import ScenarioError

            raise ScenarioError(sc.source or sc.scenario.name, problems)
        self.sc = sc
        self.cfg = cfg
        self.faults = faults or Faults()
        self.controller_url = controller_url
        self.say = say or (lambda text: log.info("%s", text))
        self.rnd = random.Random(sc.scenario.seed)
        site = cfg.site(sc.scenario.site) if sc.scenario.site else None
        self.tz = ZoneInfo(site.timezone if site is not None else "Asia/Jakarta")
        self.site = site
        # Made inside the running loop: scenario time follows its clock from here.
        self.clock = ScenarioClock(scenario_start(sc, self.tz, datetime.now(self.tz)))
        self.board_clock = board_clock  # "scenario": the boards' NTP follows the scenario; "host": real time
        self.fleet = Fleet(cfg, broker_host, broker_port, device_ids, wall_clock=self._wall)
        self.fleet.on_boot = self._tune
        self.observer = Observer(broker_host, broker_port, cfg.sigap.prefix)
        self.citizens: list[Citizen] = []
        self.by_ticket: dict[str, Citizen] = {}
        self.calls = 0
        self.ratings = 0
        self.step_log: list[str] = []
        self._kiosk_locks: dict[str, asyncio.Lock] = {}
        self._claimed: dict[str, int] = {}
        self._actors: list[asyncio.Task[None]] = []
        self._visits: set[asyncio.Task[None]] = set()
        self._transfer_to: dict[str, list[str]] = self._transfer_targets()
        self._long_hold_s: dict[str, float] = {}
        self.started = asyncio.Event()

    # -- time ---------------------------------------------------------------------
    def _wall(self) -> float:
        import time

        if self.board_clock == "host":
            return time.time()
        return self.clock.timestamp()

    def now_s(self) -> float:
        """Scenario seconds since the start."""
        return self.clock.elapsed()

    async def _sleep(self, s: float) -> None:
        await asyncio.sleep(max(0.0, s))

    async def poll_until(self, cond: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (scenario seconds) until cond() holds; False on timeout. Polls every REAL_POLL_S real seconds."""
        step = REAL_POLL_S * loop_speed()
        end = self.now_s() + timeout_s
        while not cond():
            if self.now_s() >= end:
                return False
            await asyncio.sleep(step)
        return True

    # -- boards -----------------------------------------------------------------------
    def _tune(self, board: VirtualBoard) -> None:
        """After each boot: keep network timers and button polling in real time at any speed.

        The broker and the network do not speed up with the loop, so the MQTT
        keepalive and ack timeouts stay as many real seconds as the firmware
        means; buttons poll at most 1/REAL_POLL_S times a real second (press
        and release are held long enough for that)."""
        speed = loop_speed()
        dev = board.device
        if dev is None:
            return
        if speed > 1 and dev.mqtt is not None:
            m = dev.mqtt
            m.keepalive = min(65535, int(m.keepalive * speed))
            m.ack_timeout_ms = int(m.ack_timeout_ms * speed)
            m.connect_timeout_ms = int(m.connect_timeout_ms * speed)
        poll_ms = max(10, int(REAL_POLL_S * 1000 * speed))
        buttons = list(getattr(dev.role, "buttons", ()))
        for b in buttons:
            b.poll_ms = max(b.poll_ms, poll_ms)
        debounce = max((b.debounce_ms for b in buttons), default=30)
        board.press_ms = board.release_ms = 2 * poll_ms + debounce + 10
        for b in buttons:
            if b.on_long is not None:
                # A short press must stay shorter than a long one, polled this slowly.
                b.long_press_ms = max(b.long_press_ms, 2 * board.press_ms)
                self._long_hold_s[board.settings["device_id"]] = (b.long_press_ms + 2 * poll_ms + debounce) / 1000

    def _transfer_targets(self) -> dict[str, list[str]]:
        # A counter board transfers to the services named in its settings' transfer_to.
        out: dict[str, list[str]] = {}
        if self.sc.citizens is None or self.site is None:
            return out
        targets = {s.code: s.transfer_to for s in self.sc.citizens.services if s.transfer_to}
        for dev_id, board in self.fleet.boards.items():
            s = board.settings
            if s.get("role") != "counter":
                continue
            counter = self.site.counter(str(s.get("counter")))
            if counter is None:
                continue
            codes = sorted({targets[c] for c in counter.services if c in targets})
            if codes:
                s["transfer_to"] = codes
                out[dev_id] = codes
        return out

    def boards_of(self, role: str) -> list[VirtualBoard]:
        """Running boards of a role at the scenario's site."""
        site = self.sc.scenario.site
        return [b for d, b in self.fleet.boards.items()
                if b.settings.get("role") == role and self.fleet.supported(d)
                and (site is None or self._site_of(d) == site)]

    def _site_of(self, dev_id: str) -> str | None:
        dev = self.cfg.device(dev_id)
        return dev.site if dev is not None else None

    async def press(self, board: VirtualBoard, key: str, hold_s: float | None = None) -> None:
        """Press a key on a board (hold_s: a long press), again if the firmware did not feel it.

        A loaded host can stall the loop past a whole press (at high speed a press
        is a few real milliseconds); a person would notice the key did not click."""
        pin = board.pin(key)
        role = board.device.role if board.device is not None else None
        button = next((b for b in getattr(role, "buttons", ()) if b.pin is pin), None)
        for _ in range(5):
            before = (button.presses, button.long_presses) if button is not None else None
            pin.value(0)
            await asyncio.sleep(max(board.press_ms / 1000, hold_s or 0))
            pin.value(1)
            await asyncio.sleep(board.release_ms / 1000)
            if button is None or (button.presses, button.long_presses) != before:
                return
            log.debug("%s: key %s not felt, pressing again", board.settings.get("device_id"), key)

    # -- lifetime -----------------------------------------------------------------------
    async def start(self) -> None:
        """Clock, observer, fleet (waits until every board is online), then the actors."""
        self.observer.start()
        self.fleet.start()
        boards = [b for d, b in self.fleet.boards.items() if d in self.fleet._tasks]  # noqa: SLF001
        await asyncio.gather(*(b.device_ready(timeout=60 * loop_speed()) for b in boards))
        self.say(f"scenario {self.sc.scenario.name}: {len(boards)} boards online, scenario time "
                 f"{self.clock().astimezone(self.tz):%a %d %b %H:%M} ({loop_speed():g}x)")
        if self.sc.flood is not None:
            self._start_flood()
        if self.sc.citizens is not None and self.site is not None:
            for svc in self.sc.citizens.services:
                self._actor(self._arrivals(svc), f"arrivals:{svc.code}")
            for board in self.boards_of("counter"):
                self._actor(self._staff(board), f"staff:{board.settings['device_id']}")
        for st in self.sc.steps:
            self._actor(self._step(st), f"step:{st.do}")
        self.started.set()

    def _actor(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._actor_done)
        self._actors.append(task)

    def _actor_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("scenario actor %s failed: %r", task.get_name(), task.exception())

    async def run(self, minutes: float | None = None) -> Summary:
        """Start, live the scenario's minutes (scenario time), stop; returns the summary."""
        await self.start()
        try:
            await self.until_end(minutes)
        finally:
            summary = await self.stop()
        return summary

    async def until_end(self, minutes: float | None = None) -> None:
        """Sleep until the scenario's end (its `minutes`, or the given ones)."""
        await self.clock.sleep_until(60 * (minutes if minutes is not None else self.sc.scenario.minutes))

    async def stop(self, settle_s: float = 0.0) -> Summary:
        """Stop the actors (citizens at a kiosk finish first), gather the summary, power the fleet off."""
        minutes = self.now_s() / 60
        for t in self._actors:
            t.cancel()
        await asyncio.gather(*self._actors, return_exceptions=True)
        # Citizens at a kiosk get their slip (briefly); those still in line leave.
        for c in self.citizens:
            if not c.pressed and c.outcome == "waiting":
                c.outcome = "left"
        if self._visits:
            _, late = await asyncio.wait(list(self._visits), timeout=60)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if settle_s:
            await asyncio.sleep(settle_s)
        summary = self.summary(minutes)
        await self.fleet.stop()
        await self.observer.stop()
        return summary

    def summary(self, minutes: float | None = None) -> Summary:
        """What happened so far."""
        s = Summary(self.sc.scenario.name, minutes if minutes is not None else self.now_s() / 60,
                    citizens=list(self.citizens), calls=self.calls, ratings=self.ratings,
                    water={k: list(v) for k, v in self.observer.water.items()}, steps=list(self.step_log))
        for dev_id, board in self.fleet.boards.items():
            if board.settings.get("role") == "kiosk":
                s.unclaimed_slips += len(board.printed) - self._claimed.get(dev_id, 0)
                role = board.device.role if board.device is not None else None
                s.kiosks[dev_id] = {k: int(getattr(role, k, 0)) for k in
                                    ("resent", "gave_up", "dropped", "repeats", "strays", "print_errors")}
            if board.siren_history:
                s.sirens[dev_id] = [on for _, on in board.siren_history]
            back = max(0, board.led_history.count("online") - 1)
            if back:
                s.went_offline[dev_id] = back
            if dev_id in self.fleet._tasks and (board.device is None or not board.device.online()):  # noqa: SLF001
                s.still_offline.append(dev_id)
        if self.controller_url and self.site is not None:
            s.controller = self._controller_view()
        return s

    def _controller_view(self) -> dict[str, Any] | None:
        import httpx

        assert self.site is not None
        try:
            if self.site.services:
                q = httpx.get(f"{self.controller_url}/api/queues/{self.site.id}", timeout=5).json()
                return {"waiting": {k: v.get("waiting") for k, v in q.get("services", {}).items()},
                        "last": {k: v.get("last") for k, v in q.get("services", {}).items()}}
            sensors = httpx.get(f"{self.controller_url}/api/sensors", timeout=5).json()
            return {"sensors": {x["id"]: x.get("status") for x in sensors if x.get("site") == self.site.id}}
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            return {"error": str(e)}

    # -- citizens ----------------------------------------------------------------------
    def _rate_now(self, svc: ServiceLoad) -> tuple[float, float | None]:
        """Arrivals per hour now, and scenario seconds until the profile changes (None: never)."""
        assert self.sc.citizens is not None and self.clock is not None
        rows = self.sc.citizens.profile_of(svc)
        now_min = minute_of_day(self.clock().astimezone(self.tz).time())
        factor = 0.0
        change = None
        for t, f in rows:
            m = minute_of_day(t)
            if m <= now_min:
                factor = f
            elif change is None:
                change = (m - now_min) * 60
        return svc.per_hour * factor, change

    async def _arrivals(self, svc: ServiceLoad) -> None:
        """A Poisson stream of citizens for one service, its rate following the profile."""
        rnd = random.Random(self.rnd.random())
        while True:
            rate, change = self._rate_now(svc)
            if rate <= 0:
                if change is None:
                    return
                await self._sleep(change + 1)
                continue
            gap = rnd.expovariate(rate / 3600)
            if change is not None and gap > change:
                await self._sleep(change + 1)  # the rate changes first: draw again then
                continue
            await self._sleep(gap)
            self._visit(svc, rnd)

    def _visit(self, svc: ServiceLoad, rnd: random.Random) -> None:
        assert self.sc.citizens is not None
        c = Citizen(len(self.citizens) + 1, svc.code, rnd.random() < self.sc.citizens.prio, self.now_s())
        self.citizens.append(c)
        task = asyncio.create_task(self._take_ticket(c), name=f"citizen:{c.n}")
        task.add_done_callback(functools.partial(self._left, c))
        self._visits.add(task)
        task.add_done_callback(self._visits.discard)

    async def _take_ticket(self, c: Citizen) -> None:
        """At a kiosk offering the service: (priority,) service button, then wait for the slip."""
        assert self.sc.citizens is not None
        kiosks = [k for k in self.boards_of("kiosk") if c.service in (k.settings.get("services") or [])]
        if not kiosks:
            c.outcome = "no_slip"
            return
        # The shortest line; a kiosk serves one citizen at a time.
        kiosk = min(kiosks, key=lambda k: self._lock(k).locked())
        dev_id = kiosk.settings["device_id"]
        c.kiosk = dev_id
        async with self._lock(kiosk):
            before = len(kiosk.printed)
            if c.prio and kiosk.settings.get("prio_button", True):
                await self.press(kiosk, "prio")
            await self.press(kiosk, "svc_" + c.service)
            c.pressed = True
            got = await self.poll_until(lambda: len(kiosk.printed) > before, 60 * self.sc.citizens.patience_min)
            if not got:
                c.outcome = "no_slip"
                return
            c.slip = before
            self._claimed[dev_id] = self._claimed.get(dev_id, 0) + 1
            slip = kiosk.printed[before]
            c.printed_at = self.now_s()
            number = next((t for t in slip.get("double", []) if TICKET_RE.match(t.strip())), None)
            if number is None:
                c.refused = " ".join(slip.get("lines", []))[:60]
                c.outcome = "refused"
                return
            c.ticket = number.strip()
            self.by_ticket[c.ticket] = c

    def _left(self, c: Citizen, task: asyncio.Task[None]) -> None:
        if task.cancelled() and c.outcome == "waiting" and c.ticket is None:
            c.outcome = "no_slip" if c.pressed else "left"

    def _lock(self, kiosk: VirtualBoard) -> asyncio.Lock:
        return self._kiosk_locks.setdefault(kiosk.settings["device_id"], asyncio.Lock())

    # -- staff --------------------------------------------------------------------------
    def _tri(self, rnd: random.Random, spec: tuple[float, float, float]) -> float:
        lo, mode, hi = spec
        return rnd.triangular(lo, hi, mode)

    async def _staff(self, board: VirtualBoard) -> None:
        """One counter's officer: call, wait for the citizen, serve, finish; recall and skip no-shows."""
        assert self.sc.citizens is not None
        staff = self.sc.staff
        rnd = random.Random(self.rnd.random())
        loads = {s.code: s for s in self.sc.citizens.services}
        if staff.first_call is not None:
            await self._sleep(self.sc.minute(staff.first_call) * 60 - self.now_s())
        await self._sleep(rnd.uniform(0, 20))  # not every officer at the same second
        current: str | None = None  # the ticket this officer last dealt with
        while True:
            shown = self._serving(board)
            if shown is None or shown == current:
                # Call the next one. (A number the officer has not dealt with yet is already
                # called, e.g. by a `next` whose answer came late: serve that one instead.)
                await self.press(board, "next")
                if not await self.poll_until(functools.partial(self._called, board, shown), 30):
                    await self._sleep(staff.idle_s * rnd.uniform(0.7, 1.3))
                    continue
            current = self._serving(board)
            if current is None:
                continue
            self.calls += 1
            c = self.by_ticket.get(current)
            if c is not None:
                if c.called_at is None:
                    c.called_at = self.now_s()
                c.outcome = "called"
            load = loads.get(current[0])
            if load is None:
                await self._sleep(self._tri(rnd, (2, 5, 10)) * 60)
                await self.press(board, "done")
                continue
            if rnd.random() < load.no_show:
                await self._sleep(staff.recall_after_s)
                await self.press(board, "recall")
                await self._sleep(staff.skip_after_s - staff.recall_after_s)
                await self.press(board, "skip")
                if c is not None:
                    c.outcome = "skipped"
                continue
            await self._sleep(self._tri(rnd, staff.walk_s) + self._tri(rnd, load.service_min) * 60)
            targets = self._transfer_to.get(board.settings["device_id"], [])
            if load.transfer_to in targets and rnd.random() < load.transfer:
                for _ in range(targets.index(load.transfer_to) + 1):
                    await self.press(board, "transfer")
                await self.press(board, "transfer", hold_s=self._long_hold_s.get(board.settings["device_id"], 1.5))
                if c is not None:
                    c.outcome = "transferred"
                    c.called_at = None  # it waits again, in the other service's line
                continue
            await self.press(board, "done")
            if c is not None:
                c.outcome = "done"
            if rnd.random() < self.sc.citizens.rating:
                await self.press(board, f"rate{rnd.choice(self.sc.citizens.scores)}")
                self.ratings += 1
            await self._sleep(rnd.uniform(5, 20))

    def _called(self, board: VirtualBoard, before: str | None) -> bool:
        """The counter board shows a ticket other than `before`."""
        return self._serving(board) not in (None, before)

    @staticmethod
    def _serving(board: VirtualBoard) -> str | None:
        """The ticket number a counter board shows (None: nothing called)."""
        lines = board.display.lines
        return lines[0] if lines and TICKET_RE.match(lines[0]) else None

    # -- water ---------------------------------------------------------------------------
    def _start_flood(self) -> None:
        flood = self.sc.flood
        assert flood is not None
        # The curve's t counts from now; the hydrograph from the flood's start.
        t0 = self.sc.minute(flood.start) - self.now_s() / 60
        for fs in flood.sensors:
            board = self.fleet.boards.get(fs.device)
            if board is None:
                continue
            board.set_level_curve(functools.partial(_flood_level, flood, fs, t0), noise_mm=flood.noise_mm)

    # -- steps ---------------------------------------------------------------------------
    async def _step(self, st: Step) -> None:
        await self._sleep(self.sc.minute(st.at) * 60 - self.now_s())
        what = f"{st.at:%H:%M} {st.do}" + (f" {st.device}" if st.device else "")
        board = self.fleet.boards.get(st.device) if st.device else None
        if st.device and board is None:
            self._note(f"{what}: skipped (that board is not in this fleet)")
            return
        try:
            if st.do == "restart_broker":
                await self.faults.restart_broker()
            elif st.do == "restart_controller":
                await self.faults.restart_controller()
            elif st.do == "reboot":
                await self.fleet.reboot(st.device or "")
            elif st.do == "battery" and board is not None:
                board.set_battery(st.mv or board.battery_mv(), st.drain_mv_per_h)
            elif st.do == "wifi" and board is not None:
                board.set_wifi(False)
                self._note(f"{what}: down for {st.for_min:g} min")
                await self._sleep((st.for_min or 0) * 60)
                board.set_wifi(True)
                what += " back up"
            elif st.do == "echo" and board is not None:
                before = (board.echo.noise_mm, board.echo.drop_rate)
                board.set_echo(noise_mm=st.noise_mm, drop_rate=st.drop_rate)
                if st.for_min:
                    self._note(f"{what}: drop_rate {board.echo.drop_rate:g} for {st.for_min:g} min")
                    await self._sleep(st.for_min * 60)
                    board.set_echo(noise_mm=before[0], drop_rate=before[1])
                    what += " back to normal"
        except NotImplementedError as e:
            self._note(f"{what}: skipped ({e}; the test harness can do it)")
            return
        self._note(f"{what}: done")

    def _note(self, text: str) -> None:
        self.step_log.append(text)
        self.say(text)


def _flood_level(flood: Flood, fs: FloodSensor, t0_min: float, t: float) -> float:
    """The river under one sensor, t seconds after the curve was set (t0_min before the flood's start)."""
    return flood.level(fs, t / 60 - t0_min)


async def wait_observed(obs: Observer, cond: Callable[[], bool], timeout_s: float) -> None:
    """Wait until cond() holds, re-checked on each message the observer takes."""

    async def _wait() -> None:
        while not cond():
            obs.changed.clear()
            await obs.changed.wait()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_wait(), timeout_s)
