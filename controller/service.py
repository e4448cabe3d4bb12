"""The controller process: MQTT ingest → domain → store → MQTT/HTTP out.

Every inbound message is parsed and validated at the edge (protocol.wire); a
bad one is logged once and counted, never raised. Domain rules live in
controller.domain, persistence in controller.store, the web in controller.api.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import uvicorn

from controller import __version__
from controller.api import create_app
from controller.api.serve import EmbeddedServer, parse_hostport
from controller.auth import Auth
from controller.bus import Bus, parse_broker_url, redact_broker_url
from controller.config import ConfigError, SiteConfig, load_config
from controller.events import EventHub
from controller.metrics import Metrics
from controller.presence import Presence
from controller.queues import QueueService
from controller.store import Store, open_store
from controller.store.db import default_db_url
from controller.water import WaterService
from controller.webhooks import Webhooks
from protocol import wire

log = logging.getLogger("sigap.controller")

Clock = Callable[[], datetime]
WATER_CHECK_S = 5.0
"""How often (seconds) the offline rule runs over every water sensor."""
CHECKPOINT_S = 2.0
"""How often (seconds) the database's write-ahead log is checkpointed, in a worker thread."""
STATE_WINDOW_S = 5.0
"""A sensor's database state row is written at most once per this many seconds while only its
level moves (WaterService.state_window_s); the rest waits for the next offline check."""
LEVEL_WINDOW_S = 5.0
"""A sensor's retained level message goes out at most once per this many seconds while only its
level moves (WaterService.level_window_s); status changes, sirens and alerts at once."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Controller:
    """All controller state for one installation (one site config)."""

    def __init__(self, cfg: SiteConfig, store: Store, broker_url: str, clock: Clock = utcnow):
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.version = __version__
        self.prefix = cfg.sigap.prefix
        self.metrics = Metrics()
        self.events = EventHub()
        self.bus = Bus(broker_url, self.prefix, self.version)
        self.bus.on_batch = self.handle_batch
        self.bus.on_connect = self.republish_all
        self.bus.on_error = self.metrics.reject
        self.presence = Presence(store)
        self.queues = QueueService(cfg, store, self.bus, self.metrics, clock, self.events)
        self.water = WaterService(cfg, store, self.bus, self.metrics, clock, self.events)
        self.water.level_window_s = LEVEL_WINDOW_S
        self.water.state_window_s = STATE_WINDOW_S
        self.webhooks = Webhooks(cfg.sigap.webhooks, store, self.metrics)
        if cfg.sigap.webhooks:
            self.water.webhooks = self.webhooks
        self.auth = Auth(store)
        self.water_check_s = WATER_CHECK_S
        self.checkpoint_s = CHECKPOINT_S
        self.handled = 0
        self._handled_event = asyncio.Event()
        self._kind_counters: dict[str, Any] = {}

    # -- ingest ------------------------------------------------------------------
    async def handle_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """One inbound MQTT message; never raises for bad input."""
        await self.handle_batch([(topic, payload, retained)])

    async def handle_batch(self, batch: list[tuple[str, bytes, bool]]) -> None:
        """Inbound MQTT messages in arrival order; never raises for bad input.

        Water readings are collected and applied together at the end, in one
        transaction (group commit); everything else is applied as it comes.
        Only readings wait, and only for the rest of the batch: the two domains
        share nothing, and each sensor's readings keep their order.
        """
        readings: list[tuple[Any, dict[str, Any]]] = []
        try:
            for topic, payload, retained in batch:
                try:
                    await self._handle(topic, payload, retained, readings)
                except Exception:  # one message's bug must not cost the rest of the batch
                    log.exception("handler failed for %s", topic)
                    self.metrics.reject("handler_exception")
            if readings:
                await self.water.readings(readings)
        finally:
            self.handled += len(batch)
            self._handled_event.set()

    def _reject(self, reason: str, topic: str, detail: str = "") -> None:
        self.metrics.reject(reason)
        log.warning("rejected %s: %s%s", topic, reason, f" ({detail})" if detail else "")

    async def _handle(self, topic: str, payload: bytes, retained: bool,
                      readings: list[tuple[Any, dict[str, Any]]]) -> None:
        try:
            scope, device_id, kind = wire.parse_topic(self.prefix, topic)
        except wire.ProtocolError as e:
            return self._reject(e.reason, topic)
        if scope != "dev" or device_id is None:
            return
        now = self.clock()
        dev = self.cfg.device(device_id)
        if dev is None:
            # Never acted on; listed as unknown so IT staff can see it.
            self.presence.seen(device_id, known=False, now=now)
            self.store.save_device(device_id, known=False, last_seen=now)
            return self._reject("unknown_device", topic)
        if not payload and retained:
            return  # a retained message being cleared
        name = kind[4:] if kind.startswith("evt/") else kind
        counter = self._kind_counters.get(name)
        if counter is None:
            counter = self._kind_counters[name] = self.metrics.messages.labels(kind=name)
        counter.inc()
        try:
            msg = wire.decode(payload, wire.MAX_DEVICE_PAYLOAD)
            if name == "press":
                msg = wire.validate_press(msg, dev.role)
            else:
                msg = wire.validate(name, msg)
        except wire.ProtocolError as e:
            return self._reject(e.reason, topic, str(e))
        if name == "state":
            if self.presence.on_state(device_id, True, msg, now):
                change = {"id": device_id, "online": bool(msg.get("online")), "boot": msg.get("boot"),
                          "at": now.isoformat()}
                if msg.get("sleep_s") is not None:
                    change["sleep_s"] = msg["sleep_s"]  # asleep on purpose: judged by its readings
                self.events.publish("device", change)
            return
        self.presence.seen(device_id, True, now)
        if (name, dev.role) in (("press", "kiosk"), ("press", "counter"), ("rating", "counter")):
            try:
                if name == "press" and dev.role == "kiosk":
                    await self.queues.kiosk_press(dev, msg)
                elif name == "press":
                    await self.queues.counter_press(dev, msg)
                else:
                    await self.queues.rating(dev, msg)
            except Exception:
                # A bug between the domain and the commit: memory may be ahead of
                # the database, so rebuild the site from what is committed.
                self.queues.reload_site(dev.site)
                raise
        elif name == "reading" and dev.role == "water":
            readings.append((dev, msg))
        else:
            self._reject("wrong_role", topic, f"{name} from a {dev.role}")

    async def wait_handled(self, n: int, timeout: float = 10.0) -> None:
        """Test helper: wait until at least n messages were handled."""

        async def _wait() -> None:
            while self.handled < n:
                self._handled_event.clear()
                await self._handled_event.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def republish_all(self) -> None:
        """After (re)connecting: every retained output again (shows, snapshots)."""
        await self.queues.publish_all(force=True)
        await self.water.publish_all(force=True)

    async def _water_checks(self) -> None:
        """The periodic offline rule (CONTRACT §3) and, hourly, raw-reading retention;
        an error is logged, never ends the loop."""
        last_prune: datetime | None = None
        connects = 0
        while True:
            await asyncio.sleep(self.water_check_s)
            try:
                now = self.clock()
                if not self.bus.is_connected:
                    continue  # deaf: a sensor's silence says nothing now
                if connects and self.bus.connects > connects:
                    # The link was lost and is back: boards get their full
                    # interval from now (a sleeping board's backlog is coming).
                    self.water.listening_since = now.timestamp()
                connects = self.bus.connects
                await self.water.check(now)
                if last_prune is None or (now - last_prune).total_seconds() >= 3600:
                    last_prune = now
                    if pruned := self.water.prune(now):
                        log.info("deleted %d raw readings past retention", pruned)
            except Exception:
                log.exception("water check failed")

    async def _checkpoints(self) -> None:
        """SQLite's WAL checkpoint in a worker thread, so no commit on the event loop pays for it."""
        if self.store.engine.dialect.name != "sqlite":
            return
        while True:
            await asyncio.sleep(self.checkpoint_s)
            try:
                await asyncio.to_thread(self.store.checkpoint)
            except Exception:
                log.exception("database checkpoint failed")

    def refresh_gauges(self) -> None:
        """Gauges computed on scrape."""
        self.metrics.devices_online.set(self.presence.online_count())
        self.metrics.broker_connected.set(1 if self.bus.is_connected else 0)

    # -- lifetime ------------------------------------------------------------------
    async def run(self, listen: str | None = None, ready: asyncio.Event | None = None) -> None:
        """Serve MQTT (and HTTP when listen is given) until cancelled, then shut down cleanly."""
        bus_task = asyncio.create_task(self.bus.run(), name="bus")
        check_task = asyncio.create_task(self._water_checks(), name="water-check")
        hook_task = asyncio.create_task(self.webhooks.run(), name="webhooks")
        checkpoint_task = asyncio.create_task(self._checkpoints(), name="checkpoint")
        tasks = [bus_task, check_task, hook_task, checkpoint_task]
        server = None
        http_task = None
        if listen:
            host, port = parse_listen(listen)
            server = EmbeddedServer(uvicorn.Config(create_app(self), host=host, port=port, log_level="warning", lifespan="off"))
            http_task = asyncio.create_task(server.serve(), name="http")
            tasks.append(http_task)
        try:
            if ready is not None:
                await self.bus.connected.wait()
                while server is not None and not server.started:
                    await asyncio.sleep(0.01)
                ready.set()
            # asyncio.wait, unlike gather, leaves the tasks running when we are
            # cancelled, so the web server can be stopped gracefully below.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                t.result()
        finally:
            if server is not None:
                server.should_exit = True
            check_task.cancel()
            hook_task.cancel()
            checkpoint_task.cancel()
            self.queues.flush_snapshots()
            self.water.flush_levels()
            try:
                self.water.flush_states()
            except Exception:
                log.exception("could not write the waiting sensor states at shutdown")
            await self.bus.stop()
            bus_task.cancel()
            if http_task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(http_task), 5)
                except (TimeoutError, asyncio.CancelledError):
                    http_task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.store.close_writer()
            self.store.engine.dispose()


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT → (host, port)."""
    try:
        return parse_hostport(listen)
    except ValueError:
        from controller.errors import UserError

        raise UserError(f"--listen must be HOST:PORT with a port from 1 to 65535, got {listen!r}") from None


def check_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT → (host, port), or a UserError when nothing can listen there (e.g. the port is in use).

    Checked before the database and the broker are touched, so a taken port
    costs no admin password and no broker session.
    """
    from controller.errors import UserError

    host, port = parse_listen(listen)
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        # SO_REUSEADDR as uvicorn sets it: a port left in TIME_WAIT is free.
        with socket.create_server((host, port), family=family):
            pass
    except OSError as e:
        raise UserError(f"cannot listen on {listen}: {e.strerror or e}") from None
    return host, port


async def run_until_signal(main: Any) -> None:
    """Run a coroutine until SIGINT/SIGTERM, then cancel it and let it clean up."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(main)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def controller_main(args: argparse.Namespace) -> int:
    """`sigap controller`"""
    from controller.errors import UserError

    setup_logging()
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise UserError("invalid config:\n  " + "\n  ".join(e.errors)) from None
    parse_listen(args.listen)
    try:
        parse_broker_url(args.broker)
    except ValueError as e:
        raise UserError(str(e)) from None
    check_listen(args.listen)
    try:
        store = open_store(args.db or default_db_url(args.config))
    except Exception as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise UserError(f"cannot open the database {args.db or default_db_url(args.config)}: {reason}") from None
    ctrl = Controller(cfg, store, args.broker)
    # What start-up built (config, sensors, alert book) lives as long as the process:
    # kept out of the cyclic collector's scans, which otherwise cost ~20% of ingest
    # time with 5,000 sensors (bench_water_ingest).
    gc.freeze()
    log.info(
        "Sigap controller %s: broker %s, web http://%s", __version__, redact_broker_url(args.broker), args.listen
    )
    asyncio.run(run_until_signal(ctrl.run(args.listen)))
    return 0
