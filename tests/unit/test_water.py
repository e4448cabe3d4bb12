"""Flood rules of CONTRACT §3 on controller.domain.water, time from the readings' ts."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.domain.alerts import AlertBook, AlertEvent
from controller.domain.water import (
    STATUSES,
    Held,
    IngestResult,
    Reading,
    SensorSpec,
    SensorState,
    Thresholds,
    Verdict,
    WaterSensor,
    desired_config,
    robust_rate_mm_h,
    siren_message,
    status_rank,
    water_message,
)

T0 = 1_763_880_000
SPEC = SensorSpec(
    id="wl-lahar-01",
    site="kota-blitar",
    mount_mm=4000,
    thresholds=Thresholds(waspada=1500, siaga=2200, awas=2800),
    interval_s=300,
    fast_interval_s=30,
    hysteresis_mm=50,
    hold_s=600,
    rate_alert_mm_h=500,
)


def reading(level: float, ts: int, **kw: object) -> Reading:
    """A healthy reading of ``level`` mm at ``ts``."""
    fields: dict[str, object] = {"temp_c": 28.5, "batt_mv": 3950, "n": 7}
    fields.update(kw)
    return Reading(ts, dist_mm=SPEC.mount_mm - level, **fields)  # type: ignore[arg-type]


class River:
    """A sensor fed readings on a clock that the test moves; events collected."""

    def __init__(self, spec: SensorSpec = SPEC, t: int = T0) -> None:
        self.sensor = WaterSensor(spec)
        self.t = t
        self.events: list[AlertEvent] = []
        self.book = AlertBook()

    def _keep(self, res: IngestResult) -> IngestResult:
        self.events += res.events
        for e in res.events:
            self.book.apply(e)
        return res

    def level(self, mm: float, dt: int = 30, **kw: object) -> IngestResult:
        """The next live reading, ``dt`` seconds after the previous one."""
        self.t += dt
        return self._keep(self.sensor.ingest(reading(mm, self.t, **kw), now=self.t))

    def check(self, now: float) -> bool:
        """The periodic offline check; True when offline."""
        res = self.sensor.check(now)
        self.events += res.events
        return res.offline

    def send(self, r: Reading, now: float | None = None) -> IngestResult:
        """Any reading, arriving at ``now`` (default: the clock)."""
        return self._keep(self.sensor.ingest(r, now=self.t if now is None else now))

    def hold(self, mm: float, seconds: int, dt: int = 30) -> list[IngestResult]:
        """Readings of ``mm`` every ``dt`` s for ``seconds``."""
        return [self.level(mm, dt) for _ in range(seconds // dt)]

    def ramp(self, start: float, stop: float, step: float, dt: int = 30) -> list[IngestResult]:
        """Readings from ``start`` towards ``stop`` (inclusive) in ``step`` mm steps."""
        out, mm = [], start
        while (step > 0 and mm <= stop) or (step < 0 and mm >= stop):
            out.append(self.level(mm, dt))
            mm += step
        return out

    @property
    def status(self) -> str:
        return self.sensor.state.status

    def kinds(self, kind: str) -> list[tuple[str, str | None]]:
        return [(e.action, e.level) for e in self.events if e.kind == kind]


# ------------------------------------------------------------------ status


def test_status_rises_at_once_at_each_threshold() -> None:
    river = River()
    river.ramp(1000, 1450, 150)
    assert river.status == "normal"

    res = river.level(1500)
    assert (res.status, res.status_changed) == ("waspada", True)
    assert [(e.action, e.kind, e.level, e.ts) for e in res.events] == [
        ("raise", "level", "waspada", river.t)
    ]
    river.ramp(1700, 2100, 200)
    assert river.level(2200).status == "siaga"
    river.ramp(2400, 2700, 150)
    assert river.level(2800).status == "awas"
    assert river.kinds("level") == [
        ("raise", "waspada"),
        ("update", "siaga"),
        ("update", "awas"),
    ]


def test_status_can_jump_several_levels_in_one_reading() -> None:
    river = River(replace(SPEC, spike_mm=5000))
    river.level(1000)
    res = river.level(2900, dt=300)
    assert (res.accepted, res.status) == (True, "awas")
    assert river.kinds("level") == [("raise", "awas")]


def test_status_falls_only_after_hysteresis_and_hold() -> None:
    river = River()
    river.ramp(2000, 2250, 50)
    assert river.status == "siaga"

    # Below the threshold but inside the hysteresis band: never falls.
    assert {r.status for r in river.hold(2160, 3600)} == {"siaga"}
    # Below threshold - hysteresis: falls once the hold time has passed.
    first = river.level(2140)
    held = river.hold(2140, 600)  # the last of these is 600 s after the first
    assert {r.status for r in [first, *held[:-1]]} == {"siaga"}
    assert (held[-1].status, held[-1].status_changed) == ("waspada", True)
    assert river.kinds("level")[-1] == ("update", "waspada")

    river.ramp(2100, 1460, -160)  # ends at 1460: inside the band, no hold yet
    river.hold(1440, 630)  # 21 readings: the last one 600 s after the first
    assert river.status == "normal"
    assert river.kinds("level")[-1] == ("clear", None)


def test_a_reading_in_the_hysteresis_band_restarts_the_hold() -> None:
    river = River()
    river.ramp(2000, 2250, 50)
    river.hold(2100, 510)
    river.level(2170)  # back inside the band: the hold starts again
    assert {r.status for r in river.hold(2100, 600)} == {"siaga"}
    assert river.level(2100).status == "waspada"


def test_status_drops_several_levels_when_their_holds_have_all_passed() -> None:
    river = River()
    river.ramp(2000, 2850, 50)
    assert river.status == "awas"
    river.hold(1000, 600)  # the first of these is held as a possible spike, then confirmed
    assert river.status == "awas"
    assert river.level(1000).status == "normal"
    assert river.kinds("level")[-1] == ("clear", None)


def test_hold_is_not_bridged_by_a_long_silence() -> None:
    river = River()
    river.ramp(2000, 2250, 50)
    river.level(2100)
    # The next reading comes an hour later: the level might have risen in between.
    assert river.level(2100, dt=3600).status == "siaga"
    river.hold(2100, 600)
    assert river.status == "waspada"


@pytest.mark.parametrize("hysteresis", [50, 20])
def test_level_oscillating_30mm_around_siaga_for_two_hours_is_one_alert(hysteresis: int) -> None:
    river = River(replace(SPEC, hysteresis_mm=hysteresis))
    river.level(2150)
    for k in range(2 * 3600 // 30):
        river.level(2230 if k % 2 == 0 else 2170)

    assert river.status == "siaga"
    assert river.kinds("level") == [("raise", "waspada"), ("update", "siaga")]
    alerts = river.book.open_alerts()
    assert [(a.kind, a.level, a.id) for a in alerts] == [("level", "siaga", 1)]


def test_level_alert_episode_ends_and_a_new_one_begins() -> None:
    river = River()
    river.ramp(1400, 1600, 100)
    river.ramp(1400, 1300, -100)
    river.hold(1300, 600)
    river.ramp(1400, 1600, 100)
    assert river.kinds("level") == [("raise", "waspada"), ("clear", None), ("raise", "waspada")]
    assert [a.id for a in river.book.open_alerts()] == [2]


# ------------------------------------------------------------------- rate


def test_steady_rise_of_600mm_h_raises_rate_alert_below_waspada() -> None:
    river = River()
    results = river.ramp(500, 1000, 50, dt=300)  # 50 mm per 5 min = 600 mm/h
    first = next(r for r in results if r.events)
    assert [(e.action, e.kind) for e in first.events] == [("raise", "rate")]
    assert first.rate_mm_h == pytest.approx(600)
    assert first.level_mm is not None and first.level_mm < SPEC.thresholds.waspada
    assert first.status == "normal"
    assert first.config_changed and river.sensor.config()["fast"] is True
    assert river.kinds("rate") == [("raise", "rising")]
    assert river.kinds("level") == []


def test_rate_alert_clears_after_the_rise_stops_and_holds() -> None:
    river = River()
    river.ramp(500, 1000, 50, dt=300)
    flat = river.hold(1000, 3600, dt=300)
    assert river.kinds("rate") == [("raise", "rising"), ("clear", None)]
    cleared = next(r for r in flat if r.events)
    assert cleared.rate_mm_h is not None and cleared.rate_mm_h < 0.7 * 500
    # Slow again once the river is calm and normal.
    assert river.sensor.config()["fast"] is False


@pytest.mark.parametrize("dt", [300, 30])
def test_single_noisy_reading_raises_no_rate_alert(dt: int) -> None:
    river = River()
    for k in range(3600 // dt):
        river.level(800 + (5 if k % 2 else -5), dt=dt)
    res = river.level(1050, dt=dt)  # within spike_mm, so accepted, yet a lone outlier
    assert res.accepted
    rates = [river.level(800, dt=dt).rate_mm_h for _ in range(1800 // dt)]
    assert all(r is not None and abs(r) < 100 for r in rates)
    assert river.kinds("rate") == []


def test_rate_needs_five_points_over_ten_minutes() -> None:
    assert robust_rate_mm_h([(0, 0), (300, 50), (600, 100), (900, 150)]) is None
    assert robust_rate_mm_h([(t, 0) for t in range(0, 150, 30)]) is None
    assert robust_rate_mm_h([(t, t // 6) for t in range(0, 1500, 300)]) == pytest.approx(600)


@given(
    st.lists(st.integers(-20, 20), min_size=15, max_size=40),
    st.integers(0, 14),
    st.integers(-2000, 2000),
)
def test_theil_sen_ignores_one_outlier_among_steady_points(
    noise: list[int], where: int, jump: int
) -> None:
    points = [(k * 120, 1000 + k * 20 + e) for k, e in enumerate(noise)]  # 600 mm/h
    ts, level = points[where]
    points[where] = (ts, level + jump)
    rate = robust_rate_mm_h(points, max_points=40)
    assert rate is not None and abs(rate - 600) < 400


# ------------------------------------------------------------- spike filters


def test_lone_spike_is_held_back_and_not_acted_on() -> None:
    river = River()
    river.hold(1000, 1800, dt=300)
    spike = river.level(2900, dt=300)
    assert (spike.accepted, spike.reason, spike.stored, spike.suspect) == (
        False,
        "suspect_spike",
        True,
        True,
    )
    assert (spike.status, spike.events, spike.siren) == ("normal", [], None)
    assert river.sensor.state.held == Held(river.t, 2900)
    assert water_message(river.sensor.state)["level_mm"] == 1000

    back = river.level(1005, dt=300)
    assert back.accepted and back.verdict == Verdict(river.t - 300, 2900, accepted=False)
    assert (back.status, back.events) == ("normal", [])
    assert river.sensor.state.held is None
    assert river.sensor.state.rejected == {"suspect_spike": 1}
    assert river.events == []


def test_real_step_confirmed_by_the_next_reading_is_accepted_retroactively() -> None:
    river = River()
    river.hold(1000, 1800, dt=300)
    step = river.level(1800, dt=300)
    assert step.reason == "suspect_spike" and river.status == "normal"

    confirm = river.level(1790, dt=300)
    assert confirm.verdict == Verdict(step_ts := river.t - 300, 1800, accepted=True)
    assert confirm.accepted and confirm.status == "waspada"
    level_events = [(e.action, e.level, e.ts) for e in confirm.events if e.kind == "level"]
    assert level_events == [("raise", "waspada", step_ts)]


def test_steep_steady_rise_is_never_dropped_as_spikes() -> None:
    river = River()
    river.hold(1000, 3600, dt=300)
    results = [river.level(1000 + 350 * k, dt=300) for k in range(1, 9)]  # 4200 mm/h
    held = [r for r in results if r.reason == "suspect_spike"]
    verdicts = [r.verdict for r in results if r.verdict is not None]
    assert held and len(verdicts) == len(held) and all(v.accepted for v in verdicts)
    # Once the fit knows the rate, the rise is expected and nothing is held.
    assert [r.reason for r in results[-4:]] == [None] * 4
    assert river.status == "awas"


def test_faster_than_physical_rise_is_suspect() -> None:
    river = River()
    river.hold(1000, 600)
    res = river.level(3000, dt=30)  # 2000 mm in 30 s = 67 mm/s
    assert (res.accepted, res.reason, res.stored, res.status) == (
        False,
        "suspect_rise",
        True,
        "normal",
    )
    assert (res.siren, res.events) == (None, [])
    after = river.level(1000)
    assert after.accepted and after.verdict is None
    assert river.events == []


def test_a_real_jump_beyond_the_physical_rate_is_accepted_once_it_persists() -> None:
    river = River()
    river.hold(1000, 600)
    reasons = [river.level(2500).reason for _ in range(5)]
    # 1500 mm at 20 mm/s needs 75 s; then held once and confirmed by the next reading.
    assert reasons == ["suspect_rise"] * 2 + ["suspect_spike", None, None]
    assert river.status == "siaga"


# ---------------------------------------------------------------- backlog


@pytest.mark.parametrize("live_first", [True, False])
def test_two_hour_backlog_lands_in_history_in_order_without_alerts(live_first: bool) -> None:
    river = River()
    river.hold(800, 1800, dt=300)
    gone = river.t
    assert river.check(gone + 900)
    back = gone + 7200
    # What the board buffered: a flood up to siaga and back, from two hours ago on.
    levels = [800 + 1700 * math.sin(math.pi * k / 20) for k in range(1, 20)]
    backlog = [reading(mm, gone + 300 * k) for k, mm in enumerate(levels, start=1)]
    live = reading(800, back)

    arrivals = [live, *backlog] if live_first else [*backlog, live]
    results = [river.send(r, now=back + 1) for r in arrivals]

    late = [r for r in results if r.late]
    assert len(late) == len(backlog)
    assert all(r.accepted and r.stored and not r.status_changed for r in late)
    assert {r.siren for r in results} == {None}
    assert river.kinds("level") == [] and river.kinds("rate") == []
    assert river.kinds("offline") == [("raise", "offline"), ("clear", None)]
    assert river.status == "normal"
    msg = water_message(river.sensor.state)
    assert (msg["level_mm"], msg["status"], msg["ts"]) == (800, "normal", back)
    window = river.sensor.state.window
    assert window == sorted(window)


def test_late_reading_after_newer_one_never_moves_status() -> None:
    river = River()
    river.hold(1000, 600)
    res = river.send(reading(2900, river.t - 45))
    assert (res.late, res.accepted, res.stored, res.status, res.events) == (
        True,
        True,
        True,
        "normal",
        [],
    )
    assert river.sensor.state.level_mm == 1000


# ------------------------------------------------------------ bad readings


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"err": "no_echo", "dist_mm": None}, "err:no_echo"),
        ({"err": "Timeout!!", "dist_mm": None}, "err:other"),
        ({"err": "crc", "dist_mm": 1200}, "err:crc"),
        ({"dist_mm": None}, "no_distance"),
        ({"dist_mm": math.nan}, "no_distance"),
        ({"dist_mm": math.inf}, "no_distance"),
        ({"ts": T0 + 10_000}, "future_ts"),
        ({"temp_c": 150.0}, "absurd_temp"),
        ({"temp_c": math.nan}, "absurd_temp"),
        ({"dist_mm": 0}, "above_mount"),
        ({"dist_mm": -40}, "above_mount"),
        ({"dist_mm": 4101}, "negative_level"),
    ],
)
def test_bad_readings_are_rejected_with_a_counted_reason(
    kw: dict[str, object], reason: str
) -> None:
    river = River()
    river.level(1000)
    fields: dict[str, object] = {"ts": river.t + 30, "dist_mm": 3000, "temp_c": 28.0}
    fields.update(kw)
    res = river.send(Reading(**fields), now=river.t + 31)  # type: ignore[arg-type]
    assert (res.accepted, res.reason, res.stored, res.status) == (False, reason, False, "normal")
    assert river.sensor.state.rejected == {reason: 1}
    assert river.sensor.state.level_mm == 1000


def test_a_reading_from_the_future_does_not_make_later_ones_late() -> None:
    river = River()
    river.level(1000)
    for r in (Reading(river.t + 86_400, dist_mm=3000), Reading(river.t + 86_400, err="crc")):
        assert river.send(r).reason in {"future_ts", "err:crc"}
    res = river.level(1010)
    assert res.accepted and not res.late


def test_blind_zone_and_slightly_negative_levels() -> None:
    sensor = WaterSensor(replace(SPEC, blind_mm=250))
    assert sensor.validate(Reading(T0, dist_mm=240), T0) == "above_mount"
    assert sensor.validate(Reading(T0, dist_mm=250), T0) is None
    assert sensor.validate(Reading(T0, dist_mm=4080), T0) is None  # level -80: dry season
    assert sensor.ingest(Reading(T0, dist_mm=4080), T0).level_mm == -80


# ------------------------------------------------------------------ health


def test_offline_after_three_intervals_and_back_online() -> None:
    river = River()
    river.level(1000)
    assert river.sensor.offline_at() == river.t + 900
    assert not river.sensor.check(river.t + 899).offline
    res = river.sensor.check(river.t + 900)
    assert (res.offline, res.changed) == (True, True)
    assert [(e.action, e.kind, e.ts) for e in res.events] == [("raise", "offline", river.t + 900)]
    assert water_message(river.sensor.state)["status"] == "offline"
    again = river.sensor.check(river.t + 2000)
    assert (again.offline, again.changed, again.events) == (True, False, [])

    back = river.level(1000, dt=3000)
    assert back.online_changed
    assert [(e.action, e.kind) for e in back.events] == [("clear", "offline")]
    assert water_message(river.sensor.state)["status"] == "normal"


def test_a_rejected_reading_still_proves_the_board_alive() -> None:
    river = River()
    river.level(1000)
    river.sensor.check(river.t + 1000)
    res = river.send(Reading(river.t + 1000, err="no_echo"), now=river.t + 1000)
    assert res.online_changed and not river.sensor.state.offline


def test_fast_interval_judges_offline_once_the_board_has_followed_it() -> None:
    river = River()
    river.ramp(1300, 1500, 100)
    asked = river.t
    assert river.sensor.config()["fast"] is True
    # Not yet reported since the request: a sleeping board gets it at its next wake.
    assert river.sensor.offline_at() == asked + 900
    river.level(1520)
    assert river.sensor.offline_at() == river.t + 90
    assert river.sensor.check(river.t + 90).offline


def test_silent_sensor_goes_offline_counted_from_the_first_check() -> None:
    sensor = WaterSensor(SPEC)
    assert sensor.offline_at() is None
    assert not sensor.check(T0).offline
    assert sensor.check(T0 + 900).offline


def test_battery_low_raised_once_and_cleared_with_hysteresis() -> None:
    river = River()
    river.level(1000, batt_mv=3390)
    river.level(1000, batt_mv=3380)
    river.level(1000, batt_mv=3450)
    assert river.kinds("battery_low") == [("raise", "low")]
    river.level(1000, batt_mv=3510)
    assert river.kinds("battery_low") == [("raise", "low"), ("clear", None)]


def test_repeated_no_echo_raises_alert_and_a_distance_clears_it() -> None:
    river = River()
    river.level(1000)
    for _ in range(2):
        river.send(Reading(river.t + 30, err="no_echo"), now=river.t + 30)
        river.t += 30
    assert river.kinds("no_echo") == []
    for _ in range(3):
        river.send(Reading(river.t + 30, err="no_echo"), now=river.t + 30)
        river.t += 30
    assert river.kinds("no_echo") == [("raise", "no_echo")]
    river.level(1000)
    assert river.kinds("no_echo") == [("raise", "no_echo"), ("clear", None)]
    assert river.sensor.state.rejected == {"err:no_echo": 5}


def test_other_errors_neither_count_nor_reset_no_echo() -> None:
    river = River()
    for err in ("no_echo", "no_echo", "crc", "no_echo"):
        river.send(Reading(river.t, err=err), now=river.t)
        river.t += 30
    assert river.kinds("no_echo") == [("raise", "no_echo")]


# ------------------------------------------------------------------- siren


def test_siren_on_at_awas_stays_on_through_noise_off_after_hold() -> None:
    river = River()
    river.ramp(2500, 2750, 50)
    assert not river.sensor.state.siren_on
    on = river.level(2800)
    assert on.siren is True and siren_message(river.sensor.state) == {"on": True, "level": "awas"}

    noisy = [river.level(2800 + (40 if k % 2 else -60)) for k in range(120)]
    assert {r.siren for r in noisy} == {None} and river.sensor.state.siren_on

    falling = river.ramp(2700, 2500, -100) + river.hold(2500, 600)
    offs = [r for r in falling if r.siren is not None]
    assert len(offs) == 1 and offs[0].siren is False and offs[0].status == "siaga"
    assert siren_message(river.sensor.state) == {"on": False, "level": "siaga"}


def test_siren_follows_its_own_level_when_set() -> None:
    river = River(replace(SPEC, siren_mm=2500))
    river.ramp(2300, 2450, 50)
    res = river.level(2500)
    assert (res.siren, res.status) == (True, "siaga")
    assert desired_config(river.sensor.spec, river.sensor.state)["siren_mm"] == 2500


# ----------------------------------------------------------------- outputs


def test_desired_config_and_water_message_shapes() -> None:
    river = River()
    assert desired_config(SPEC, river.sensor.state) == {
        "interval_s": 300,
        "fast_interval_s": 30,
        "mount_mm": 4000,
        "siren_mm": 2800,
        "hysteresis_mm": 50,
        "hold_s": 600,
        "fast": False,
    }
    river.level(1270)
    msg = water_message(river.sensor.state)
    assert msg == {"level_mm": 1270, "status": "normal", "rate_mm_h": None, "ts": river.t}
    assert len(json.dumps(msg)) < 4096


def test_resume_after_restart_keeps_the_episode() -> None:
    state = SensorState.resume(
        "siaga", level_mm=2300, ts=T0, raised={"level": "siaga"}, last_heard=T0
    )
    sensor = WaterSensor(SPEC, state)
    res = sensor.ingest(reading(2250, T0 + 30), T0 + 30)
    assert (res.status, res.events) == ("siaga", [])
    events = []
    for k in range(2, 40):
        events += sensor.ingest(reading(1000, T0 + 30 * k), T0 + 30 * k).events
    assert sensor.state.status == "normal" and sensor.state.raised == {}
    assert [(e.action, e.kind) for e in events] == [("clear", "level")]


def test_spec_from_a_configured_water_device() -> None:
    from controller.config import Thresholds as ConfigThresholds
    from controller.config import WaterDevice

    dev = WaterDevice(
        id="wl-lahar-01",
        site="kota-blitar",
        name="Kali Lahar, pos pantau 1",
        lat=-8.0954,
        lon=112.1609,
        mount_mm=4000,
        thresholds_mm=ConfigThresholds(waspada=1500, siaga=2200, awas=2800),
        rate_alert_mm_h=400,
        sirens=["siren-01"],
    )
    spec = SensorSpec.from_device(dev, max_rise_mm_s=10.0)
    assert spec.thresholds == Thresholds(1500, 2200, 2800)
    assert (spec.siren_level_mm, spec.sirens, spec.rate_alert_mm_h) == (2800, ("siren-01",), 400)
    assert spec.max_rise_mm_s == 10.0


def test_spec_refuses_thresholds_out_of_order() -> None:
    with pytest.raises(ValueError, match="thresholds must rise"):
        replace(SPEC, thresholds=Thresholds(1500, 1400, 2800))


# -------------------------------------------------------------- properties


def _raw(mm: float) -> int:
    t = SPEC.thresholds
    return sum(mm >= x for x in (t.waspada, t.siaga, t.awas))


LEVELS = st.lists(st.integers(0, 3600), min_size=1, max_size=80)
STEPS = st.lists(st.sampled_from([30, 60, 300]), min_size=80, max_size=80)


@settings(max_examples=150, deadline=None)
@given(LEVELS, STEPS)
def test_status_up_is_immediate_and_down_only_after_hold(
    levels: list[int], steps: list[int]
) -> None:
    sensor = WaterSensor(replace(SPEC, spike_mm=10_000, max_rise_mm_s=1e9))
    t = T0
    history: list[tuple[int, int]] = []
    status = 0
    for mm, dt in zip(levels, steps, strict=False):
        t += dt
        res = sensor.ingest(reading(mm, t), t)
        assert res.accepted
        history.append((t, mm))
        new = status_rank(res.status)
        assert new >= _raw(mm)
        if new < status:
            # Every reading in the last hold_s was below the old status' threshold - hysteresis.
            thr = SPEC.thresholds.of(STATUSES[status])
            recent = [lv for ts, lv in history if ts >= t - SPEC.hold_s]
            assert all(lv < thr - SPEC.hysteresis_mm for lv in recent)
            assert history[0][0] <= t - SPEC.hold_s
        status = new


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["waspada", "siaga", "awas"]),
    st.lists(st.integers(-49, 49), min_size=1, max_size=200),
)
def test_noise_inside_the_hysteresis_never_flaps(name: str, noise: list[int]) -> None:
    thr = SPEC.thresholds.of(name)  # type: ignore[arg-type]
    river = River()
    river.ramp(thr - 300, thr, 100)
    before = list(river.events)
    for e in noise:
        river.level(thr + e)
    assert [e for e in river.events[len(before) :] if e.kind == "level"] == []
    assert river.status == name


@settings(max_examples=100, deadline=None)
@given(
    st.permutations(list(range(1, 24))), st.lists(st.integers(0, 3500), min_size=23, max_size=23)
)
def test_readings_older_than_the_newest_never_raise_anything(
    order: list[int], levels: list[int]
) -> None:
    river = River()
    river.level(900, dt=0)
    newest = river.t + 24 * 300
    river.send(reading(900, newest), now=newest)
    for k in order:
        res = river.send(reading(levels[k - 1], river.t + k * 300), now=newest + k)
        assert res.late and res.events == [] and not res.status_changed and res.siren is None
    assert river.events == [] and river.status == "normal"
