"""Queue rules of CONTRACT §2, on controller.domain.queue with an injected clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from controller.domain.queue import (
    Call,
    CounterSpec,
    CounterState,
    Outcome,
    Refusal,
    ServiceSpec,
    SiteQueue,
    Ticket,
    ticket_status,
)

JKT = ZoneInfo("Asia/Jakarta")
MONDAY = date(2026, 11, 23)


def local(h: int, m: int = 0, s: int = 0, day: date = MONDAY) -> datetime:
    """A site-local wall time as the aware UTC datetime the clock returns."""
    return datetime(day.year, day.month, day.day, h, m, s, tzinfo=JKT).astimezone(UTC)


class Clock:
    """A settable clock."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


def token_counter() -> Callable[[], str]:
    """Deterministic tokens: tok1, tok2, …"""
    n = iter(range(1, 10**9))
    return lambda: f"tok{next(n)}"


SERVICES = (
    ServiceSpec("A", "Perekaman KTP-el", "Dispendukcapil", time(8), time(15), None, 15),
    ServiceSpec("B", "Kartu Keluarga", "Dispendukcapil", time(8), time(15), 3, 10),
    ServiceSpec("C", "Paspor", "Imigrasi", time(8), time(15), None, None),
)
COUNTERS = (
    CounterSpec("1", "Loket 1", ("A",)),
    CounterSpec("2", "Loket 2", ("A", "B")),
    CounterSpec("3", "Loket 3", ("B",)),
)


def make_queue(
    clock: Clock,
    services: tuple[ServiceSpec, ...] = SERVICES,
    counters: tuple[CounterSpec, ...] = COUNTERS,
) -> SiteQueue:
    return SiteQueue("blitar-mpp", JKT, services, counters, clock, token_factory=token_counter())


@pytest.fixture
def clock() -> Clock:
    return Clock(local(8, 0))


@pytest.fixture
def q(clock: Clock) -> SiteQueue:
    return make_queue(clock)


def issue(q: SiteQueue, code: str = "A", prio: bool = False) -> Ticket:
    t = q.issue(code, prio=prio)
    assert isinstance(t, Ticket), t
    return t


def called(out: Outcome) -> str | None:
    return out.ticket.label if out.ticket is not None else None


# ---------------------------------------------------------------- numbering


def test_numbers_start_at_001_and_are_consecutive(q: SiteQueue) -> None:
    labels = [issue(q).label for _ in range(12)]
    assert labels == [f"A{n:03d}" for n in range(1, 13)]
    assert [t.number for t in q.tickets()] == list(range(1, 13))


def test_ticket_ids_increase_and_tokens_are_unique(q: SiteQueue) -> None:
    ts = [issue(q, code) for code in "ABAB"]
    assert [t.id for t in ts] == [1, 2, 3, 4]
    assert len({t.token for t in ts}) == 4


def test_default_token_is_unguessable(clock: Clock) -> None:
    q = SiteQueue("s", JKT, SERVICES, COUNTERS, clock=clock)
    a, b = issue(q), issue(q)
    assert a.token != b.token and len(a.token) >= 21


def test_each_service_has_its_own_sequence(q: SiteQueue) -> None:
    got = [issue(q, code).label for code in "AABAB"]
    assert got == ["A001", "A002", "B001", "A003", "B002"]


def test_numbering_restarts_at_local_midnight(clock: Clock) -> None:
    all_day = (ServiceSpec("A", "KTP-el", "Dukcapil", time(0), time(0)),)
    q = make_queue(clock, all_day, (CounterSpec("1", "Loket 1", ("A",)),))
    clock.t = datetime(2026, 11, 23, 16, 59, 58, tzinfo=UTC)
    issue(q)
    clock.t = datetime(2026, 11, 23, 16, 59, 59, tzinfo=UTC)  # 23:59:59 in Jakarta
    late = issue(q)
    assert late.label == "A002" and late.day == date(2026, 11, 23)
    clock.t = datetime(2026, 11, 23, 17, 0, 0, tzinfo=UTC)  # 00:00:00 in Jakarta
    first = issue(q)
    assert first.label == "A001" and first.day == date(2026, 11, 24)
    assert first.id > late.id
    # yesterday's waiting tickets are neither counted nor called today
    assert q.snapshot()["services"]["A"]["waiting"] == 1
    assert called(q.call_next("1")) == "A001"
    assert q.call_next("1").error == "nothing_waiting"


