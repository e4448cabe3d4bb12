"""Queue rules of one MPP site (CONTRACT §2): a pure, in-memory state machine.

No I/O: the clock and the token source are injected; the controller persists
``Outcome.changed`` (and the counter's :class:`CounterState`) in the same
transaction as the audit entry, and rebuilds a queue after a restart with
:meth:`SiteQueue.restore`.

Rules and choices the controller relies on:

* **Day.** The site's local date is computed from the clock at every
  operation, so numbering restarts at local midnight without a timer. At the
  first operation of a new day, tickets of earlier days are dropped from memory
  unless a counter still holds them; their rows stay as they were. Only today's
  tickets are called, counted or estimated.
* **Numbers.** ``A001`` … ``A999``, one sequence per service per day; the
  sequence continues from the highest number seen (also after ``restore``),
  so a number is never reused. Ticket ids rise across days (``restore`` takes
  the highest id ever stored). A ticket keeps its label when transferred;
  quota and ``last`` count by the service that issued the label.
* **Issue refusals**, checked in this order: ``unknown_service`` (no such
  code), ``unavailable`` (the service exists but no counter in the config
  serves it; a *paused* counter still counts, so kiosks work before staff
  arrive), ``closed`` (outside ``open`` ≤ local time < ``close`` or not on one
  of ``days``; ``close`` ≤ ``open`` means the window crosses midnight, so equal
  times mean all day), ``quota_full`` (``quota`` tickets issued today, or 999).
* **Statuses.** Stored: ``waiting → called → done | skipped``; ``called →
  waiting`` only by transfer; ``recall`` keeps ``called``. ``serving`` is never
  stored: :func:`ticket_status` derives it from a ``called`` ticket whose last
  call is at least ``call_grace_s`` (120 s) old, i.e. nobody skipped or
  recalled it within the grace time, so the citizen has presumably arrived.
* **next = done + call.** ``call_next`` first finishes the counter's current
  ticket as ``done`` (``Outcome.finished``), as MPP counters do, then calls the
  next ticket: priority first, then oldest ``order_at``, among the counter's
  services. A paused counter cannot call (``counter_paused``, nothing changes).
  With nothing waiting the current ticket is still finished and the error is
  ``nothing_waiting``: persist ``changed`` even when ``error`` is set.
* **Transfer** keeps label, priority and ``order_at`` (the original issue
  time), so the ticket goes ahead of the target's later tickets and behind its
  earlier ones. The target must exist, differ, and be served by some counter.
* **Rating** (1–4) goes to the ticket this counter last finished ``done``
  (``CounterState.last_finished``); the first rating wins, a second is refused
  ``already_rated``. Skipped tickets are never rated.
* Operations hold a lock, so two counters pressing ``next`` at once from two
  threads still get different tickets.
* **Waiting lines are indexed.** Today's waiting tickets are also kept per
  service as a list sorted in call order, so issuing, ``ahead``, the waiting
  counts and ``next`` cost O(log n) (a C-level list insert aside) instead of a
  scan of the whole day. Only this class changes a ticket's ``status``,
  ``service`` or ``day``; code outside must not (it would leave the index stale).
"""

from __future__ import annotations

import secrets
import threading
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo

from controller.domain.waiting import (
    CounterLoad,
    Forecast,
    ServiceTimes,
    WaitingTicket,
    expected_remaining_s,
    to_minutes,
)

TicketStatus = Literal["waiting", "called", "serving", "done", "skipped"]
RefusalReason = Literal["unknown_service", "closed", "quota_full", "unavailable"]

ALL_DAYS: frozenset[int] = frozenset(range(1, 8))
MAX_NUMBER = 999
FORECAST_MAX_AGE_S = 30.0
"""A forecast older than this is made again even if nothing changed (busy counters' remaining time moves)."""
MAX_CALLS_SHOWN = 10


