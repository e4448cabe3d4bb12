"""Queue service: applies kiosk and counter events to the domain exactly once,
persists them, and publishes what each board should show.

Order for every event: (1) seen before? answer from memory; (2) apply to the
in-memory SiteQueue; (3) commit the applied-event record, changed tickets,
counter state and audit entry in ONE transaction; (4) publish. A crash before
(3) leaves no trace, so the board's retry is applied fresh; a crash after (3)
makes the retry a duplicate that gets the stored answer.

Outputs: the kiosk's ``cmd/ticket`` and every changed ``cmd/show`` leave at
once. The retained ``site/{site}/queue`` snapshot (and the ``queue`` event of
the live stream) is published at most every ``snapshot_interval_s``, always
with the state at that moment, so a burst of presses costs one snapshot and
the last one published is always the final state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from controller.config import SiteConfig
from controller.domain.queue import (
    CounterSpec,
    CounterState,
    Outcome,
    Refusal,
    ServiceSpec,
    SiteQueue,
    Ticket,
)
from controller.events import EventHub
from controller.metrics import Metrics
from protocol import wire

log = logging.getLogger("sigap.queues")

HALL_LINES = 4
RECENT_EVENTS = 100_000  # event ids remembered in memory for the fast duplicate check
SNAPSHOT_INTERVAL_S = 0.15
"""Least time between two publications of a site's queue snapshot (a burst is coalesced)."""


def _hhmm(value: Any) -> Any:
    if isinstance(value, str):
        from datetime import time

        h, m = value.split(":")
        return time(int(h), int(m))
    return value


def ticket_row(t: Ticket) -> dict[str, Any]:
    """A domain ticket as a `tickets` table row."""
    return {
        "site": t.site,
        "ticket_id": t.id,
        "day": t.day.isoformat(),
        "label": t.label,
        "number": t.number,
        "service": t.service,
        "prio": t.prio,
        "status": t.status,
        "token": t.token,
        "issued_at": t.issued_at,
        "order_at": t.order_at,
        "called_at": t.called_at,
        "finished_at": t.finished_at,
        "counter": t.counter,
        "calls": t.calls,
        "source": t.source,
        "rating": t.rating,
    }


def row_ticket(r: dict[str, Any]) -> Ticket:
    """A `tickets` row back into a domain ticket."""
    from datetime import date

    return Ticket(
        id=r["ticket_id"],
        token=r["token"],
        site=r["site"],
        service=r["service"],
        label=r["label"],
        number=r["number"],
        day=date.fromisoformat(r["day"]),
        prio=bool(r["prio"]),
        status=r["status"],
        issued_at=r["issued_at"],
        called_at=r["called_at"],
        finished_at=r["finished_at"],
        counter=r["counter"],
        order_at=r["order_at"],
        calls=r["calls"],
        source=r["source"],
        rating=r["rating"],
    )


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def encode_snapshot(snapshot: dict[str, Any], limit: int = wire.MAX_CONTROLLER_PAYLOAD) -> tuple[bytes, list[str]]:
    """The retained ``site/{site}/queue`` payload within ``limit`` bytes (CONTRACT §1: 4096).

    A large site's full snapshot can be longer. What gives way, in order: the
    oldest of today's calls (the newest stay), then the names, agencies and
    service lists that the site config already holds (``GET /api/sites``).
    The waiting counts, last numbers, open flags and what each counter serves
    now always stay; ``"trimmed"`` lists what was left out. ``GET
    /api/queues/{site}`` and the live stream keep the whole snapshot.
    Returns (payload, what was trimmed).
    """
    body = _compact(snapshot)
    if len(body) <= limit:
        return body, []
    trimmed = ["calls"]
    out = dict(snapshot, trimmed=trimmed)
    calls = list(snapshot.get("calls", []))  # newest first
    body = _with_newest_calls(out, calls, limit)
    if len(body) <= limit:
        return body, trimmed
    trimmed.append("names")
    out["services"] = {
        code: {k: v for k, v in svc.items() if k not in ("name", "agency")}
        for code, svc in snapshot.get("services", {}).items()
    }
    out["counters"] = {
        cid: {k: v for k, v in c.items() if k not in ("name", "services")}
        for cid, c in snapshot.get("counters", {}).items()
    }
    return _with_newest_calls(out, calls, limit), trimmed


def _with_newest_calls(out: dict[str, Any], calls: list[Any], limit: int) -> bytes:
    """``out`` with as many of the newest calls as fit in ``limit`` (none if even that is too long)."""
    lo, hi = 0, len(calls)
    while lo < hi:  # the most calls that fit, by bisection
        mid = (lo + hi + 1) // 2
        out["calls"] = calls[:mid]
        if len(_compact(out)) <= limit:
            lo = mid
        else:
            hi = mid - 1
    out["calls"] = calls[:lo]
    return _compact(out)