def test_numbers_never_reused_after_restore(q: SiteQueue, clock: Clock) -> None:
    for _ in range(3):
        issue(q)
    q.call_next("1")
    saved = [replace(t) for t in q.tickets()]
    fresh = make_queue(clock)
    fresh.restore(saved, q.counter_states())
    t = issue(fresh)
    assert t.label == "A004" and t.id == 4
    assert fresh.current("1") is not None and fresh.current("1").label == "A001"  # type: ignore[union-attr]


def test_ids_continue_from_the_highest_stored_id_on_a_new_day(clock: Clock) -> None:
    fresh = make_queue(clock)
    fresh.restore([], max_id=57)  # yesterday's rows are not handed back, only the max id
    t = issue(fresh)
    assert (t.id, t.label) == (58, "A001")


def test_restore_honours_max_number_without_the_rows(q: SiteQueue, clock: Clock) -> None:
    q.restore([], max_numbers={(MONDAY, "A"): 41})
    assert issue(q).label == "A042"


def test_sequence_stops_at_999(q: SiteQueue) -> None:
    q.restore([], max_numbers={(MONDAY, "A"): 998})
    assert issue(q).label == "A999"
    assert q.issue("A") == Refusal("quota_full")


# ---------------------------------------------------------------- refusals


def test_closed_before_opening_and_from_closing_time(q: SiteQueue, clock: Clock) -> None:
    clock.t = local(7, 59, 59)
    assert q.issue("A") == Refusal("closed")
    clock.t = local(8, 0, 0)
    assert isinstance(q.issue("A"), Ticket)
    clock.t = local(14, 59, 59)
    assert isinstance(q.issue("A"), Ticket)
    clock.t = local(15, 0, 0)
    assert q.issue("A") == Refusal("closed")


def test_closed_on_days_the_service_does_not_open(clock: Clock) -> None:
    weekdays = (replace(SERVICES[0], days=frozenset({1, 2, 3, 4, 5})),)
    q = make_queue(clock, weekdays, (COUNTERS[0],))
    clock.t = local(9, day=date(2026, 11, 29))  # a Sunday
    assert q.issue("A") == Refusal("closed")
    clock.t = local(9, day=date(2026, 11, 30))
    assert isinstance(q.issue("A"), Ticket)


def test_quota_full_after_quota_tickets(q: SiteQueue) -> None:
    assert [issue(q, "B").label for _ in range(3)] == ["B001", "B002", "B003"]
    assert q.issue("B") == Refusal("quota_full")
    assert isinstance(q.issue("A"), Ticket)


def test_unknown_service_refused(q: SiteQueue) -> None:
    assert q.issue("Z") == Refusal("unknown_service")


def test_service_no_counter_serves_is_unavailable(q: SiteQueue, clock: Clock) -> None:
    assert q.issue("C") == Refusal("unavailable")
    clock.t = local(6)  # unavailable is reported even outside hours: it is a config fact
    assert q.issue("C") == Refusal("unavailable")


def test_paused_counters_do_not_stop_issuing(q: SiteQueue) -> None:
    for cid in ("1", "2", "3"):
        q.pause(cid)
    assert isinstance(q.issue("A"), Ticket)


# ---------------------------------------------------------------- calling


def test_priority_ticket_called_first(q: SiteQueue, clock: Clock) -> None:
    issue(q)
    clock.advance(minutes=1)
    issue(q)
    clock.advance(minutes=1)
    p = issue(q, prio=True)
    assert called(q.call_next("1")) == p.label == "A003"
    assert called(q.call_next("1")) == "A001"


def test_counter_calls_longest_waiting_among_its_services(q: SiteQueue, clock: Clock) -> None:
    issue(q, "B")
    clock.advance(minutes=1)
    issue(q, "A")
    clock.advance(minutes=1)
    issue(q, "B")
    assert [called(q.call_next("2")) for _ in range(3)] == ["B001", "A001", "B002"]


def test_counter_only_calls_its_own_services(q: SiteQueue) -> None:
    issue(q, "B")
    out = q.call_next("1")
    assert out.ticket is None and out.error == "nothing_waiting"


