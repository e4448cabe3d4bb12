"""Waiting-time estimate: how long until a waiting ticket is called.

Method
------
1. **Service time per service** (:class:`ServiceTimes`). The mean of recent
   completed services of that service: ``finished_at - called_at`` of tickets
   finished ``done``, over the last ``window`` (20) of them, weighted
   exponentially by recency (a weight halves every ``half_life`` = 5 services).
   The config gives a prior: ``sla_min`` of the service, or 10 min without one.
   The prior counts as ``prior_weight`` (2) observations older than every real
   one, so it rules the first ticket of the morning and has faded after about
   ten. Each observation is clipped to [0.2, 3] × the current mean first, so a
   counter that forgot to press ``done`` over lunch does not wreck the estimate.
2. **Replay of the call rules** (:func:`predict_call_times`). Rather than
   ``ahead × mean / counters``, the estimator plays the queue forward with the
   very rules the counters use: every *open* counter becomes free after the
   expected remaining time of its current ticket (``mean − elapsed``, but at
   least ``residual_floor`` = 1/3 of the mean, because a service that has run
   long tends to run on); whenever a counter is free it takes the first
   waiting ticket in call order (priority first, then ``order_at``) among the
   services it serves, and is busy for that service's mean. The moment a ticket
   is taken is its estimate. In one pass this gives every waiting ticket its
   estimate and handles what the simple formula gets wrong: counters shared by
   several services (a shared counter's capacity goes where the older tickets
   are, not 1/n to each service), priority tickets, a counter already serving,
   free counters (estimate 0), and transferred tickets. Tickets that arrive
   later never go ahead under FIFO, so the replay needs no arrival model;
   only later *priority* tickets, no-shows, pauses and the spread of service
   times make it err.
3. **Nobody open**. If no open counter serves a ticket's service (staff not
   yet in, all paused) the replay is rerun as if every configured counter had
   reopened now: the figure then means "once the counters are staffed".

Minutes shown to citizens are the estimate rounded to the nearest minute.

Evaluation
----------
:func:`evaluate_day` simulates one MPP day (9 counters, 5 services, two of
them shared; morning-peak arrivals; lognormal service times; 5 % priority,
4 % no-shows, 3 % transfers; two counters pausing for lunch) through the real
:class:`~controller.domain.queue.SiteQueue` and compares the ``wait_min`` each
ticket was told at the kiosk with its actual wait to its first call, against
two baselines: ``ahead × sla_min`` (the naive display) and
``(ahead + 1) × mean / counters`` (counters weighted 1/number of services).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DEFAULT_PRIOR_MIN = 10.0
"""Prior mean service time when a service has no ``sla_min``."""


class ServiceTimes:
    """Recent mean service time per service: recency-weighted, shrunk to a prior."""

    window = 20
    half_life = 5.0
    prior_weight = 2.0
    clip_low = 0.2
    clip_high = 3.0

    def __init__(self, priors_min: Mapping[str, float]) -> None:
        self._priors = dict(priors_min)
        self._recent: dict[str, deque[float]] = {}

    def prior_min(self, service: str) -> float:
        """The configured prior (``sla_min`` or 10 min) of a service."""
        return self._priors.get(service, DEFAULT_PRIOR_MIN)

    def observe(self, service: str, minutes: float) -> None:
        """Record one completed service of ``minutes``."""
        mean = self.mean_min(service)
        x = min(max(minutes, mean * self.clip_low), mean * self.clip_high)
        self._recent.setdefault(service, deque(maxlen=self.window)).append(x)

    def mean_min(self, service: str) -> float:
        """Expected service time of the next ticket of ``service``, in minutes."""
        recent = self._recent.get(service, ())
        decay = 0.5 ** (1.0 / self.half_life)
        num = den = 0.0
        w = 1.0
        for x in reversed(recent):
            num += w * x
            den += w
            w *= decay
        w_prior = self.prior_weight * w  # the prior is older than every observation
        num += w_prior * self.prior_min(service)
        den += w_prior
        return num / den

    def count(self, service: str) -> int:
        """How many observations of ``service`` are in the window."""
        return len(self._recent.get(service, ()))


@dataclass(frozen=True)
class CounterLoad:
    """A counter as the estimator sees it."""

    id: str
    services: frozenset[str]
    open: bool
    busy_s: float = 0.0
    """Expected seconds until its current ticket is finished (0 when free)."""


@dataclass(frozen=True)
class WaitingTicket:
    """A waiting ticket as the estimator sees it."""

    key: int
    service: str
    prio: bool
    order_at: datetime


residual_floor = 1.0 / 3.0
"""Least expected remaining time of a running service, as a share of the mean."""


def expected_remaining_s(mean_s: float, elapsed_s: float) -> float:
    """Expected seconds left of a service that has run ``elapsed_s``."""
    return max(mean_s - elapsed_s, mean_s * residual_floor)


def call_order_key(t: WaitingTicket) -> tuple[bool, datetime, int]:
    """Sort key of the call rule: priority first, then longest waiting."""
    return (not t.prio, t.order_at, t.key)


def _replay(
    counters: Sequence[CounterLoad],
    order: Sequence[WaitingTicket],
    mean_service_s: Mapping[str, float],
) -> tuple[dict[int, float], list[tuple[float, int]]]:
    """Call times of ``order``, and when each counter runs out of work: (free_at, index)."""
    # One queue per service, each already in call order: the ticket a free
    # counter calls is the earliest (in call order) head among its services.
    # O(n · services) instead of scanning and shifting one long list.
    queues: dict[str, deque[tuple[int, WaitingTicket]]] = {}
    for rank, w in enumerate(order):
        queues.setdefault(w.service, deque()).append((rank, w))
    heap = [(c.busy_s, i) for i, c in enumerate(counters)]
    heapq.heapify(heap)
    idle: list[tuple[float, int]] = []
    left = len(order)
    out: dict[int, float] = {}
    while heap and left:
        free_at, i = heapq.heappop(heap)
        best: deque[tuple[int, WaitingTicket]] | None = None
        for service in counters[i].services:
            q = queues.get(service)
            if q and (best is None or q[0][0] < best[0][0]):
                best = q
        if best is None:
            idle.append((free_at, i))  # nothing left that this counter may call
            continue
        _, w = best.popleft()
        left -= 1
        out[w.key] = free_at
        mean = mean_service_s.get(w.service, DEFAULT_PRIOR_MIN * 60.0)
        heapq.heappush(heap, (free_at + mean, i))
    return out, idle + heap


class Forecast:
    """Predicted call times from one replay, extendable by tickets joining the end of the line.

    A ticket issued now (not priority) is last in call order, so the replay
    with it included differs from the one without it only in that ticket: it
    is called by whichever counter serving its service runs out of other work
    first. ``extend`` computes that in O(counters) instead of a new replay.
    """

    def __init__(
        self,
        counters: Sequence[CounterLoad],
        waiting: Sequence[WaitingTicket],
        mean_service_s: Mapping[str, float],
    ):
        self.counters = [c for c in counters if c.open]
        self.mean_service_s = dict(mean_service_s)
        order = sorted(waiting, key=call_order_key)
        self.call_s, self._idle = _replay(self.counters, order, self.mean_service_s)
        if len(self.call_s) < len(order):
            # Services no open counter serves: as if all their counters reopened now.
            everyone, _ = _replay([replace(c, open=True) for c in counters], order, self.mean_service_s)
            for w in order:
                if w.key not in self.call_s and w.key in everyone:
                    self.call_s[w.key] = everyone[w.key]

    def extend(self, w: WaitingTicket) -> bool:
        """Add a ticket that joins the end of the line; False if a full replay is needed."""
        best = None
        for k, (free_at, i) in enumerate(self._idle):
            if w.service in self.counters[i].services and (best is None or (free_at, i) < self._idle[best]):
                best = k
        if best is None:
            return False
        free_at, i = self._idle[best]
        self.call_s[w.key] = free_at
        self._idle[best] = (free_at + self.mean_service_s.get(w.service, DEFAULT_PRIOR_MIN * 60.0), i)
        return True


def predict_call_times(
    counters: Sequence[CounterLoad],
    waiting: Sequence[WaitingTicket],
    mean_service_s: Mapping[str, float],
) -> dict[int, float]:
    """Seconds from now until each waiting ticket is called (keyed by ``key``).

    A ticket that no counter in ``counters`` serves is absent from the result.
    """
    return Forecast(counters, waiting, mean_service_s).call_s


def to_minutes(seconds: float) -> int:
    """Seconds to the whole minutes shown to a citizen (nearest minute)."""
    return int(math.floor(seconds / 60.0 + 0.5))


# --------------------------------------------------------------------------
# Evaluation on a simulated day
# --------------------------------------------------------------------------

# code: (name, agency, true mean service minutes, sla_min, arrivals per hour at profile 1.0)
_SIM_SERVICES: dict[str, tuple[str, str, float, int, float]] = {
    "A": ("Perekaman KTP-el", "Dispendukcapil", 9.0, 15, 14.0),
    "B": ("Kartu Keluarga & Akta", "Dispendukcapil", 7.0, 10, 10.0),
    "C": ("BPJS Kesehatan", "BPJS Kesehatan", 6.0, 10, 15.0),
    "D": ("Pajak Kendaraan (Samsat)", "Bapenda", 5.0, 10, 14.0),
    "E": ("Perizinan Berusaha (OSS)", "DPMPTSP", 14.0, 20, 5.0),
}
_SIM_COUNTERS: dict[str, tuple[str, ...]] = {
    "1": ("A",), "2": ("A",), "3": ("A", "B"), "4": ("B",), "5": ("C",),
    "6": ("C",), "7": ("D",), "8": ("D", "E"), "9": ("E",),
}  # fmt: skip
# relative arrival rate by local hour: queue at the door at 8, peak mid-morning
_SIM_PROFILE = {8: 1.3, 9: 1.5, 10: 1.3, 11: 1.0, 12: 0.6, 13: 0.7, 14: 0.5}
_SIM_LUNCH = {"2": (time(12, 0), time(13, 0)), "6": (time(11, 30), time(12, 30))}
_SIM_SIGMA = 0.5  # lognormal shape of service times (coefficient of variation ≈ 0.53)
_SIM_PRIO = 0.05
_SIM_NOSHOW = 0.04
_SIM_TRANSFER_A_TO_B = 0.03


def evaluate_day(seed: int) -> dict[str, Any]:
    """Simulate one MPP day and score the kiosk's ``wait_min`` against actual waits.

    Returns figures in minutes: ``tickets``, ``mean_wait``, ``max_wait``, ``mae``
    (mean absolute error of the estimate), ``mae_ratio`` (mae / mean_wait),
    ``p90_abs_err``, ``within_5min`` (share), ``bias`` (mean estimate − actual),
    ``mae_naive`` (ahead × sla_min), ``mae_simple`` ((ahead + 1) × mean / counters).
    """
    from controller.domain.queue import CounterSpec, ServiceSpec, SiteQueue, Ticket

    rng = random.Random(seed)
    tz = ZoneInfo("Asia/Jakarta")
    day_start = datetime(2026, 11, 23, tzinfo=tz)  # a Monday
    now = [day_start.astimezone(UTC)]
    tokens = iter(range(1, 1_000_000))
    services = [
        ServiceSpec(code, name, agency, time(8, 0), time(14, 30), None, sla)
        for code, (name, agency, _, sla, _) in _SIM_SERVICES.items()
    ]
    counters = [CounterSpec(cid, f"Loket {cid}", svc) for cid, svc in _SIM_COUNTERS.items()]
    q = SiteQueue(
        "sim-mpp", tz, services, counters, clock=lambda: now[0],
        token_factory=lambda: f"t{next(tokens)}",
    )  # fmt: skip

    events: list[tuple[datetime, int, str, str, bool]] = []
    seq = iter(range(10_000_000))

    def at(when: datetime, kind: str, arg: str, flag: bool = False) -> None:
        heapq.heappush(events, (when, next(seq), kind, arg, flag))

    # arrivals: a Poisson process per service with a piecewise-constant rate
    for code, (_, _, _, _, rate) in _SIM_SERVICES.items():
        for hour, rel in _SIM_PROFILE.items():
            t = day_start.replace(hour=hour)
            end = min(t + timedelta(hours=1), day_start.replace(hour=14, minute=30))
            while True:
                t += timedelta(hours=rng.expovariate(rate * rel))
                if t >= end:
                    break
                at(t.astimezone(UTC), "arrive", code, rng.random() < _SIM_PRIO)
    for cid, (start, stop) in _SIM_LUNCH.items():
        at(datetime.combine(day_start.date(), start, tz).astimezone(UTC), "pause", cid)
        at(datetime.combine(day_start.date(), stop, tz).astimezone(UTC), "resume", cid)

    busy: dict[str, bool] = dict.fromkeys(_SIM_COUNTERS, False)
    lunch_due: set[str] = set()
    told: dict[int, tuple[int, int, float]] = {}  # ticket id -> (wait_min, ahead, simple)
    actual: dict[int, float] = {}

    def try_call(cid: str) -> None:
        if busy[cid] or not q.counter_open(cid):
            return
        out = q.call_next(cid)
        t = out.ticket
        if t is None:
            return
        busy[cid] = True
        if t.id not in actual:
            actual[t.id] = (now[0] - t.issued_at).total_seconds() / 60.0
        if rng.random() < _SIM_NOSHOW:
            at(now[0] + timedelta(seconds=120), "recall", cid)
            at(now[0] + timedelta(seconds=200), "noshow", cid)
            return
        mean = _SIM_SERVICES[t.service][2]
        mu = math.log(mean) - _SIM_SIGMA**2 / 2
        minutes = rng.lognormvariate(mu, _SIM_SIGMA)
        transfer = t.service == "A" and rng.random() < _SIM_TRANSFER_A_TO_B
        at(now[0] + timedelta(minutes=minutes), "end", cid, transfer)

    def free(cid: str) -> None:
        busy[cid] = False
        if cid in lunch_due:
            lunch_due.discard(cid)
            q.pause(cid)
        else:
            try_call(cid)

    while events:
        when, _, kind, arg, flag = heapq.heappop(events)
        now[0] = when
        if kind == "arrive":
            tk = q.issue(arg, prio=flag, source="sim")
            if not isinstance(tk, Ticket):
                continue
            view = q.ticket_view(tk.token)
            if view is None or view["wait_min"] is None:
                continue
            # baseline: each open counter gives 1/len(its services) of its time
            share = sum(
                1.0 / len(svc)
                for cid, svc in _SIM_COUNTERS.items()
                if arg in svc and q.counter_open(cid)
            )
            simple = (view["ahead"] + 1) * q.service_times.mean_min(arg) / max(share, 0.5)
            told[tk.id] = (view["wait_min"], view["ahead"], simple)
            for cid in _SIM_COUNTERS:
                if arg in _SIM_COUNTERS[cid]:
                    try_call(cid)
        elif kind == "end":
            if flag:
                q.transfer(arg, "B")
                for cid in _SIM_COUNTERS:
                    if "B" in _SIM_COUNTERS[cid] and cid != arg:
                        try_call(cid)
            elif arg in lunch_due:
                q.done(arg)
            free(arg)
        elif kind == "recall":
            q.recall(arg)
        elif kind == "noshow":
            q.skip(arg)
            free(arg)
        elif kind == "pause":
            if busy[arg]:
                lunch_due.add(arg)
            else:
                q.pause(arg)
        elif kind == "resume":
            lunch_due.discard(arg)
            q.resume(arg)
            try_call(arg)

    ids = [i for i in told if i in actual]
    tickets = {t.id: t for t in q.tickets()}
    errs = [told[i][0] - actual[i] for i in ids]
    naive = [told[i][1] * _SIM_SERVICES[tickets[i].label[:-3]][3] - actual[i] for i in ids]
    simple = [told[i][2] - actual[i] for i in ids]
    waits = [actual[i] for i in ids]
    n = len(ids)
    abs_errs = sorted(abs(e) for e in errs)
    mean_wait = sum(waits) / n
    mae = sum(abs_errs) / n
    return {
        "seed": seed,
        "tickets": n,
        "mean_wait": round(mean_wait, 2),
        "max_wait": round(max(waits), 2),
        "mae": round(mae, 2),
        "mae_ratio": round(mae / mean_wait, 3),
        "p90_abs_err": round(abs_errs[int(0.9 * (n - 1))], 2),
        "within_5min": round(sum(1 for e in abs_errs if e <= 5.0) / n, 3),
        "bias": round(sum(errs) / n, 2),
        "mae_naive": round(sum(abs(e) for e in naive) / n, 2),
        "mae_simple": round(sum(abs(e) for e in simple) / n, 2),
    }