class QueueService:
    """Every site's queue, wired to the store and the bus."""

    def __init__(self, cfg: SiteConfig, store: Any, bus: Any, metrics: Metrics, clock: Callable[[], datetime],
                 events: EventHub | None = None):
        self.cfg = cfg
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.clock = clock
        self.events = events or EventHub()
        self.prefix = cfg.sigap.prefix
        self.public_url = cfg.sigap.public_url.rstrip("/")
        self.sites: dict[str, SiteQueue] = {}
        self._shown: dict[str, bytes] = {}
        self._recent: dict[tuple[str, int, int], None] = {}
        self._snapshots: dict[str, bytes] = {}
        self._trim_logged: set[str] = set()  # sites whose snapshot had to be trimmed (logged once)
        self.snapshot_interval_s = SNAPSHOT_INTERVAL_S
        self._snapshot_due: dict[str, asyncio.TimerHandle] = {}
        for site in cfg.sites:
            if site.services:
                self.sites[site.id] = self._load_site(site.id)

    # -- building and restoring ------------------------------------------------------
    def _new_queue(self, site_id: str) -> SiteQueue:
        site = self.cfg.site(site_id)
        if site is None:
            raise KeyError(site_id)
        services = [
            ServiceSpec(
                code=s.code, name=s.name, agency=s.agency, open=_hhmm(s.open), close=_hhmm(s.close),
                quota=s.quota, sla_min=s.sla_min, **({"days": frozenset(s.days)} if getattr(s, "days", None) else {}),
            )
            for s in site.services
        ]
        counters = [CounterSpec(id=c.id, name=c.name, services=tuple(c.services)) for c in site.counters]
        return SiteQueue(site.id, ZoneInfo(site.timezone), services, counters, clock=self.clock)

    def _load_site(self, site_id: str) -> SiteQueue:
        q = self._new_queue(site_id)
        since = (self.clock().astimezone(q.tz).date()).isoformat()
        tickets = [row_ticket(r) for r in self.store.load_tickets(site_id, since)]
        counters = {
            cid: CounterState(open=bool(r["open"]), last_finished=r["last_finished"])
            for cid, r in self.store.load_counters(site_id).items()
        }
        repaired = q.restore(tickets, counters, max_id=self.store.max_ticket_id(site_id))
        if repaired:
            with self.store.transaction() as conn:
                self.store.save_tickets(conn, [ticket_row(t) for t in repaired])
        return q

    def reload_site(self, site_id: str) -> None:
        """Rebuild a site's queue from what is committed (after an unexpected error)."""
        if site_id in self.sites:
            self.store.forget_cached_head()
            self.sites[site_id] = self._load_site(site_id)

    def snapshot(self, site_id: str) -> dict[str, Any] | None:
        """The CONTRACT §4 queue snapshot, or None for an unknown site."""
        q = self.sites.get(site_id)
        return q.snapshot() if q else None

    def ticket_view(self, token: str) -> dict[str, Any] | None:
        """A ticket's public status by its token, at whichever site."""
        for q in self.sites.values():
            v = q.ticket_view(token)
            if v is not None:
                return v
        return None

    # -- events ---------------------------------------------------------------------------
    async def _duplicate(self, dev: Any, msg: dict[str, Any]) -> bool:
        """True (and the stored answer sent again) when this event was applied already.

        Only events applied by this process are looked up here (the common
        QoS 1 redelivery); any other repeat, e.g. after a restart, is caught by
        the database's primary key when its transaction commits (see _commit).
        """
        if (dev.id, msg["boot"], msg["seq"]) not in self._recent:
            return False
        return self._answer_duplicate(dev, msg)

    def _answer_duplicate(self, dev: Any, msg: dict[str, Any]) -> bool:
        found, answer = self.store.applied(dev.id, msg["boot"], msg["seq"])
        if not found:
            return False
        self.metrics.duplicates.inc()
        if answer is not None:
            self.bus.send(wire.dev_topic(self.prefix, dev.id, "cmd/ticket"), answer.encode(), False, 1)
        return True

    def _remember(self, key: tuple[str, int, int]) -> None:
        self._recent[key] = None
        if len(self._recent) > RECENT_EVENTS:
            del self._recent[next(iter(self._recent))]

    def _answer(self, q: SiteQueue, seq: int, result: Ticket | Refusal) -> dict[str, Any]:
        if isinstance(result, Refusal):
            return {"re": seq, "error": result.reason}
        answer = {"re": seq, **q.kiosk_answer(result)}
        answer["url"] = f"{self.public_url}/t/{result.token}"
        if result.prio:
            answer["prio"] = True
        return answer

    def _commit(self, q: SiteQueue, dev: Any, msg: dict[str, Any], kind: str, answer: str | None,
                changed: list[Ticket], action: str, ticket: str | None, counter: str | None,
                detail: dict[str, Any], finished: Ticket | None = None) -> bool:
        now = self.clock()
        try:
            with self.store.transaction() as conn:
                self.store.record_applied(conn, dev.id, msg["boot"], msg["seq"], kind, answer, now)
                self.store.save_tickets(conn, [ticket_row(t) for t in changed], new=action == "issue")
                st = q.counter_state(counter) if counter is not None else None
                if counter is not None and st is not None:
                    self.store.save_counter(conn, q.site_id, counter, st.open, st.last_finished)
                if finished is not None:
                    # "next" finishes the current ticket before calling: two entries.
                    self.store.audit(conn, now, dev.id, "done", q.site_id, finished.label, counter, {"key": "next"})
                self.store.audit(conn, now, dev.id, action, q.site_id, ticket, counter, detail)
            self._remember((dev.id, msg["boot"], msg["seq"]))
            return True
        except Exception as e:
            # Memory ran ahead of the database: rebuild this site from what is committed.
            self.reload_site(q.site_id)
            if isinstance(e, sa.exc.IntegrityError) and self._answer_duplicate(dev, msg):
                self._remember((dev.id, msg["boot"], msg["seq"]))
                return False  # applied before (e.g. before a restart): answered from the record
            log.exception("could not persist %s from %s; site %s reloaded", action, dev.id, q.site_id)
            self.metrics.reject("db_error")
            return False

    async def kiosk_press(self, dev: Any, msg: dict[str, Any]) -> None:
        """A citizen pressed a service button: issue a ticket or refuse, once."""
        if await self._duplicate(dev, msg):
            return
        q = self.sites.get(dev.site)
        if q is None:
            self.metrics.reject("no_queue_at_site")
            return
        key = msg["key"]
        result: Ticket | Refusal
        if key not in dev.services:
            result = Refusal("unknown_service")
        else:
            result = q.issue(key, prio=bool(msg.get("prio")), source=dev.id)
        answer = self._answer(q, msg["seq"], result)
        payload = json.dumps(answer, separators=(",", ":"))
        if isinstance(result, Refusal):
            ok = self._commit(q, dev, msg, "press", payload, [], "refuse", None, None, {"service": key, "reason": result.reason})
            self.metrics.refusals.labels(site=q.site_id, reason=result.reason).inc()
        else:
            ok = self._commit(q, dev, msg, "press", payload, [result], "issue", result.label, None,
                              {"service": result.service, "prio": result.prio})
            if ok:
                self.metrics.tickets.labels(site=q.site_id, service=result.service).inc()
        if not ok:
            return
        if key not in dev.services:
            # A code this kiosk has no button for: a misconfigured or rogue board.
            # Answered with the contract's refusal, and logged and counted as bad input.
            self.metrics.reject("unknown_service")
            log.warning("rejected press from %s: unknown_service (key %r)", dev.id, key)
        self.bus.send(wire.dev_topic(self.prefix, dev.id, "cmd/ticket"), payload.encode(), False, 1)
        await self.publish_site(q.site_id)

    async def counter_press(self, dev: Any, msg: dict[str, Any]) -> None:
        """A staff key at a counter board."""
        if await self._duplicate(dev, msg):
            return
        q = self.sites[dev.site]
        key = msg["key"]
        c = dev.counter
        outcome: Outcome
        if key == "next":
            outcome = q.call_next(c)
        elif key == "recall":
            outcome = q.recall(c)
        elif key == "skip":
            outcome = q.skip(c)
        elif key == "done":
            outcome = q.done(c)
        elif key == "pause":
            outcome = q.pause(c)
        elif key == "resume":
            outcome = q.resume(c)
        else:
            outcome = q.transfer(c, msg["to"])
        label = outcome.ticket.label if outcome.ticket else None
        detail: dict[str, Any] = {"key": key}
        if outcome.error:
            detail["error"] = outcome.error
        if key == "transfer":
            detail["to"] = msg["to"]
        if not self._commit(q, dev, msg, "press", None, outcome.changed, outcome.event or key, label, c, detail,
                            finished=outcome.finished):
            return
        if outcome.event == "call" and not outcome.error:
            self.metrics.calls.labels(site=q.site_id).inc()
        chime = outcome.event in ("call", "recall") and not outcome.error and outcome.ticket is not None
        await self.publish_site(q.site_id, chime_counter=c if chime else None)

    async def rating(self, dev: Any, msg: dict[str, Any]) -> None:
        """A citizen's SKM rating for the ticket this counter finished last."""
        if await self._duplicate(dev, msg):
            return
        q = self.sites[dev.site]
        outcome = q.rate(dev.counter, msg["score"])
        label = outcome.ticket.label if outcome.ticket else None
        detail: dict[str, Any] = {"score": msg["score"]}
        if outcome.error:
            detail["error"] = outcome.error
        self._commit(q, dev, msg, "rating", None, outcome.changed, "rate", label, dev.counter, detail)

    # -- output ------------------------------------------------------------------------------
    def shows(self, site_id: str, snap: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """What every counter board and display at a site should show now."""
        q = self.sites[site_id]
        if snap is None:
            snap = q.snapshot()
        out: dict[str, dict[str, Any]] = {}
        for dev in self.cfg.devices:
            if dev.site != site_id:
                continue
            if dev.role == "counter":
                st = snap["counters"].get(dev.counter, {})
                waiting = sum(snap["services"][s]["waiting"] for s in st.get("services", []))
                second = f"Menunggu {waiting}" if st.get("open", True) else "ISTIRAHAT"
                out[dev.id] = {"lines": [st.get("serving") or "----", second]}
            elif dev.role == "display" and getattr(dev, "hall", False):
                lines = [f"{c['ticket']} > LOKET {c['counter']}" for c in snap["calls"][:HALL_LINES]]
                out[dev.id] = {"lines": lines or ["SELAMAT DATANG"]}
            elif dev.role == "display":
                cs = list(dev.counters)
                if len(cs) == 1:
                    serving = snap["counters"].get(cs[0], {}).get("serving")
                    out[dev.id] = {"lines": [serving or "----", f"LOKET {cs[0]}"]}
                else:
                    out[dev.id] = {
                        "lines": [f"L{c} {snap['counters'].get(c, {}).get('serving') or '----'}" for c in cs]
                    }
        return out

    def _chimes(self, dev: Any, counter: str | None) -> bool:
        if counter is None:
            return False
        if dev.role == "display":
            return getattr(dev, "hall", False) or counter in dev.counters
        return False

    async def publish_site(self, site_id: str, chime_counter: str | None = None, force: bool = False) -> None:
        """Publish changed shows (retained) now, and the site snapshot (retained) soon.

        ``force`` (after a reconnect) publishes everything now, changed or not.
        """
        snapshot = self.sites[site_id].snapshot()
        for dev_id, show in self.shows(site_id, snapshot).items():
            dev = self.cfg.device(dev_id)
            chime = self._chimes(dev, chime_counter)
            body = json.dumps(show, separators=(",", ":")).encode()
            if not force and not chime and self._shown.get(dev_id) == body:
                continue
            if chime:
                show = dict(show, chime=True)
            payload = json.dumps(show, separators=(",", ":")).encode()
            # Outputs are not awaited (no PUBACK wait per message); all retained
            # outputs are published again after a reconnect.
            self.bus.send(wire.dev_topic(self.prefix, dev_id, "cmd/show"), payload, True, 1)
            self._shown[dev_id] = body
        if force:
            self._publish_snapshot(site_id, force=True, snapshot=snapshot)
        elif site_id not in self._snapshot_due:
            loop = asyncio.get_running_loop()
            self._snapshot_due[site_id] = loop.call_later(self.snapshot_interval_s, self._publish_snapshot, site_id)

    def _publish_snapshot(self, site_id: str, force: bool = False, snapshot: dict[str, Any] | None = None) -> None:
        """The site snapshot as it is now: retained on MQTT and to the live stream, when changed (or forced)."""
        due = self._snapshot_due.pop(site_id, None)
        if due is not None:
            due.cancel()
        if snapshot is None:
            snapshot = self.sites[site_id].snapshot()
        snap, trimmed = encode_snapshot(snapshot)
        if force or self._snapshots.get(site_id) != snap:
            if trimmed and site_id not in self._trim_logged:
                self._trim_logged.add(site_id)
                log.warning("site %s: queue snapshot over %d bytes on MQTT; left out: %s (the HTTP API has it all)",
                            site_id, wire.MAX_CONTROLLER_PAYLOAD, ", ".join(trimmed))
            self.bus.send(wire.site_queue_topic(self.prefix, site_id), snap, True, 1)
            if self._snapshots.get(site_id) != snap:
                self.events.publish("queue", snapshot)
            self._snapshots[site_id] = snap

    def flush_snapshots(self) -> None:
        """Publish every snapshot still waiting for its turn now (before a clean shutdown)."""
        for site_id in list(self._snapshot_due):
            self._publish_snapshot(site_id)

    async def publish_all(self, force: bool = False) -> None:
        """Every site's outputs (after a reconnect)."""
        for site_id in self.sites:
            await self.publish_site(site_id, force=force)