def test_ticket_is_called_by_one_counter_only(q: SiteQueue) -> None:
    issue(q)
    issue(q)
    a, b = q.call_next("1"), q.call_next("2")
    assert {called(a), called(b)} == {"A001", "A002"}
    assert q.call_next("2").error == "nothing_waiting"  # A001 is not called twice


def test_two_counters_calling_at_once_get_different_tickets(q: SiteQueue) -> None:
    for _ in range(2):
        issue(q)
    barrier = threading.Barrier(2)
    got: dict[str, str | None] = {}

    def press(cid: str) -> None:
        barrier.wait(timeout=5)
        got[cid] = called(q.call_next(cid))

    threads = [threading.Thread(target=press, args=(cid,)) for cid in ("1", "2")]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=5)
    assert sorted(got.values()) == ["A001", "A002"]  # type: ignore[type-var]


def test_next_finishes_current_ticket_done_then_calls(q: SiteQueue, clock: Clock) -> None:
    issue(q)
    issue(q)
    first = q.call_next("1").ticket
    clock.advance(minutes=7)
    out = q.call_next("1")
    assert out.finished is first and first is not None
    assert first.status == "done" and first.finished_at == clock.t
    assert called(out) == "A002"
    assert out.changed == [first, out.ticket]
    assert q.counter_state("1") == CounterState(open=True, last_finished=first.id)


def test_next_with_nothing_waiting_still_finishes_current(q: SiteQueue) -> None:
    t = issue(q)
    q.call_next("1")
    out = q.call_next("1")
    assert out.error == "nothing_waiting" and out.ticket is None
    assert out.finished is t and out.changed == [t] and t.status == "done"
    assert q.current("1") is None


def test_called_ticket_becomes_serving_after_grace(q: SiteQueue, clock: Clock) -> None:
    t = issue(q)
    q.call_next("1")
    assert q.status(t) == "called"
    clock.advance(seconds=119)
    assert q.status(t) == "called"
    clock.advance(seconds=1)
    assert q.status(t) == "serving" and t.status == "called"  # derived, never stored
    assert ticket_status(t, clock.t, call_grace_s=300) == "called"


def test_recall_repeats_the_call_and_moves_it_to_the_top_of_the_hall_list(q: SiteQueue, clock: Clock) -> None:
    t = issue(q)
    q.call_next("1")
    clock.advance(minutes=3)
    assert q.status(t) == "serving"
    out = q.recall("1")
    assert out.ticket is t and out.event == "recall" and out.changed == [t]
    assert t.calls == 2 and t.called_at == clock.t and q.status(t) == "called"
    calls = q.snapshot()["calls"]
    # The hall lists the call once, moved to the top with the recall's time.
    assert [c["ticket"] for c in calls] == ["A001"]
    assert calls[0]["at"] == "2026-11-23T08:03:00+07:00"


def test_skip_marks_no_show_and_calls_nothing(q: SiteQueue) -> None:
    t = issue(q)
    issue(q)
    q.call_next("1")
    out = q.skip("1")
    assert out.ticket is t and t.status == "skipped" and t.finished_at is not None
    assert q.current("1") is None and q.waiting_count("A") == 1
    assert q.counter_state("1") == CounterState(open=True, last_finished=None)


def test_done_finishes_current(q: SiteQueue) -> None:
    t = issue(q)
    q.call_next("1")
    out = q.done("1")
    assert out.ok and out.ticket is t and t.status == "done" and q.current("1") is None


def test_actions_need_a_current_ticket_and_a_known_counter(q: SiteQueue) -> None:
    for action in (q.recall, q.skip, q.done):
        assert action("1").error == "no_current_ticket"
        assert action("9").error == "unknown_counter"
    assert q.transfer("1", "B").error == "no_current_ticket"
    assert q.call_next("9").error == "unknown_counter"
    assert q.pause("9").error == "unknown_counter"
    assert q.rate("9", 4).error == "unknown_counter"


def test_paused_counter_cannot_call_until_resumed(q: SiteQueue) -> None:
    issue(q)
    out = q.pause("1")
    assert out.ok and out.event == "pause" and q.counter_state("1") == CounterState(open=False)
    blocked = q.call_next("1")
    assert blocked.error == "counter_paused" and blocked.changed == []
    assert q.snapshot()["counters"]["1"]["open"] is False
    assert q.resume("1").ok
    assert called(q.call_next("1")) == "A001"


