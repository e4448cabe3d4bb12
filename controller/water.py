"""Water service: applies water readings to the sensors exactly once, persists them,
raises alerts and drives sirens, board configs and the retained level messages.

Order for every reading (as in queues.py): (1) applied by this process already?
counted as a duplicate, nothing else; (2) ingest into the sensor's pure state
machine (controller.domain.water) and carry its alert events into the AlertBook;
(3) commit the applied-event record, the reading, the sensor's state, the
changed alerts and one audit entry per alert change in ONE transaction;
(4) publish. A repeat that only the database knows (e.g. after a restart) fails
at (3) on the applied_events key; memory, which ran ahead, is then rebuilt from
what is committed.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from controller.config import SiteConfig, WaterDevice
from controller.domain.alerts import Alert, AlertBook, AlertChange, AlertEvent
from controller.domain.water import (
    STATUSES,
    IngestResult,
    Reading,
    SensorSpec,
    SensorState,
    WaterSensor,
    status_rank,
    water_message,
)
from controller.events import EventHub
from controller.metrics import Metrics
from controller.store.db import AGGREGATE_S
from controller.store.tables import readings as readings_table
from controller.webhooks import Webhooks
from protocol import wire

log = logging.getLogger("sigap.water")

RECENT_EVENTS = 100_000  # reading ids remembered in memory for the fast duplicate check
RECENT_PER_SENSOR = 20  # at least this many of each sensor's newest reading ids reloaded at start
KEEP_RESOLVED = 1000
WINDOW_RELOAD_S = 3 * 1200  # history reloaded into a sensor's rate window after a restart


class _BadReading(Exception):
    """The domain raised on the reading at this index of a batch (a bug)."""

    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


@dataclass
class _Done:
    """One reading of a committed batch: whose, its identity, what it did, its alert changes."""

    sensor: str
    key: tuple[str, int, int]
    result: IngestResult
    changes: list[AlertChange]


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _alert_row(a: Alert) -> dict[str, Any]:
    return a.to_dict()


def _row_alert(r: dict[str, Any]) -> Alert:
    return Alert(**{k: r[k] for k in (
        "id", "kind", "sensor", "level", "state", "opened", "updated", "acked_by", "acked_at", "note",
        "resolved_at", "resolved_by",
    )})


def board_config(sensor: WaterSensor) -> dict[str, Any]:
    """The retained ``cmd/config`` payload as boards validate it (every value a positive integer).

    ``desired_config``'s ``fast`` flag goes out as ``"fast": 1`` while fast
    readings are wanted and is left out otherwise; a zero ``hysteresis_mm``
    is left out (the board keeps its own default).
    """
    out: dict[str, Any] = {}
    for k, v in sensor.config().items():
        if k == "fast":
            if v:
                out["fast"] = 1
        elif type(v) is int and v > 0:
            out[k] = v
    return out


def level_message(sensor: WaterSensor) -> dict[str, Any]:
    """The retained ``site/{site}/water/{id}`` payload (CONTRACT §1).

    An unknown rate (too few readings yet for a robust fit) is null, not 0:
    0 would tell the command center the river is steady.
    """
    return water_message(sensor.state)


class WaterService:
    """Every water sensor of the config, wired to the store and the bus."""

    level_window_s = 0.0
    """Coalescing of the retained level message (and the SSE ``water`` event) of one sensor: a
    change that only moves the level goes out at once if the sensor's last one left at least this
    long ago, otherwise at the end of that window with the sensor's state of that moment (a burst,
    e.g. a board's backlog after an outage: the retained topic is "the level now", superseded
    values carry nothing). A status change always goes out at once; sirens, configs and alerts
    are not delayed. 0 = every change at once. The Controller sets it (CONTROLLER_LEVEL_WINDOW_S)."""

    state_window_s = 0.0
    """Coalescing of a sensor's ``sensor_state`` row: a reading that changes nothing but the level,
    rate and times writes the row only if the sensor's last write is at least this old (arrival
    time); otherwise the row waits for flush_states() (every offline check, and at shutdown).
    A status, siren, offline or alert change, and a sensor's first row, are written with the
    reading. After a crash the row may be this much older than the readings committed with it:
    _load() takes the level and time from the newest accepted reading then. 0 = every batch
    writes every touched row. The Controller sets it (STATE_WINDOW_S)."""

    def __init__(self, cfg: SiteConfig, store: Any, bus: Any, metrics: Metrics, clock: Callable[[], datetime],
                 events: EventHub | None = None):
        self.cfg = cfg
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.clock = clock
        self.events = events or EventHub()
        self.webhooks: Webhooks | None = None  # set by the Controller when URLs are configured
        self.prefix = cfg.sigap.prefix
        self.devices: dict[str, WaterDevice] = {d.id: d for d in cfg.devices_by_role("water")}
        self.sensors: dict[str, WaterSensor] = {}
        self.book = AlertBook(keep_resolved=KEEP_RESOLVED)
        self.last_reading: dict[str, float] = {}
        """Arrival time (Unix s) of each sensor's last reading of any kind."""
        # Which sensors each siren board follows: its own, and those naming it in `sirens`.
        self.followers: dict[str, list[str]] = {}
        for d in self.devices.values():
            for board in (d.id, *d.sirens):
                self.followers.setdefault(board, []).append(d.id)
        self._recent: dict[tuple[str, int, int], None] = {}
        self.listening_since: float | None = None
        """When the broker link came back after a loss (Unix s); see WaterSensor.check."""
        self._sent_level: dict[str, bytes] = {}
        self._sent_status: dict[str, str] = {}
        self._level_at: dict[str, float] = {}
        """When (event loop time) each sensor's level message last went out."""
        self._level_due: dict[str, float] = {}
        """Sensors whose level message waits for the end of their window, and when that is."""
        self._level_heap: list[tuple[float, str]] = []
        self._level_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sent_siren: dict[str, tuple[bool, str | None]] = {}
        self._siren_basis: dict[str, tuple[bool, str]] = {}
        """Each sensor's (siren_on, status) when the sirens it drives were last looked at."""
        self._sent_config: dict[str, bytes] = {}
        self._state_rows: set[str] = set()
        """Sensors with a sensor_state row in the database (updated, not inserted)."""
        self._state_due: dict[str, None] = {}
        """Sensors whose row is older than their state in memory (see state_window_s)."""
        self._state_at: dict[str, float] = {}
        """When (arrival time, Unix s) each sensor's row was last written."""
        self._load()
        # Redeliveries after a restart (the batch committed but not yet acknowledged when
        # the process died, a board's resends) are then caught in memory, not by a failed
        # commit; older repeats still are, by the applied_events key.
        per_device = max(RECENT_PER_SENSOR, RECENT_EVENTS // max(len(self.devices), 1))
        for key in self.store.recent_applied(list(self.devices), per_device):
            self._recent[key] = None

    # -- building and restoring ------------------------------------------------------
    def _load(self) -> None:
        """Sensors and alerts from what is committed (start, or after an unexpected error)."""
        self.store.forget_cached_head()
        rows = self.store.load_sensor_states()
        self._state_rows = set(rows)
        self._state_due = {}
        self._state_at = {}
        self.sensors = {}
        self.last_reading = {}
        for dev_id, dev in self.devices.items():
            spec = SensorSpec.from_device(dev)
            row = rows.get(dev_id)
            state = None
            if row is not None:
                state = SensorState.resume(
                    row["status"], level_mm=row["level_mm"], ts=row["ts"], raised=json.loads(row["raised"] or "{}"),
                    siren_on=bool(row["siren_on"]), last_heard=row["last_heard"],
                )
                state.offline = bool(row["offline"])
                state.rate_mm_h = row["rate_mm_h"]
                if row["last_reading"] is not None:
                    self.last_reading[dev_id] = row["last_reading"]
                if row["ts"] is not None:
                    # The rate fit's window, so the rate is known again at once; and what
                    # was committed after the row (a row may lag its readings by
                    # state_window_s): the newest accepted live reading is the level now.
                    hist = self.store.load_readings(dev_id, row["ts"] - WINDOW_RELOAD_S, wire.UINT32_MAX)
                    state.window = sorted({(r["ts"], r["level_mm"]) for r in hist if r["level_mm"] is not None})
                    if not state.window:
                        state.window = [(row["ts"], row["level_mm"])]
                    state.newest_ts = max(row["ts"], state.window[-1][0])
                    newer = [r for r in hist if r["ts"] > row["ts"] and r["level_mm"] is not None and not r["late"]]
                    if newer:
                        state.level_mm, state.ts = newer[-1]["level_mm"], newer[-1]["ts"]
            sensor = self.sensors[dev_id] = WaterSensor(spec, state)
            if state is not None and row is not None and state.ts != row["ts"]:
                sensor.refresh_rate()
        self.book = AlertBook(next_id=self.store.max_alert_id() + 1, keep_resolved=KEEP_RESOLVED)
        self.book.restore(_row_alert(r) for r in self.store.load_alerts(KEEP_RESOLVED))

    # -- views ------------------------------------------------------------------------------
    def online(self, sensor_id: str) -> bool:
        """Heard from (a reading of any kind) and not offline."""
        s = self.sensors[sensor_id]
        return sensor_id in self.last_reading and not s.state.offline

    def sensor_views(self) -> list[dict[str, Any]]:
        """`GET /api/sensors` rows, in config order."""
        out = []
        for dev_id, dev in self.devices.items():
            s = self.sensors[dev_id]
            msg = water_message(s.state)
            out.append({
                "id": dev_id, "site": dev.site, "name": dev.name, "lat": dev.lat, "lon": dev.lon,
                "level_mm": msg["level_mm"], "status": msg["status"], "rate_mm_h": msg["rate_mm_h"],
                "ts": msg["ts"], "online": self.online(dev_id),
            })
        return out

    def alert_views(self, state: str | None = None) -> list[dict[str, Any]]:
        """`GET /api/alerts` rows, oldest first: all the book holds, or those in one state
        (``open``, ``acknowledged``, ``resolved``; ``active`` = open or acknowledged)."""
        alerts = self.book.alerts()
        if state == "active":
            alerts = [a for a in alerts if a.active]
        elif state is not None:
            alerts = [a for a in alerts if a.state == state]
        return [self._alert_view(a) for a in alerts]

    def _alert_view(self, a: Alert) -> dict[str, Any]:
        dev = self.devices.get(a.sensor)
        return {**a.to_dict(), "site": dev.site if dev else None}

    def ack(self, alert_id: int, user: str, note: str | None = None) -> dict[str, Any]:
        """An operator has seen an open alert (UnknownAlert / InvalidTransition otherwise)."""
        change = self.book.ack(alert_id, user, note, self.clock().timestamp())
        return self._people_change(change)

    def resolve(self, alert_id: int, user: str, note: str | None = None) -> dict[str, Any]:
        """An operator closes an open or acknowledged alert."""
        change = self.book.resolve(alert_id, user, self.clock().timestamp(), note)
        return self._people_change(change)

    def _people_change(self, change: AlertChange) -> dict[str, Any]:
        try:
            with self.store.transaction() as conn:
                self._save_changes(conn, [change])
        except Exception:
            self._load()
            raise
        self._count_changes([change])
        return self._alert_view(change.alert)

    # -- readings ---------------------------------------------------------------------------
    def _remember(self, key: tuple[str, int, int]) -> None:
        self._recent[key] = None
        if len(self._recent) > RECENT_EVENTS:
            del self._recent[next(iter(self._recent))]

    async def reading(self, dev: Any, msg: dict[str, Any]) -> None:
        """One validated `evt/reading` from a water board: applied at most once."""
        await self.readings([(dev, msg)])

    async def readings(self, batch: list[tuple[Any, dict[str, Any]]]) -> None:
        """Validated `evt/reading`s in arrival order, applied at most once each and committed
        together in ONE transaction (group commit); outputs are published after the commit.

        Readings of one sensor are ingested in their arrival order. A repeat that only the
        database knows (memory was reset) makes the commit fail on the applied_events key:
        memory is rebuilt from what is committed, the repeats are dropped and the rest is
        applied again. A reading the domain chokes on (a bug) is logged and dropped alone.
        """
        todo: list[tuple[Any, dict[str, Any], tuple[str, int, int]]] = []
        seen: set[tuple[str, int, int]] = set()
        for dev, msg in batch:
            key = (dev.id, msg["boot"], msg["seq"])
            if key in self._recent or key in seen:
                self.metrics.duplicates.inc()
                continue
            seen.add(key)
            todo.append((dev, msg, key))
        retried = False
        while todo:
            try:
                done = self._commit_batch(todo)
            except _BadReading as bad:
                self._load()  # a bug in the middle: memory may be half-changed
                dev, _, key = todo.pop(bad.index)
                log.error("reading %s from %s could not be applied; dropped", key, dev.id, exc_info=bad.__cause__)
                self.metrics.reject("handler_exception")
                continue
            except Exception as e:
                self._load()  # memory ran ahead of the database
                if isinstance(e, sa.exc.IntegrityError) and not retried:
                    retried = True
                    keep = []
                    for item in todo:
                        if self.store.applied(*item[2])[0]:
                            self._remember(item[2])
                            self.metrics.duplicates.inc()
                        else:
                            keep.append(item)
                    todo = keep
                    continue
                log.exception("could not persist %d readings; water state reloaded", len(todo))
                for _ in todo:
                    self.metrics.reject("db_error")
                return
            self._published(done)
            return

    def _commit_batch(self, todo: list[tuple[Any, dict[str, Any], tuple[str, int, int]]]) -> list[_Done]:
        """Ingest every reading into its sensor, then write them all in one transaction."""
        now = self.clock()
        arrival = now.timestamp()
        applied_rows: list[dict[str, Any]] = []
        reading_rows: list[dict[str, Any]] = []
        held_rows: dict[str, dict[str, Any]] = {}
        settles: list[tuple[str, int, bool]] = []
        buckets: dict[tuple[str, int], list[int]] = {}
        done: list[_Done] = []

        def count(sensor: str, ts: int, level: int) -> None:
            b = buckets.get((sensor, ts - ts % AGGREGATE_S))
            if b is None:
                buckets[(sensor, ts - ts % AGGREGATE_S)] = [1, level, level, level]
            else:
                b[0] += 1
                b[1] += level
                b[2] = min(b[2], level)
                b[3] = max(b[3], level)

        for i, (dev, msg, key) in enumerate(todo):
            ts = msg.get("ts")
            if ts is None:
                ts = int(arrival)
            try:
                res = self.sensors[dev.id].ingest(
                    Reading(ts=ts, dist_mm=msg.get("dist_mm"), err=msg.get("err"), temp_c=msg.get("temp_c"),
                            batt_mv=msg.get("batt_mv"), n=msg.get("n")), arrival)
                changes = self._apply_events(res.events)
            except Exception as e:
                raise _BadReading(i) from e
            applied_rows.append({"device_id": key[0], "boot": key[1], "seq": key[2], "kind": "reading",
                                 "applied_at": now, "answer": None})
            if res.verdict is not None:
                v = res.verdict
                held = held_rows.pop(dev.id, None)
                if held is not None and held["ts"] == v.ts:
                    held["accepted"] = v.accepted  # the held reading is in this batch: not written yet
                else:
                    settles.append((dev.id, v.ts, v.accepted))
                if v.accepted:
                    count(dev.id, v.ts, v.level_mm)
            if res.stored:
                row = {
                    "sensor": dev.id, "ts": ts, "level_mm": res.level_mm, "dist_mm": msg.get("dist_mm"),
                    "temp_c": msg.get("temp_c"), "batt_mv": msg.get("batt_mv"), "n": msg.get("n"),
                    "accepted": res.accepted, "late": res.late, "reason": res.reason,
                }
                reading_rows.append(row)
                if res.reason == "suspect_spike":
                    held_rows[dev.id] = row
            if res.accepted and res.level_mm is not None:
                count(dev.id, ts, res.level_mm)
            done.append(_Done(dev.id, key, res, changes))
        touched = self._rows_due(done, arrival)
        with self.store.transaction() as conn:
            self.store.record_applied_many(conn, applied_rows)
            for sensor, ts, accepted in settles:  # rows of earlier batches, before this batch's rows exist
                self.store.settle_held_reading(conn, sensor, ts, accepted)
            self.store.save_readings(conn, reading_rows)
            self.store.add_to_aggregates(conn, [
                {"sensor": k[0], "bucket": k[1], "n": v[0], "level_sum": v[1], "level_min": v[2], "level_max": v[3]}
                for k, v in buckets.items()
            ])
            rows = [self._state_row(sensor, arrival) for sensor in touched]
            self.store.save_sensor_states_many(conn, [r for r in rows if r["sensor"] in self._state_rows],
                                               [r for r in rows if r["sensor"] not in self._state_rows])
            self._save_changes(conn, [ch for d in done for ch in d.changes])
        self._state_rows.update(touched)
        for sensor in touched:
            self._state_due.pop(sensor, None)
            self._state_at[sensor] = arrival
        for d in done:
            self.last_reading[d.sensor] = arrival
        return done

    def _rows_due(self, done: list[_Done], arrival: float) -> dict[str, None]:
        """The touched sensors whose sensor_state row is written with this batch; the others
        are marked as waiting for flush_states() (see state_window_s)."""
        window = self.state_window_s
        if window <= 0:
            return {d.sensor: None for d in done}
        urgent: dict[str, None] = {}
        quiet: dict[str, None] = {}
        for d in done:
            r = d.result
            if (d.changes or r.events or r.status_changed or r.siren is not None or r.online_changed
                    or d.sensor not in self._state_rows
                    or arrival - self._state_at.get(d.sensor, -window) >= window):
                urgent[d.sensor] = None
            else:
                quiet[d.sensor] = None
        for sensor in quiet:
            if sensor not in urgent:
                self._state_due[sensor] = None
        return urgent

    def flush_states(self) -> int:
        """Write every sensor_state row that waits (see state_window_s); returns how many."""
        due = [sensor for sensor in self._state_due if sensor in self.sensors]
        if not due:
            return 0
        rows = [self._state_row(sensor, None) for sensor in due]
        with self.store.transaction() as conn:
            self.store.save_sensor_states_many(conn, [r for r in rows if r["sensor"] in self._state_rows],
                                               [r for r in rows if r["sensor"] not in self._state_rows])
        self._state_rows.update(due)
        for sensor in due:
            self._state_due.pop(sensor, None)
        return len(due)

    def _published(self, done: list[_Done]) -> None:
        """After the commit: remember, count, stream and publish what the batch did."""
        config: dict[str, bool] = {}
        for d in done:
            self._remember(d.key)
            res = d.result
            if res.reason is not None:
                self.metrics.readings_rejected.labels(reason=res.reason).inc()
                if not res.suspect:
                    log.info("reading from %s rejected: %s", d.sensor, res.reason)
            self._count_changes(d.changes)
            config[d.sensor] = config.get(d.sensor, False) or res.config_changed
        self.metrics.readings.inc(len(done))
        for sensor, changed in config.items():
            self.publish_sensor(sensor, config=changed)

    def _apply_events(self, events: list[AlertEvent]) -> list[AlertChange]:
        changes = []
        for ev in events:
            ch = self.book.apply(ev)
            if ch is not None:
                changes.append(ch)
        return changes

    def _save_state(self, conn: sa.Connection, sensor_id: str, last_reading: float | None) -> None:
        self.store.save_sensor_state(conn, self._state_row(sensor_id, last_reading))
        self._state_rows.add(sensor_id)
        self._state_due.pop(sensor_id, None)

    def _state_row(self, sensor_id: str, last_reading: float | None) -> dict[str, Any]:
        s = self.sensors[sensor_id].state
        return {
            "sensor": sensor_id, "status": s.status, "level_mm": s.level_mm, "rate_mm_h": s.rate_mm_h, "ts": s.ts,
            "siren_on": s.siren_on, "offline": s.offline,
            "raised": json.dumps(s.raised, sort_keys=True) if s.raised else "{}",
            "last_heard": s.last_heard,
            "last_reading": last_reading if last_reading is not None else self.last_reading.get(sensor_id),
        }

    def _save_changes(self, conn: sa.Connection, changes: list[AlertChange]) -> None:
        now = self.clock()
        for ch in changes:
            self.store.save_alert(conn, _alert_row(ch.alert))
            dev = self.devices.get(ch.alert.sensor)
            self.store.audit(conn, now, ch.by, f"alert_{ch.action}", dev.site if dev else None, None, None,
                             ch.to_dict())
            if self.webhooks is not None:
                self.webhooks.enqueue(conn, {"type": "alert", **ch.to_dict()})

    def _count_changes(self, changes: list[AlertChange]) -> None:
        """Committed alert changes: counted, streamed to live viewers, webhooks woken."""
        if changes and self.webhooks is not None:
            self.webhooks.wake()
        for ch in changes:
            self.events.publish("alert", ch.to_dict())
            self.metrics.alert_changes.labels(action=ch.action, kind=ch.alert.kind).inc()
            log.info("alert %s %s: %s at %s (%s)", ch.alert.id, ch.action, ch.alert.kind, ch.alert.sensor,
                     ch.alert.level)

    # -- offline rule -----------------------------------------------------------------------
    def prune(self, now: datetime) -> int:
        """Delete raw readings past the retention period (aggregates stay); returns how many."""
        cutoff = int(now.timestamp()) - self.cfg.sigap.raw_retention_days * 86400
        with self.store.transaction() as conn:
            res = conn.execute(sa.delete(readings_table).where(readings_table.c.ts < cutoff))
        return int(res.rowcount or 0)

    async def check(self, now: datetime | None = None) -> None:
        """The offline rule for every sensor; call every few seconds."""
        t = (now or self.clock()).timestamp()
        try:
            self.flush_states()
        except Exception:
            log.exception("could not write the waiting sensor states; retried at the next check")
        for sensor_id, sensor in self.sensors.items():
            res = sensor.check(t, self.listening_since)
            if not res.changed and not res.events:
                continue
            changes = self._apply_events(res.events)
            try:
                with self.store.transaction() as conn:
                    self._save_state(conn, sensor_id, None)
                    self._save_changes(conn, changes)
            except Exception:
                self._load()
                log.exception("could not persist the offline state of %s; water state reloaded", sensor_id)
                self.metrics.reject("db_error")
                continue
            self._count_changes(changes)
            self.publish_sensor(sensor_id)

    # -- output ---------------------------------------------------------------------------------
    def siren_of(self, board: str) -> dict[str, Any]:
        """What a siren board is asked: on while any sensor it follows wants it on."""
        states = [self.sensors[s].state for s in self.followers.get(board, [])]
        on = [st for st in states if st.siren_on]
        pool = on or states
        level = max((st.status for st in pool), key=status_rank, default=STATUSES[0])
        return {"on": bool(on), "level": level}

    def publish_sensor(self, sensor_id: str, config: bool = False, force: bool = False) -> None:
        """Publish what changed for one sensor: level message, sirens, board config (all retained).

        The level message may wait for the end of the sensor's window (``level_window_s``).
        """
        sensor = self.sensors[sensor_id]
        dev = self.devices[sensor_id]
        st = sensor.state
        status = "offline" if st.offline else st.status
        window = self.level_window_s
        if force or window <= 0 or self._sent_status.get(sensor_id) != status:
            self._publish_level(sensor_id, force)
        elif sensor_id not in self._level_due:
            loop = self._running_loop()
            last = self._level_at.get(sensor_id)
            due = 0.0 if last is None else last + window
            if loop is None or due <= loop.time():
                self._publish_level(sensor_id, False)
            else:
                self._level_due[sensor_id] = due
                heapq.heappush(self._level_heap, (due, sensor_id))
                if self._level_timer is None or self._level_timer.when() > due:
                    if self._level_timer is not None:
                        self._level_timer.cancel()
                    self._level_timer = loop.call_at(due, self._level_tick)
        # A siren board's ask depends on its sensors' siren_on and status only: unchanged for
        # this sensor since its last look, nothing to do for the boards it drives.
        basis = (st.siren_on, st.status)
        if force or self._siren_basis.get(sensor_id) != basis:
            self._siren_basis[sensor_id] = basis
            for board in (sensor_id, *dev.sirens):
                siren = self.siren_of(board)
                key = (siren["on"], siren["level"] if siren["on"] else None)
                if force or self._sent_siren.get(board) != key:
                    self.bus.send(wire.dev_topic(self.prefix, board, "cmd/siren"), _json(siren), True, 1)
                    self._sent_siren[board] = key
        if config or force or sensor_id not in self._sent_config:
            body = _json(board_config(sensor))
            if force or self._sent_config.get(sensor_id) != body:
                self.bus.send(wire.dev_topic(self.prefix, sensor_id, "cmd/config"), body, True, 1)
                self._sent_config[sensor_id] = body

    def _publish_level(self, sensor_id: str, force: bool) -> None:
        """The sensor's level message and SSE event now, if it differs from the last one (or force)."""
        self._level_due.pop(sensor_id, None)
        msg = level_message(self.sensors[sensor_id])
        if msg["status"] == "offline" or msg["level_mm"] is not None:
            body = _json(msg)
            changed = self._sent_level.get(sensor_id) != body
            if force or changed:
                dev = self.devices[sensor_id]
                self.bus.send(wire.site_water_topic(self.prefix, dev.site, sensor_id), body, True, 1)
                if changed:
                    self.events.publish("water", {"id": sensor_id, "site": dev.site, **msg})
                self._sent_level[sensor_id] = body
                self._sent_status[sensor_id] = msg["status"]
                loop = self._running_loop()
                self._level_at[sensor_id] = loop.time() if loop is not None else 0.0

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the service runs in (None outside one: then nothing waits)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:
                return None
        return loop

    def _level_tick(self) -> None:
        """Timer: the level messages whose window has ended."""
        self._level_timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        heap = self._level_heap
        while heap and heap[0][0] <= now:
            due, sensor_id = heapq.heappop(heap)
            if self._level_due.get(sensor_id) == due:
                self._publish_level(sensor_id, False)
        while heap and self._level_due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # superseded: sent at once meanwhile
        if heap:
            self._level_timer = loop.call_at(heap[0][0], self._level_tick)

    def flush_levels(self) -> None:
        """Every waiting level message now (clean shutdown)."""
        for sensor_id in list(self._level_due):
            self._publish_level(sensor_id, False)
        self._level_heap.clear()
        if self._level_timer is not None:
            self._level_timer.cancel()
            self._level_timer = None

    @property
    def levels_waiting(self) -> int:
        """Sensors whose level message waits for the end of its window."""
        return len(self._level_due)

    async def publish_all(self, force: bool = False) -> None:
        """Every sensor's retained outputs (at start and after a reconnect)."""
        for sensor_id in self.sensors:
            self.publish_sensor(sensor_id, config=True, force=force)
