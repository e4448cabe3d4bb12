"""Alert life cycle (CONTRACT §3): ``open`` → ``acknowledged`` → ``resolved``.

A pure, in-memory book of alerts; no I/O, time passed in as Unix seconds. The
controller persists and audits every :class:`AlertChange` it gets back and
sends it to webhooks and SSE; after a restart it rebuilds the book with
:meth:`AlertBook.restore`.

Rules the controller relies on:

* **One alert per episode.** At most one *active* (``open`` or
  ``acknowledged``) alert exists per ``(kind, sensor)``. Raising again while one
  is active updates it (``update``, a new ``level``) or does nothing when the
  level is the same; only after it is resolved does a raise open a new alert.
* **Escalation re-opens.** When the level of an *acknowledged* alert rises on
  the status scale (``waspada`` < ``siaga`` < ``awas``) the alert returns to
  ``open`` (action ``escalate``; its ``acked_*`` fields and note are cleared,
  the earlier ack stays in the audit log), so an operator who acknowledged
  ``siaga`` is asked again at ``awas``. A fall in level keeps the state.
* **Clearing** (the condition ended, e.g. the level went back to normal)
  resolves the active alert with ``resolved_by = "system"`` (action ``clear``).
  Clearing when nothing is active does nothing.
* **People**: ``ack`` only from ``open``; ``resolve`` from ``open`` or
  ``acknowledged``. Anything else raises :class:`InvalidTransition`; an id the
  book does not know raises :class:`UnknownAlert`. Resolved alerts stay
  readable (the newest ``keep_resolved`` of them) so a late ack gets a clear
  "already resolved" instead of "unknown".
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

AlertKind = Literal["level", "rate", "offline", "battery_low", "no_echo"]
"""Kinds raised by the water domain; the book itself accepts any kind string."""
AlertState = Literal["open", "acknowledged", "resolved"]
ChangeAction = Literal["open", "update", "escalate", "ack", "resolve", "clear"]
EventAction = Literal["raise", "update", "clear"]

SYSTEM = "system"
"""``by`` / ``resolved_by`` of changes the controller makes on its own."""
LEVEL_RANK: dict[str, int] = {"normal": 0, "waspada": 1, "siaga": 2, "awas": 3}
"""Levels that can escalate; other kinds' levels are just labels."""


class AlertError(Exception):
    """Base of the alert book's errors."""


class UnknownAlert(AlertError, LookupError):
    """No alert with this id (or it was resolved long ago and dropped from memory)."""


class InvalidTransition(AlertError):
    """The alert's state does not allow this action (e.g. ack of a resolved alert)."""


@dataclass(kw_only=True)
class Alert:
    """One alert episode of one kind at one sensor; persisted as one row."""

    id: int
    kind: str
    sensor: str
    level: str
    """The status (``waspada``/``siaga``/``awas``) for ``level`` alerts, a label for other kinds."""
    state: AlertState = "open"
    opened: float
    updated: float
    acked_by: str | None = None
    acked_at: float | None = None
    note: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None

    @property
    def active(self) -> bool:
        """Open or acknowledged: the episode is not over."""
        return self.state != "resolved"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``GET /api/alerts`` rows); times are Unix seconds."""
        return asdict(self)


@dataclass(frozen=True)
class AlertEvent:
    """What a sensor's state machine asks of the alert book (see :meth:`AlertBook.apply`)."""

    action: EventAction
    kind: AlertKind
    sensor: str
    level: str | None
    """``None`` for ``clear``."""
    ts: float
    """When the condition began, changed or ended (a reading's ts, or the check time)."""


@dataclass(frozen=True)
class AlertChange:
    """A change to persist, audit and announce (webhook, SSE)."""

    action: ChangeAction
    alert: Alert
    """A copy of the alert after the change."""
    by: str
    """The user, or ``"system"``."""
    at: float
    previous: str | None = None
    """Level before an ``update``/``escalate``; state before ``ack``/``resolve``/``clear``."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the audit log and webhooks."""
        return {
            "action": self.action,
            "by": self.by,
            "at": self.at,
            "previous": self.previous,
            "alert": self.alert.to_dict(),
        }


def _escalates(old: str, new: str) -> bool:
    return old in LEVEL_RANK and new in LEVEL_RANK and LEVEL_RANK[new] > LEVEL_RANK[old]