def test_pause_keeps_the_current_ticket(q: SiteQueue) -> None:
    t = issue(q)
    q.call_next("1")
    q.pause("1")
    assert q.current("1") is t
    assert q.done("1").ok


def test_transfer_keeps_label_and_goes_between_earlier_and_later_tickets(
    q: SiteQueue, clock: Clock
) -> None:
    issue(q, "B")  # B001, 08:00 — earlier than A001
    clock.advance(minutes=1)
    a = issue(q, "A")  # A001, 08:01
    clock.advance(minutes=1)
    issue(q, "B")  # B002, 08:02 — later than A001
    q.call_next("1")
    clock.advance(minutes=5)
    out = q.transfer("1", "B")
    assert out.ok and out.ticket is a and out.changed == [a]
    assert (a.label, a.service, a.status, a.counter) == ("A001", "B", "waiting", None)
    assert a.order_at == a.issued_at
    assert q.current("1") is None
    assert q.ahead(a) == 1 and q.waiting_count("B") == 3
    assert [called(q.call_next("3")) for _ in range(3)] == ["B001", "A001", "B002"]


def test_transfer_refusals(q: SiteQueue) -> None:
    issue(q)
    q.call_next("1")
    assert q.transfer("1", "Z").error == "unknown_service"
    assert q.transfer("1", "A").error == "same_service"
    assert q.transfer("1", "C").error == "unavailable"
    assert q.current("1") is not None


def test_rating_goes_to_last_finished_ticket_and_first_rating_wins(q: SiteQueue) -> None:
    assert q.rate("1", 4).error == "no_finished_ticket"
    t = issue(q)
    issue(q)
    q.call_next("1")
    q.call_next("1")  # finishes A001, calls A002
    out = q.rate("1", 4)
    assert out.ok and out.ticket is t and t.rating == 4 and out.changed == [t]
    again = q.rate("1", 1)
    assert again.error == "already_rated" and t.rating == 4 and again.changed == []
    assert q.rate("1", 5).error == "bad_score"
    assert q.rate("1", 0).error == "bad_score"


def test_skipped_ticket_is_not_rated(q: SiteQueue) -> None:
    issue(q)
    q.call_next("1")
    q.skip("1")
    assert q.rate("1", 3).error == "no_finished_ticket"


# ---------------------------------------------------------------- views


def test_snapshot_shape(q: SiteQueue, clock: Clock) -> None:
    issue(q, "A")
    issue(q, "A")
    issue(q, "B")
    clock.t = local(8, 15, 4)
    q.call_next("1")
    q.pause("3")
    assert q.snapshot() == {
        "site": "blitar-mpp",
        "services": {
            "A": {
                "name": "Perekaman KTP-el",
                "agency": "Dispendukcapil",
                "waiting": 1,
                "last": "A002",
                "open": True,
            },
            "B": {
                "name": "Kartu Keluarga",
                "agency": "Dispendukcapil",
                "waiting": 1,
                "last": "B001",
                "open": True,
            },
            "C": {
                "name": "Paspor",
                "agency": "Imigrasi",
                "waiting": 0,
                "last": None,
                "open": True,
            },
        },
        "counters": {
            "1": {"name": "Loket 1", "serving": "A001", "open": True, "services": ["A"]},
            "2": {"name": "Loket 2", "serving": None, "open": True, "services": ["A", "B"]},
            "3": {"name": "Loket 3", "serving": None, "open": False, "services": ["B"]},
        },
        "calls": [{"ticket": "A001", "counter": "1", "at": "2026-11-23T08:15:04+07:00"}],
    }
    clock.t = local(15)
    assert q.snapshot()["services"]["A"]["open"] is False


def test_snapshot_lists_latest_ten_calls_latest_first(q: SiteQueue, clock: Clock) -> None:
    for _ in range(12):
        issue(q)
    for _ in range(12):
        clock.advance(minutes=1)
        q.call_next("1")
    calls = q.snapshot()["calls"]
    assert [c["ticket"] for c in calls] == [f"A{n:03d}" for n in range(12, 2, -1)]