def new_token() -> str:
    """An unguessable ticket token (the citizen's status link)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class ServiceSpec:
    """A service of a site as configured (times are site-local)."""

    code: str
    name: str
    agency: str
    open: time
    close: time
    quota: int | None = None
    sla_min: int | None = None
    days: frozenset[int] = ALL_DAYS
    """ISO weekdays (1 = Monday … 7 = Sunday) on which the service opens."""

    def is_open(self, local: datetime) -> bool:
        """Whether the service issues tickets at this site-local moment."""
        if local.isoweekday() not in self.days:
            return False
        t = local.time()
        if self.open < self.close:
            return self.open <= t < self.close
        return t >= self.open or t < self.close


@dataclass(frozen=True)
class CounterSpec:
    """A counter (loket) as configured."""

    id: str
    name: str
    services: tuple[str, ...]


@dataclass
class CounterState:
    """What a counter remembers beyond its tickets."""

    open: bool = True
    last_finished: int | None = None
    """Id of the ticket this counter last finished ``done`` (the one to rate)."""


@dataclass(kw_only=True)
class Ticket:
    """One queue ticket; the persistence layer stores it as one row."""

    id: int
    token: str
    site: str
    service: str
    label: str
    number: int
    day: date
    prio: bool = False
    status: TicketStatus = "waiting"
    issued_at: datetime
    order_at: datetime
    called_at: datetime | None = None
    finished_at: datetime | None = None
    counter: str | None = None
    calls: int = 0
    source: str | None = None
    rating: int | None = None

    @property
    def issued_service(self) -> str:
        """The service whose sequence gave this label (label minus its 3 digits)."""
        return self.label[:-3]


@dataclass(frozen=True)
class Refusal:
    """Why a ticket was not issued (the kiosk answer's ``error``)."""

    reason: RefusalReason


@dataclass(frozen=True)
class Call:
    """A call shown on the hall display."""

    ticket: str
    counter: str
    at: datetime


@dataclass
class Outcome:
    """Result of a counter action."""

    event: str
    """Verb for the audit log: call, recall, skip, done, pause, resume, transfer, rate."""
    counter: str
    ticket: Ticket | None = None
    """The ticket acted on (the one called, skipped, finished, transferred, rated)."""
    finished: Ticket | None = None
    """Set by ``call_next`` when it finished the previous ticket ``done``."""
    changed: list[Ticket] = field(default_factory=list)
    """Every ticket whose row changed; persist these even when ``error`` is set."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the action was carried out in full."""
        return self.error is None


def ticket_status(ticket: Ticket, now: datetime, call_grace_s: float = 120.0) -> TicketStatus:
    """Status shown to the outside: ``serving`` is derived from ``called`` + time."""
    if ticket.status in ("called", "serving") and ticket.called_at is not None:
        if (now - ticket.called_at).total_seconds() >= call_grace_s:
            return "serving"
        return "called"
    return ticket.status


CallKey = tuple[bool, datetime, int]


def _call_key(t: Ticket) -> CallKey:
    return (not t.prio, t.order_at, t.id)


class SiteQueue:
    """All queues of one site: issuing, calling and the views of them."""

    def __init__(
        self,
        site_id: str,
        tz: ZoneInfo,
        services: Iterable[ServiceSpec],
        counters: Iterable[CounterSpec],
        clock: Callable[[], datetime],
        token_factory: Callable[[], str] = new_token,
        call_grace_s: float = 120.0,
    ) -> None:
        self.site_id = site_id
        self.tz = tz
        self.call_grace_s = call_grace_s
        self._clock = clock
        self._token_factory = token_factory
        self._services: dict[str, ServiceSpec] = {}
        for s in services:
            if s.code in self._services:
                raise ValueError(f"duplicate service {s.code!r}")
            self._services[s.code] = s
        self._counter_specs: dict[str, CounterSpec] = {}
        for c in counters:
            if c.id in self._counter_specs:
                raise ValueError(f"duplicate counter {c.id!r}")
            unknown = [code for code in c.services if code not in self._services]
            if unknown:
                raise ValueError(f"counter {c.id!r} serves unknown service {unknown[0]!r}")
            self._counter_specs[c.id] = c
        self._served = {code for c in self._counter_specs.values() for code in c.services}
        self._lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self._tickets: dict[int, Ticket] = {}
        self._by_token: dict[str, Ticket] = {}
        self._seq: dict[tuple[date, str], int] = {}
        self._next_id = 1
        self._counters = {cid: CounterState() for cid in self._counter_specs}
        self._current: dict[str, Ticket] = {}
        # Today's waiting tickets per service, each list sorted by _call_key.
        self._waiting: dict[str, list[CallKey]] = {code: [] for code in self._services}
        self._calls: deque[Call] = deque(maxlen=MAX_CALLS_SHOWN)
        self._times = ServiceTimes(
            {s.code: float(s.sla_min) for s in self._services.values() if s.sla_min}
        )
        self._day: date | None = None
        self._version = 0
        # The waiting-time forecast: made at _forecast_at for _forecast_version.
        self._forecast: Forecast | None = None
        self._forecast_at: datetime | None = None
        self._forecast_version = -1

    # ---------------------------------------------------------------- time

    def _now(self) -> datetime:
        """The clock's time; rolls the day over when the local date changed."""
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the queue clock must return aware datetimes")
        today = now.astimezone(self.tz).date()
        if today != self._day:
            self._day = today
            self._drop_past_days(today)
        return now

    def _drop_past_days(self, today: date) -> None:
        held = {t.id for t in self._current.values()}
        for t in [t for t in self._tickets.values() if t.day < today and t.id not in held]:
            del self._tickets[t.id]
            self._by_token.pop(t.token, None)
        for key in [k for k in self._seq if k[0] < today]:
            del self._seq[key]
        self._reindex_waiting()
        self._version += 1

    def _local(self, dt: datetime) -> datetime:
        return dt.astimezone(self.tz)

    def _iso(self, dt: datetime) -> str:
        return self._local(dt).isoformat(timespec="seconds")

    # ---------------------------------------------------------------- issue

    def issue(
        self, service_code: str, prio: bool = False, source: str | None = None
    ) -> Ticket | Refusal:
        """Issue a ticket for ``service_code`` now, or say why not."""
        with self._lock:
            now = self._now()
            spec = self._services.get(service_code)
            if spec is None:
                return Refusal("unknown_service")
            if service_code not in self._served:
                return Refusal("unavailable")
            local = self._local(now)
            if not spec.is_open(local):
                return Refusal("closed")
            day = local.date()
            number = self._seq.get((day, service_code), 0) + 1
            if number > MAX_NUMBER or (spec.quota is not None and number > spec.quota):
                return Refusal("quota_full")
            token = self._token_factory()
            for _ in range(8):
                if token not in self._by_token:
                    break
                token = self._token_factory()
            else:
                raise RuntimeError("token factory keeps returning used tokens")
            t = Ticket(
                id=self._next_id,
                token=token,
                site=self.site_id,
                service=service_code,
                label=f"{service_code}{number:03d}",
                number=number,
                day=day,
                prio=prio,
                issued_at=now,
                order_at=now,
                source=source,
            )
            self._next_id += 1
            self._seq[(day, service_code)] = number
            self._tickets[t.id] = t
            self._by_token[token] = t
            self._enqueue(t)
            self._version += 1
            self._extend_forecast(t)
            return t

    # ---------------------------------------------------------------- counter actions

    def call_next(self, counter_id: str) -> Outcome:
        """Finish the current ticket ``done``, then call the next one (CONTRACT §2)."""
        with self._lock:
            now = self._now()
            spec = self._counter_specs.get(counter_id)
            if spec is None:
                return Outcome("call", counter_id, error="unknown_counter")
            if not self._counters[counter_id].open:
                return Outcome("call", counter_id, error="counter_paused")
            out = Outcome("call", counter_id)
            cur = self._current.get(counter_id)
            if cur is not None:
                self._finish(counter_id, cur, "done", now)
                out.finished = cur
                out.changed.append(cur)
            nxt = self._pick(spec)
            if nxt is None:
                out.error = "nothing_waiting"
                return out
            self._dequeue(nxt)
            nxt.status = "called"
            nxt.counter = counter_id
            nxt.called_at = now
            nxt.calls += 1
            self._current[counter_id] = nxt
            self._calls.appendleft(Call(nxt.label, counter_id, now))
            self._version += 1
            out.ticket = nxt
            out.changed.append(nxt)
            return out

    def recall(self, counter_id: str) -> Outcome:
        """Repeat the current call (``calls`` + 1, ``called_at`` = now)."""
        with self._lock:
            now = self._now()
            cur, err = self._current_or_error(counter_id)
            if cur is None:
                return Outcome("recall", counter_id, error=err)
            cur.status = "called"
            cur.calls += 1
            cur.called_at = now
            # A recall moves the call to the top of the hall's list; it is not a second entry.
            for old in [c for c in self._calls if c.ticket == cur.label and c.counter == counter_id]:
                self._calls.remove(old)
            self._calls.appendleft(Call(cur.label, counter_id, now))
            self._version += 1
            return Outcome("recall", counter_id, ticket=cur, changed=[cur])

    def skip(self, counter_id: str) -> Outcome:
        """Mark the current ticket a no-show; calls nothing."""
        with self._lock:
            now = self._now()
            cur, err = self._current_or_error(counter_id)
            if cur is None:
                return Outcome("skip", counter_id, error=err)
            self._finish(counter_id, cur, "skipped", now)
            return Outcome("skip", counter_id, ticket=cur, changed=[cur])

    def done(self, counter_id: str) -> Outcome:
        """Finish the current ticket."""
        with self._lock:
            now = self._now()
            cur, err = self._current_or_error(counter_id)
            if cur is None:
                return Outcome("done", counter_id, error=err)
            self._finish(counter_id, cur, "done", now)
            return Outcome("done", counter_id, ticket=cur, changed=[cur])

    def pause(self, counter_id: str) -> Outcome:
        """Close the counter for calls (its current ticket stays with it)."""
        return self._set_open(counter_id, False, "pause")

    def resume(self, counter_id: str) -> Outcome:
        """Open the counter for calls again."""
        return self._set_open(counter_id, True, "resume")

    def transfer(self, counter_id: str, to_service: str) -> Outcome:
        """Move the current ticket to ``to_service``, keeping label and place in time."""
        with self._lock:
            self._now()
            cur, err = self._current_or_error(counter_id)
            if cur is None:
                return Outcome("transfer", counter_id, error=err)
            if to_service not in self._services:
                return Outcome("transfer", counter_id, ticket=cur, error="unknown_service")
            if to_service == cur.service:
                return Outcome("transfer", counter_id, ticket=cur, error="same_service")
            if to_service not in self._served:
                return Outcome("transfer", counter_id, ticket=cur, error="unavailable")
            del self._current[counter_id]
            cur.service = to_service
            cur.status = "waiting"
            cur.counter = None
            cur.called_at = None
            self._enqueue(cur)
            self._version += 1
            return Outcome("transfer", counter_id, ticket=cur, changed=[cur])

    def rate(self, counter_id: str, score: int) -> Outcome:
        """Rate (1–4) the ticket this counter last finished; the first rating wins."""
        with self._lock:
            self._now()
            state = self._counters.get(counter_id)
            if state is None:
                return Outcome("rate", counter_id, error="unknown_counter")
            if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 4:
                return Outcome("rate", counter_id, error="bad_score")
            last = state.last_finished
            t = self._tickets.get(last) if last is not None else None
            if t is None:
                return Outcome("rate", counter_id, error="no_finished_ticket")
            if t.rating is not None:
                return Outcome("rate", counter_id, ticket=t, error="already_rated")
            t.rating = score
            return Outcome("rate", counter_id, ticket=t, changed=[t])

    # ---------------------------------------------------------------- internals

    def _current_or_error(self, counter_id: str) -> tuple[Ticket | None, str | None]:
        if counter_id not in self._counter_specs:
            return None, "unknown_counter"
        cur = self._current.get(counter_id)
        return (cur, None) if cur is not None else (None, "no_current_ticket")

    def _finish(self, counter_id: str, t: Ticket, status: TicketStatus, now: datetime) -> None:
        t.status = status
        t.finished_at = now
        del self._current[counter_id]
        if status == "done":
            self._counters[counter_id].last_finished = t.id
            if t.called_at is not None:
                self._times.observe(t.service, (now - t.called_at).total_seconds() / 60.0)
        self._version += 1

    def _pick(self, spec: CounterSpec) -> Ticket | None:
        heads = [line[0] for code in spec.services if (line := self._waiting.get(code))]
        return self._tickets[min(heads)[2]] if heads else None

    def _enqueue(self, t: Ticket) -> None:
        """Put a waiting ticket of today into its service's line (in call order)."""
        line = self._waiting.get(t.service)
        if line is not None and t.status == "waiting" and t.day == self._day:
            insort(line, _call_key(t))

    def _dequeue(self, t: Ticket) -> None:
        """Take a ticket out of its service's line (before its status or service changes)."""
        line = self._waiting.get(t.service)
        if line is None:
            return
        key = _call_key(t)
        i = bisect_left(line, key)
        if i < len(line) and line[i] == key:
            del line[i]

    def _reindex_waiting(self) -> None:
        for line in self._waiting.values():
            line.clear()
        for t in self._tickets.values():
            self._enqueue(t)

    def _set_open(self, counter_id: str, is_open: bool, event: str) -> Outcome:
        with self._lock:
            self._now()
            state = self._counters.get(counter_id)
            if state is None:
                return Outcome(event, counter_id, error="unknown_counter")
            state.open = is_open
            self._version += 1
            return Outcome(event, counter_id, ticket=self._current.get(counter_id))

    def _waiting_today(self) -> list[Ticket]:
        return [self._tickets[key[2]] for line in self._waiting.values() for key in line]

    def _extend_forecast(self, t: Ticket) -> None:
        # A new ticket at the end of the line extends the current forecast
        # instead of replaying the whole queue (see waiting.Forecast).
        f = self._forecast
        if f is None or t.prio or self._forecast_version != self._version - 1:
            return
        if f.extend(WaitingTicket(t.id, t.service, t.prio, t.order_at)):
            self._forecast_version = self._version

    def _predictions(self, now: datetime) -> tuple[datetime, dict[int, float]]:
        """(when the forecast was made, seconds from then until each waiting ticket is called)."""
        at = self._forecast_at
        if (
            self._forecast is not None
            and at is not None
            and self._forecast_version == self._version
            and 0 <= (now - at).total_seconds() <= FORECAST_MAX_AGE_S
        ):
            return at, self._forecast.call_s
        mean_s = {code: self._times.mean_min(code) * 60.0 for code in self._services}
        loads = []
        for cid, spec in self._counter_specs.items():
            cur = self._current.get(cid)
            busy = 0.0
            if cur is not None and cur.called_at is not None:
                elapsed = (now - cur.called_at).total_seconds()
                busy = expected_remaining_s(mean_s.get(cur.service, 600.0), elapsed)
            loads.append(CounterLoad(cid, frozenset(spec.services), self._counters[cid].open, busy))
        waiting = [
            WaitingTicket(t.id, t.service, t.prio, t.order_at) for t in self._waiting_today()
        ]
        self._forecast = Forecast(loads, waiting, mean_s)
        self._forecast_at = now
        self._forecast_version = self._version
        return now, self._forecast.call_s

    # ---------------------------------------------------------------- queries

    @property
    def service_times(self) -> ServiceTimes:
        """The recent service-time averages (read them, do not feed them)."""
        return self._times

    def services(self) -> Mapping[str, ServiceSpec]:
        """The configured services by code."""
        return dict(self._services)

    def status(self, ticket: Ticket) -> TicketStatus:
        """The ticket's outside status now (``serving`` derived, see module doc)."""
        with self._lock:
            return ticket_status(ticket, self._now(), self.call_grace_s)

    def find(self, token: str) -> Ticket | None:
        """The ticket with this token (today's, or still held by a counter)."""
        with self._lock:
            self._now()
            return self._by_token.get(token)

    def tickets(self) -> list[Ticket]:
        """Every ticket in memory, by id (today's and those still at a counter)."""
        with self._lock:
            self._now()
            return sorted(self._tickets.values(), key=lambda t: t.id)

    def current(self, counter_id: str) -> Ticket | None:
        """The ticket a counter has called and not finished, if any."""
        with self._lock:
            self._now()
            return self._current.get(counter_id)

    def counter_state(self, counter_id: str) -> CounterState | None:
        """A copy of the counter's state, or None for an unknown counter."""
        with self._lock:
            state = self._counters.get(counter_id)
            return replace(state) if state is not None else None

    def counter_states(self) -> dict[str, CounterState]:
        """Copies of every counter's state."""
        with self._lock:
            return {cid: replace(s) for cid, s in self._counters.items()}

    def counter_open(self, counter_id: str) -> bool:
        """Whether the counter exists and is not paused."""
        with self._lock:
            state = self._counters.get(counter_id)
            return state is not None and state.open

    def waiting_count(self, service: str) -> int:
        """Today's waiting tickets of a service."""
        with self._lock:
            self._now()
            return len(self._waiting.get(service, ()))

    def ahead(self, ticket: Ticket) -> int:
        """Waiting tickets of the same service that will be called before this one."""
        with self._lock:
            self._now()
            if ticket.status != "waiting":
                return 0
            return bisect_left(self._waiting.get(ticket.service, []), _call_key(ticket))

    def wait_s(self, ticket: Ticket) -> float | None:
        """Estimated seconds until a waiting ticket is called (0 otherwise; None: no counter)."""
        with self._lock:
            now = self._now()
            if ticket.status != "waiting":
                return 0.0
            at, call_s = self._predictions(now)
            s = call_s.get(ticket.id)
            if s is None:
                return None
            return max(0.0, s - (now - at).total_seconds())

    def wait_min(self, ticket: Ticket) -> int | None:
        """:meth:`wait_s` in whole minutes, as shown to citizens."""
        s = self.wait_s(ticket)
        return None if s is None else to_minutes(s)

    def ticket_view(self, token: str) -> dict[str, Any] | None:
        """``GET /api/tickets/{token}`` body, or None for an unknown token."""
        with self._lock:
            now = self._now()
            t = self._by_token.get(token)
            if t is None:
                return None
            return {
                "ticket": t.label,
                "status": ticket_status(t, now, self.call_grace_s),
                "ahead": self.ahead(t),
                "wait_min": self.wait_min(t),
                "counter": t.counter,
                "service": t.service,
            }

    def kiosk_answer(self, ticket: Ticket) -> dict[str, Any]:
        """Kiosk answer fields of CONTRACT §1 except ``re`` and ``url``."""
        with self._lock:
            spec = self._services[ticket.service]
            return {
                "ticket": ticket.label,
                "service": spec.name,
                "agency": spec.agency,
                "ahead": self.ahead(ticket),
                "wait_min": self.wait_min(ticket),
                "at": self._iso(ticket.issued_at),
            }

    def snapshot(self) -> dict[str, Any]:
        """``GET /api/queues/{site}`` body (also the retained MQTT queue message)."""
        with self._lock:
            now = self._now()
            local = self._local(now)
            services: dict[str, Any] = {}
            for code, s in self._services.items():
                n = self._seq.get((local.date(), code), 0)
                services[code] = {
                    "name": s.name,
                    "agency": s.agency,
                    "waiting": len(self._waiting[code]),
                    "last": f"{code}{n:03d}" if n else None,
                    "open": s.is_open(local),
                }
            counters: dict[str, Any] = {}
            for cid, c in self._counter_specs.items():
                cur = self._current.get(cid)
                counters[cid] = {
                    "name": c.name,
                    "serving": cur.label if cur is not None else None,
                    "open": self._counters[cid].open,
                    "services": list(c.services),
                }
            calls = [
                {"ticket": c.ticket, "counter": c.counter, "at": self._iso(c.at)}
                for c in self._calls
                if self._local(c.at).date() == local.date()
            ]
            return {
                "site": self.site_id,
                "services": services,
                "counters": counters,
                "calls": calls,
            }

    # ---------------------------------------------------------------- restart

    def restore(
        self,
        tickets: Iterable[Ticket],
        counters: Mapping[str, CounterState] | None = None,
        last_calls: Iterable[Call] | None = None,
        max_numbers: Mapping[tuple[date, str], int] | None = None,
        max_id: int = 0,
    ) -> list[Ticket]:
        """Rebuild from persisted rows after a restart; returns tickets it had to change.

        ``tickets``: at least today's and any still ``called`` (the queue takes
        the objects over). Sequences continue from the highest number of each
        (day, service), also from ``max_numbers`` if given; ids continue above
        the highest of the tickets and ``max_id`` (pass the highest id ever
        stored: tickets of past days are not handed back). ``last_calls``
        defaults to the latest ``called_at`` of the tickets. A ``called`` ticket
        at a counter no longer configured goes back to ``waiting`` (returned,
        persist it); a stored ``serving`` becomes ``called``.
        """
        with self._lock:
            self._reset()
            self._next_id = max_id + 1
            repaired: list[Ticket] = []
            for t in sorted(tickets, key=lambda t: t.id):
                if t.id in self._tickets or t.token in self._by_token:
                    raise ValueError(f"duplicate ticket id {t.id} or token")
                self._tickets[t.id] = t
                self._by_token[t.token] = t
                key = (t.day, t.issued_service)
                self._seq[key] = max(self._seq.get(key, 0), t.number)
                self._next_id = max(self._next_id, t.id + 1)
                if t.status == "serving":
                    t.status = "called"
                if t.status != "called":
                    continue
                if t.counter not in self._counter_specs:
                    t.status, t.counter, t.called_at = "waiting", None, None
                    repaired.append(t)
                elif t.counter in self._current:
                    raise ValueError(f"two tickets called at counter {t.counter!r}")
                else:
                    self._current[t.counter] = t
            for key, n in (max_numbers or {}).items():
                self._seq[key] = max(self._seq.get(key, 0), n)
            for cid, state in (counters or {}).items():
                if cid in self._counters:
                    self._counters[cid] = replace(state)
            durations = sorted(
                (t.finished_at, t.id, t.service, (t.finished_at - t.called_at).total_seconds())
                for t in self._tickets.values()
                if t.status == "done" and t.called_at is not None and t.finished_at is not None
            )
            for _, _, service, seconds in durations:
                self._times.observe(service, seconds / 60.0)
            if last_calls is None:
                last_calls = [
                    Call(t.label, t.counter, t.called_at)
                    for t in sorted(self._tickets.values(), key=lambda t: t.id, reverse=True)
                    if t.called_at is not None and t.counter is not None
                ]
            for c in sorted(last_calls, key=lambda c: c.at, reverse=True)[:MAX_CALLS_SHOWN]:
                self._calls.append(c)
            return repaired


__all__ = [
    "ALL_DAYS",
    "Call",
    "CounterSpec",
    "CounterState",
    "Outcome",
    "Refusal",
    "ServiceSpec",
    "SiteQueue",
    "Ticket",
    "TicketStatus",
    "new_token",
    "ticket_status",
]