class AlertBook:
    """Every active alert (and the recently resolved ones), one active alert per kind and sensor."""

    def __init__(self, *, next_id: int = 1, keep_resolved: int = 1000) -> None:
        if next_id < 1 or keep_resolved < 0:
            raise ValueError("next_id must be ≥ 1 and keep_resolved ≥ 0")
        self._next_id = next_id
        self._keep_resolved = keep_resolved
        self._alerts: dict[int, Alert] = {}
        self._active: dict[tuple[str, str], int] = {}
        self._resolved: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.RLock()

    # ------------------------------------------------------------ system side

    def raise_or_update(
        self, kind: str, sensor: str, level: str, now: float
    ) -> tuple[Alert, AlertChange | None]:
        """Open an alert, or update the active one of this kind and sensor.

        Returns the alert (a copy) and the change, ``None`` when nothing changed
        (same level raised again).
        """
        with self._lock:
            active_id = self._active.get((kind, sensor))
            if active_id is None:
                alert = Alert(
                    id=self._next_id, kind=kind, sensor=sensor, level=level, opened=now, updated=now
                )
                self._next_id += 1
                self._alerts[alert.id] = alert
                self._active[(kind, sensor)] = alert.id
                return replace(alert), AlertChange("open", replace(alert), SYSTEM, now)
            alert = self._alerts[active_id]
            if alert.level == level:
                return replace(alert), None
            previous = alert.level
            action: ChangeAction = "update"
            if alert.state == "acknowledged" and _escalates(previous, level):
                action = "escalate"
                alert.state = "open"
                alert.acked_by = None
                alert.acked_at = None
                alert.note = None
            alert.level = level
            alert.updated = now
            return replace(alert), AlertChange(action, replace(alert), SYSTEM, now, previous)

    def clear(self, kind: str, sensor: str, now: float) -> AlertChange | None:
        """The condition ended: resolve the active alert as ``system``; ``None`` if none is active."""
        with self._lock:
            active_id = self._active.get((kind, sensor))
            if active_id is None:
                return None
            return self._resolve(self._alerts[active_id], SYSTEM, now, None, "clear")

    def apply(self, event: AlertEvent, now: float | None = None) -> AlertChange | None:
        """Carry out a sensor's :class:`AlertEvent`; ``now`` defaults to the event's ts."""
        at = event.ts if now is None else now
        if event.action == "clear":
            return self.clear(event.kind, event.sensor, at)
        if event.level is None:
            raise ValueError(f"{event.action} event without a level")
        return self.raise_or_update(event.kind, event.sensor, event.level, at)[1]

    # ------------------------------------------------------------ people side

    def ack(self, alert_id: int, user: str, note: str | None, now: float) -> AlertChange:
        """An operator has seen an open alert."""
        if not user:
            raise ValueError("ack needs the user's name")
        with self._lock:
            alert = self._get(alert_id)
            if alert.state != "open":
                who = alert.acked_by if alert.state == "acknowledged" else alert.resolved_by
                raise InvalidTransition(f"alert {alert_id} is already {alert.state} (by {who})")
            alert.state = "acknowledged"
            alert.acked_by = user
            alert.acked_at = now
            alert.note = note
            alert.updated = now
            return AlertChange("ack", replace(alert), user, now, "open")

    def resolve(self, alert_id: int, user: str, now: float, note: str | None = None) -> AlertChange:
        """An operator closes an open or acknowledged alert (a note replaces the ack's note)."""
        if not user:
            raise ValueError("resolve needs the user's name")
        with self._lock:
            alert = self._get(alert_id)
            if alert.state == "resolved":
                raise InvalidTransition(
                    f"alert {alert_id} is already resolved (by {alert.resolved_by})"
                )
            return self._resolve(alert, user, now, note, "resolve")

    # ------------------------------------------------------------------ views

    def get(self, alert_id: int) -> Alert:
        """A copy of one alert; :class:`UnknownAlert` if the book does not hold it."""
        with self._lock:
            return replace(self._get(alert_id))

    def active(self, kind: str, sensor: str) -> Alert | None:
        """The active alert of this kind at this sensor, if any (a copy)."""
        with self._lock:
            active_id = self._active.get((kind, sensor))
            return None if active_id is None else replace(self._alerts[active_id])

    def open_alerts(self, sensor: str | None = None) -> list[Alert]:
        """Open and acknowledged alerts, oldest first (copies)."""
        with self._lock:
            return [
                replace(a)
                for _, a in sorted(self._alerts.items())
                if a.active and (sensor is None or a.sensor == sensor)
            ]

    def alerts(self) -> list[Alert]:
        """Every alert the book holds (active and recently resolved), oldest first (copies)."""
        with self._lock:
            return [replace(a) for _, a in sorted(self._alerts.items())]

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Rebuild the book from stored alerts (at least every active one).

        Ids continue above the highest restored id. Should storage hold two
        active alerts of one kind and sensor, the newer is the episode's; the
        older stays listed for an operator to resolve.
        """
        with self._lock:
            self._alerts.clear()
            self._active.clear()
            self._resolved.clear()
            for a in sorted(alerts, key=lambda a: a.id):
                if a.id in self._alerts:
                    raise ValueError(f"duplicate alert id {a.id}")
                self._alerts[a.id] = replace(a)
                if a.active:
                    self._active[(a.kind, a.sensor)] = a.id
                else:
                    self._resolved[a.id] = None
                self._next_id = max(self._next_id, a.id + 1)
            self._trim()

    # -------------------------------------------------------------- internals

    def _get(self, alert_id: int) -> Alert:
        alert = self._alerts.get(alert_id)
        if alert is None:
            raise UnknownAlert(f"no alert {alert_id}")
        return alert

    def _resolve(
        self, alert: Alert, by: str, now: float, note: str | None, action: ChangeAction
    ) -> AlertChange:
        previous = alert.state
        alert.state = "resolved"
        alert.resolved_by = by
        alert.resolved_at = now
        alert.updated = now
        if note is not None:
            alert.note = note
        if self._active.get((alert.kind, alert.sensor)) == alert.id:
            del self._active[(alert.kind, alert.sensor)]
        self._resolved[alert.id] = None
        self._trim()
        return AlertChange(action, replace(alert), by, now, previous)

    def _trim(self) -> None:
        while len(self._resolved) > self._keep_resolved:
            old, _ = self._resolved.popitem(last=False)
            del self._alerts[old]