def test_ticket_view_counts_ahead(q: SiteQueue, clock: Clock) -> None:
    ts = [issue(q) for _ in range(4)]
    clock.advance(minutes=1)
    p = issue(q, prio=True)
    issue(q, "B")
    assert [q.ahead(t) for t in ts] == [1, 2, 3, 4]
    assert q.ahead(p) == 0
    view = q.ticket_view(ts[3].token)
    assert view is not None
    assert set(view) == {"ticket", "status", "ahead", "wait_min", "counter", "service"}
    assert view["ticket"] == "A004" and view["status"] == "waiting" and view["ahead"] == 4
    assert view["counter"] is None and view["service"] == "A"
    assert isinstance(view["wait_min"], int) and view["wait_min"] > 0
    q.call_next("1")  # the priority ticket
    assert q.ticket_view(ts[3].token)["ahead"] == 3  # type: ignore[index]
    view = q.ticket_view(p.token)
    assert view == {
        "ticket": "A005",
        "status": "called",
        "ahead": 0,
        "wait_min": 0,
        "counter": "1",
        "service": "A",
    }
    assert q.ticket_view("no-such-token") is None


def test_kiosk_answer_fields(q: SiteQueue, clock: Clock) -> None:
    clock.t = local(8, 15, 4)
    issue(q)
    t = issue(q)
    assert q.kiosk_answer(t) == {
        "ticket": "A002",
        "service": "Perekaman KTP-el",
        "agency": "Dispendukcapil",
        "ahead": 1,
        "wait_min": q.wait_min(t),
        "at": "2026-11-23T08:15:04+07:00",
    }


def test_restore_rebuilds_counters_calls_and_repairs_orphans(q: SiteQueue, clock: Clock) -> None:
    for _ in range(3):
        issue(q)
    q.call_next("1")
    q.call_next("2")
    q.pause("2")
    rows = [replace(t) for t in q.tickets()]
    rows[1].status = "serving"  # a store may hold the derived status
    orphan = replace(rows[2], status="called", counter="7", called_at=clock.t, calls=1)
    fresh = make_queue(clock)
    repaired = fresh.restore([rows[0], rows[1], orphan], q.counter_states())
    assert repaired == [orphan] and orphan.status == "waiting" and orphan.counter is None
    assert fresh.current("1") is rows[0] and fresh.current("2") is rows[1]
    assert rows[1].status == "called"
    assert fresh.counter_state("2") == CounterState(open=False)
    assert [c["ticket"] for c in fresh.snapshot()["calls"]] == ["A002", "A001"]


def test_restore_refuses_two_tickets_at_one_counter(q: SiteQueue, clock: Clock) -> None:
    issue(q)
    issue(q)
    q.call_next("1")
    q.call_next("2")
    rows = [replace(t) for t in q.tickets()]
    rows[1].counter = "1"
    with pytest.raises(ValueError):
        make_queue(clock).restore(rows)


def test_restored_last_calls_are_taken_as_given(q: SiteQueue, clock: Clock) -> None:
    q.restore([], last_calls=[Call("A007", "2", clock.t)])
    assert q.snapshot()["calls"] == [
        {"ticket": "A007", "counter": "2", "at": "2026-11-23T08:00:00+07:00"}
    ]


def test_config_errors_are_refused(clock: Clock) -> None:
    with pytest.raises(ValueError):
        make_queue(clock, SERVICES, (CounterSpec("1", "Loket 1", ("Z",)),))
    with pytest.raises(ValueError):
        make_queue(clock, SERVICES + SERVICES[:1])


# ---------------------------------------------------------------- random sequences

ALL_DAY = (
    ServiceSpec("A", "A", "x", time(0), time(0)),
    ServiceSpec("B", "B", "x", time(0), time(0), quota=5),
    ServiceSpec("C", "C", "x", time(0), time(0)),
)
SM_COUNTERS = (
    CounterSpec("1", "1", ("A",)),
    CounterSpec("2", "2", ("A", "B")),
    CounterSpec("3", "3", ("B", "C")),
)
counter_ids = st.sampled_from(["1", "2", "3"])
FORWARD = {
    ("waiting", "waiting"),
    ("waiting", "called"),
    ("called", "called"),
    ("called", "done"),
    ("called", "skipped"),
    ("done", "done"),
    ("skipped", "skipped"),
}


