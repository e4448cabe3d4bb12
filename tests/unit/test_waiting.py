"""Waiting-time estimate (controller.domain.waiting), down to a simulated MPP day."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.domain.queue import CounterSpec, ServiceSpec, SiteQueue, Ticket
from controller.domain.waiting import (
    DEFAULT_PRIOR_MIN,
    CounterLoad,
    Forecast,
    ServiceTimes,
    WaitingTicket,
    evaluate_day,
    expected_remaining_s,
    predict_call_times,
    to_minutes,
)

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 08:00 in Jakarta
MIN = 60.0


def waiting(key: int, service: str = "A", prio: bool = False, at_min: int = 0) -> WaitingTicket:
    return WaitingTicket(key, service, prio, T0 + timedelta(minutes=at_min))


def counter(cid: str, services: str, busy_min: float = 0.0, open_: bool = True) -> CounterLoad:
    return CounterLoad(cid, frozenset(services), open_, busy_min * MIN)


# ---------------------------------------------------------------- service times


def test_prior_is_sla_or_ten_minutes_without_history() -> None:
    st = ServiceTimes({"A": 15.0})
    assert st.mean_min("A") == 15.0
    assert st.mean_min("B") == DEFAULT_PRIOR_MIN == 10.0


def test_recent_services_outweigh_the_prior() -> None:
    st = ServiceTimes({"A": 15.0})
    st.observe("A", 6.0)
    assert 6.0 < st.mean_min("A") < 15.0
    for _ in range(15):
        st.observe("A", 6.0)
    assert st.mean_min("A") == pytest.approx(6.0, abs=0.3)


def test_recent_services_weigh_more_than_older_ones() -> None:
    st = ServiceTimes({"A": 8.0})
    for _ in range(10):
        st.observe("A", 6.0)
    for _ in range(5):
        st.observe("A", 10.0)
    assert st.mean_min("A") > 8.0  # half weight on the last five


def test_forgotten_done_is_clipped() -> None:
    st = ServiceTimes({"A": 10.0})
    for _ in range(10):
        st.observe("A", 10.0)
    st.observe("A", 240.0)  # counter left the ticket open over lunch
    assert st.mean_min("A") < 16.0
    assert st.count("A") == 11


def test_window_keeps_the_last_twenty() -> None:
    st = ServiceTimes({})
    for _ in range(50):
        st.observe("A", 10.0)
    assert st.count("A") == ServiceTimes.window == 20


# ---------------------------------------------------------------- replay of the call rules


def test_remaining_time_never_below_a_third_of_the_mean() -> None:
    assert expected_remaining_s(600.0, 120.0) == 480.0
    assert expected_remaining_s(600.0, 900.0) == 200.0


def test_free_counter_calls_at_once_then_one_mean_per_ticket() -> None:
    got = predict_call_times([counter("1", "A")], [waiting(i) for i in range(1, 4)], {"A": 600})
    assert got == {1: 0.0, 2: 600.0, 3: 1200.0}


def test_two_counters_halve_the_wait() -> None:
    got = predict_call_times(
        [counter("1", "A", busy_min=2), counter("2", "A", busy_min=6)],
        [waiting(i, at_min=i) for i in range(1, 5)],
        {"A": 10 * MIN},
    )
    assert [got[i] / MIN for i in range(1, 5)] == [2, 6, 12, 16]


def test_priority_ticket_is_called_before_older_ones() -> None:
    got = predict_call_times(
        [counter("1", "A")],
        [waiting(1, at_min=0), waiting(2, at_min=1), waiting(3, prio=True, at_min=2)],
        {"A": 600},
    )
    assert got == {3: 0.0, 1: 600.0, 2: 1200.0}


def test_shared_counter_serves_the_oldest_ticket_of_its_services() -> None:
    # counter 2 serves A and B; the B tickets are older, so A gets it only later
    got = predict_call_times(
        [counter("1", "A", busy_min=10), counter("2", "AB")],
        [waiting(1, "B", at_min=0), waiting(2, "B", at_min=1), waiting(3, "A", at_min=2)],
        {"A": 10 * MIN, "B": 5 * MIN},
    )
    assert got == {1: 0.0, 2: 5 * MIN, 3: 10 * MIN}


def test_nobody_open_means_once_the_counters_reopen() -> None:
    got = predict_call_times(
        [counter("1", "A", open_=False), counter("2", "B")],
        [waiting(1, "A"), waiting(2, "A"), waiting(3, "B")],
        {"A": 600, "B": 300},
    )
    assert got == {1: 0.0, 2: 600.0, 3: 0.0}


def test_ticket_no_counter_serves_has_no_estimate() -> None:
    assert predict_call_times([counter("1", "A")], [waiting(1, "C")], {}) == {}


def test_minutes_round_to_nearest() -> None:
    assert [to_minutes(s) for s in (0, 29, 30, 89, 90)] == [0, 0, 1, 1, 2]


# ---------------------------------------------------------------- in the SiteQueue


def test_ticket_view_wait_follows_counters_and_service_times() -> None:
    now = [T0]
    q = SiteQueue(
        "s",
        ZoneInfo("Asia/Jakarta"),
        [ServiceSpec("A", "KTP-el", "Dukcapil", time(8), time(15), None, 10)],
        [CounterSpec("1", "Loket 1", ("A",)), CounterSpec("2", "Loket 2", ("A",))],
        clock=lambda: now[0],
    )
    ts = [q.issue("A") for _ in range(5)]
    assert all(isinstance(t, Ticket) for t in ts)
    tickets = [t for t in ts if isinstance(t, Ticket)]
    # both counters free: two called at once, then one every 10 min / 2 counters
    assert [q.wait_min(t) for t in tickets] == [0, 0, 10, 10, 20]
    q.pause("2")
    assert [q.wait_min(t) for t in tickets] == [0, 10, 20, 30, 40]
    q.resume("2")
    q.call_next("1")
    q.call_next("2")
    now[0] += timedelta(minutes=4)  # 6 min left on each counter
    assert [q.wait_min(t) for t in tickets[2:]] == [6, 6, 16]
    view = q.ticket_view(tickets[4].token)
    assert view is not None and view["wait_min"] == 16 and view["ahead"] == 2
    # services turn out faster than the SLA: estimates follow
    for _ in range(6):
        now[0] += timedelta(minutes=4)
        q.call_next("1")
        q.issue("A")
    assert q.service_times.mean_min("A") < 6.0


# ---------------------------------------------------------------- simulated day


def test_simulated_day_is_reproducible() -> None:
    assert evaluate_day(7) == evaluate_day(7)


def test_estimate_on_simulated_days_is_close_and_beats_baselines() -> None:
    days = [evaluate_day(seed) for seed in range(1, 11)]
    for d in days:
        assert d["tickets"] > 300
        # a quiet day has small waits: judge it in minutes, a busy one relative to the wait
        assert d["mae"] < max(0.40 * d["mean_wait"], 2.5), d
        assert abs(d["bias"]) < 3.0, d
        assert d["mae"] < d["mae_simple"], d
        assert d["mae"] < 0.4 * d["mae_naive"], d
    pooled = sum(d["mae"] for d in days) / sum(d["mean_wait"] for d in days)
    assert pooled < 0.32
    assert sum(d["within_5min"] for d in days) / len(days) > 0.6


@settings(max_examples=200, deadline=None)
@given(
    busy=st.lists(st.floats(0, 900), min_size=1, max_size=5),
    serves=st.lists(st.sets(st.sampled_from("ABC"), min_size=1), min_size=5, max_size=5),
    opened=st.lists(st.booleans(), min_size=5, max_size=5),
    tickets=st.lists(st.tuples(st.sampled_from("ABC"), st.booleans()), max_size=30),
    newcomer=st.sampled_from("ABC"),
)
def test_extending_a_forecast_with_a_newcomer_equals_a_full_replay(busy, serves, opened, tickets, newcomer):
    counters = [
        CounterLoad(str(i), frozenset(serves[i]), opened[i], b) for i, b in enumerate(busy)
    ]
    t0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    waiting = [
        WaitingTicket(k, svc, prio, t0 + timedelta(seconds=k)) for k, (svc, prio) in enumerate(tickets)
    ]
    mean = {"A": 600.0, "B": 420.0, "C": 300.0}
    last = WaitingTicket(len(tickets), newcomer, False, t0 + timedelta(hours=1))
    full = Forecast(counters, [*waiting, last], mean).call_s
    f = Forecast(counters, waiting, mean)
    if f.extend(last):
        assert f.call_s == full
    else:  # no open counter serves it: a full replay (with its fallback) is needed
        assert not any(c.open and newcomer in c.services for c in counters)