class QueueMachine(RuleBasedStateMachine):
    """Random sequences of presses, pauses, clock jumps and restarts keep the invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock(datetime(2026, 11, 23, 14, 0, tzinfo=UTC))  # 21:00 in Jakarta
        self.tokens = token_counter()  # survives restarts, like real randomness would
        self.q = self._new_queue()
        self.issued: set[tuple[date, str]] = set()
        self.max_id = 0
        self.prev: dict[int, str] = {}

    def _new_queue(self) -> SiteQueue:
        return SiteQueue("s", JKT, ALL_DAY, SM_COUNTERS, self.clock, token_factory=self.tokens)

    def _check_transitions(self, transferred: Ticket | None = None) -> None:
        for t in self.q.tickets():
            before = self.prev.get(t.id)
            if before is not None:
                move = (before, t.status)
                ok = move in FORWARD or (t is transferred and move == ("called", "waiting"))
                assert ok, f"{t.label}: {before} -> {t.status}"
            self.prev[t.id] = t.status

    @rule(service=st.sampled_from(["A", "B", "C", "Z"]), prio=st.booleans())
    def issue(self, service: str, prio: bool) -> None:
        t = self.q.issue(service, prio=prio)
        if isinstance(t, Ticket):
            assert (t.day, t.label) not in self.issued
            assert t.id > self.max_id
            self.issued.add((t.day, t.label))
            self.max_id = t.id
        else:
            assert t.reason in ("quota_full", "unknown_service")
        self._check_transitions()

    @rule(cid=counter_ids)
    def next(self, cid: str) -> None:
        before = self.q.current(cid)
        out = self.q.call_next(cid)
        if out.error == "counter_paused":
            assert out.changed == [] and self.q.current(cid) is before
        elif out.ticket is not None:
            assert out.ticket.counter == cid and out.ticket.calls >= 1
        self._check_transitions()

    @rule(cid=counter_ids)
    def skip(self, cid: str) -> None:
        self.q.skip(cid)
        self._check_transitions()

    @rule(cid=counter_ids)
    def done(self, cid: str) -> None:
        self.q.done(cid)
        self._check_transitions()

    @rule(cid=counter_ids)
    def recall(self, cid: str) -> None:
        self.q.recall(cid)
        self._check_transitions()

    @rule(cid=counter_ids, to=st.sampled_from(["A", "B", "C"]))
    def transfer(self, cid: str, to: str) -> None:
        out = self.q.transfer(cid, to)
        self._check_transitions(out.ticket if out.ok else None)

    @rule(cid=counter_ids)
    def pause(self, cid: str) -> None:
        self.q.pause(cid)
        self._check_transitions()

    @rule(cid=counter_ids)
    def resume(self, cid: str) -> None:
        self.q.resume(cid)
        self._check_transitions()

    @rule(minutes=st.integers(min_value=1, max_value=600))
    def time_passes(self, minutes: int) -> None:
        self.clock.advance(minutes=minutes)
        self._check_transitions()

    @rule()
    def restart(self) -> None:
        rows = [replace(t) for t in self.q.tickets()]
        fresh = self._new_queue()
        # the store hands back today's rows, counter rows and the highest id ever stored
        assert fresh.restore(rows, self.q.counter_states(), max_id=self.max_id) == []
        self.q = fresh
        self._check_transitions()

    @invariant()
    def labels_unique_per_day(self) -> None:
        seen = [(t.day, t.label) for t in self.q.tickets()]
        assert len(seen) == len(set(seen))

    @invariant()
    def each_ticket_at_one_counter_at_most(self) -> None:
        holding = {cid: self.q.current(cid) for cid in ("1", "2", "3")}
        held = [t.id for t in holding.values() if t is not None]
        assert len(held) == len(set(held))
        for cid, t in holding.items():
            if t is not None:
                assert t.status == "called" and t.counter == cid
        for t in self.q.tickets():
            if t.status == "called":
                assert t.counter is not None and holding[t.counter] is t

    @invariant()
    def waiting_counts_consistent(self) -> None:
        snap = self.q.snapshot()
        today = self.clock.t.astimezone(JKT).date()
        for code in ("A", "B", "C"):
            mine = [t for t in self.q.tickets() if t.status == "waiting" and t.service == code]
            mine = [t for t in mine if t.day == today]
            assert snap["services"][code]["waiting"] == self.q.waiting_count(code) == len(mine)
            assert sorted(self.q.ahead(t) for t in mine) == list(range(len(mine)))
            # ahead (read from the domain's sorted index) ranks tickets exactly in call order
            in_call_order = sorted(mine, key=lambda t: (not t.prio, t.order_at, t.id))
            assert [self.q.ahead(t) for t in in_call_order] == list(range(len(mine)))


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
