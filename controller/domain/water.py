"""Flood early warning for one water-level sensor (CONTRACT §1, §3): a pure state machine.

No I/O: readings come in as :class:`Reading` values with their ``ts`` already
resolved (the board's NTP time, or the arrival time when it had none), the
current time is passed in, and the results say what to store, publish and
raise. :class:`WaterSensor` processes one sensor's readings in arrival order;
the controller keeps one per sensor and calls :meth:`WaterSensor.check`
periodically for the offline rule.

Rules the controller relies on (times are Unix seconds):

* **Validation**, in this order; a failing reading is rejected with its reason
  and not stored: ``err:<code>`` (the board reported an error; codes outside
  ``[a-z0-9_]{1,24}`` become ``err:other``), ``no_distance`` (no or non-finite
  ``dist_mm``), ``future_ts`` (``ts`` more than ``future_tolerance_s`` ahead of
  now), ``absurd_temp`` (``temp_c`` outside ``temp_range_c``: the sensor's
  speed-of-sound correction is then wrong too), ``above_mount`` (``dist_mm`` ≤ 0
  or inside the ``blind_mm`` zone: water at or above the sensor face),
  ``negative_level`` (level below ``-negative_tolerance_mm``: an echo from
  beyond the gauge's zero).
* **Late readings.** A reading older than the newest ``ts`` seen, or older
  than ``stale_after_s`` (2 × ``interval_s`` unless set) at arrival, is
  history: validated, stored (``late=True``) and used for the rate fit, but it
  never changes the status, the siren, the level shown or any alert. So a
  backlog a board sends after reconnecting, before or after its live
  reading, cannot raise an alert for the past.
* **Suspect readings** (stored with their reason, counted, not acted on):

  - ``suspect_rise``: the level rose faster than ``max_rise_mm_s`` since the
    last accepted reading. The comparison is always with the last accepted
    reading, so a real jump stops being suspect once enough time has passed
    (e.g. 2700 mm at 20 mm/s after 135 s) and then goes through the spike rule.
  - ``suspect_spike``: the reading differs by more than ``spike_mm`` from the
    level expected from the last accepted reading and the current rate. It is
    *held*. The next valid live reading decides: if it lies nearer the
    expected old level than the held one, the held one was a lone spike and
    stays rejected; otherwise (nearer the held one, or exactly halfway) the
    jump is real and the held reading is accepted retroactively, applied at
    its own ``ts`` before the new reading. ``IngestResult.verdict`` reports
    the decision so the stored row can be updated. A real step is thus acted
    on one reading late. The spike rule is skipped for the first reading and
    for the first reading after a gap longer than the offline limit (there
    are no "two normal readings" around it, and a flood that happened during
    an outage must show at once).
* **Status** ``normal < waspada < siaga < awas``: each threshold is a latch
  that turns on at once when the level reaches it and off only after the
  level has stayed below ``threshold - hysteresis_mm`` for ``hold_s``,
  measured by reading ``ts`` across consecutive accepted readings (a reading
  in the hysteresis band restarts the hold; so does a gap between readings
  longer than the offline limit). The status is the highest latch on; when
  several latches have been released, it drops several steps at once.
* **Level alert**: one episode from leaving ``normal`` to returning to it:
  ``raise`` at the first status above normal, ``update`` on every status
  change in between, ``clear`` on return to ``normal``.
* **Rate of rise** (mm/h): Theil–Sen slope (median of pairwise slopes) of the
  accepted readings (live and late) within the last ``rate_window_s`` (20 min)
  by ``ts`` — or, when that window holds fewer than ``rate_min_points``, the
  last ``rate_min_points`` readings if they span at most 3 × ``rate_window_s``
  (so a slow board's 5-minute readings still give a rate after 20 minutes) —
  evenly thinned to at most ``rate_max_points`` (16: a fit then costs about
  30 µs); unknown (``None``) with fewer than ``rate_min_points`` (5: one
  outlier among them cannot move the median) or spanning less than
  ``rate_min_span_s`` (10 min). A robust fit lags the onset of a rise (it
  treats the first rising points as outliers): a 600 mm/h rise after a flat
  hour reaches a 500 mm/h alert after 15–20 minutes. The rate also feeds the
  spike rule's expected level. With ``rate_alert_mm_h`` set, a
  ``rate`` alert is raised when the rate reaches it (at any level) and cleared
  when it has stayed below ``rate_clear_ratio`` (0.7) of it for ``hold_s``.
* **Siren**: a latch like the status ones at ``siren_level_mm`` (``siren_mm``,
  or the awas threshold), same hysteresis and hold: on at once, off after the
  level has fallen and held.
* **Fast readings**: the board is asked for ``fast_interval_s`` readings
  (``desired_config(...)["fast"]``) while the status is above ``normal`` or
  the rate is at least ``rising_mm_h``; it goes back to slow once the status is
  ``normal`` and the rate is below half of ``rising_mm_h`` (or unknown).
* **Offline**: :meth:`WaterSensor.check` marks the sensor offline (and raises
  an ``offline`` alert) when no reading of any kind has *arrived* for 3 × the
  expected interval. The expected interval is ``fast_interval_s`` only once
  the board has reported after the controller asked for fast readings (a
  sleeping board picks the retained config up at its next wake), otherwise
  ``interval_s``. Any arriving reading, even a rejected or late one, brings it
  back online (clears the alert). Before the first reading, the first
  ``check`` starts the clock.
* **Battery** (live readings, valid or not): ``battery_low`` raised below
  ``battery_low_mv``, cleared at ``battery_low_mv + battery_hysteresis_mv``.
* **No echo**: ``no_echo_alert_after`` consecutive live ``err == "no_echo"``
  readings raise ``no_echo``; the next reading with a distance clears it
  (other error codes neither count nor reset).
"""

from __future__ import annotations

import bisect
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from controller.domain.alerts import AlertEvent, AlertKind

WaterStatus = Literal["normal", "waspada", "siaga", "awas"]
STATUSES: tuple[WaterStatus, ...] = ("normal", "waspada", "siaga", "awas")
"""Ascending order of severity."""
_RANK: dict[str, int] = {s: i for i, s in enumerate(STATUSES)}
_WARNINGS: tuple[WaterStatus, ...] = STATUSES[1:]
OFFLINE_FACTOR = 3
"""A sensor is offline after this many expected intervals without a reading (CONTRACT §3)."""
SUSPECT_REASONS = frozenset({"suspect_rise", "suspect_spike"})
_ERR_CODE = re.compile(r"[a-z0-9_]{1,24}")
_MAX_WINDOW_POINTS = 600
_LOOKBACK = 3
"""The rate fit may reach back this many windows to find its minimum of points."""
_LOWEST = -(2**62)


def status_rank(status: str) -> int:
    """0 for ``normal`` … 3 for ``awas``."""
    return _RANK[status]


# ---------------------------------------------------------------------- spec


@dataclass(frozen=True)
class Thresholds:
    """Levels (mm above the gauge's zero) where each warning status begins."""

    waspada: int
    siaga: int
    awas: int

    def of(self, status: WaterStatus) -> int:
        """The threshold of a warning status."""
        if status == "normal":
            raise ValueError("normal has no threshold")
        return int(getattr(self, status))


class _ThresholdsLike(Protocol):
    @property
    def waspada(self) -> int: ...
    @property
    def siaga(self) -> int: ...
    @property
    def awas(self) -> int: ...


class WaterDeviceLike(Protocol):
    """What :meth:`SensorSpec.from_device` reads (``controller.config.WaterDevice`` fits)."""

    @property
    def id(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def mount_mm(self) -> int: ...
    @property
    def interval_s(self) -> int: ...
    @property
    def fast_interval_s(self) -> int: ...
    @property
    def thresholds_mm(self) -> _ThresholdsLike: ...
    @property
    def hysteresis_mm(self) -> int: ...
    @property
    def hold_s(self) -> int: ...
    @property
    def siren_mm(self) -> int | None: ...
    @property
    def sirens(self) -> Sequence[str]: ...
    @property
    def rate_alert_mm_h(self) -> float | None: ...


@dataclass(frozen=True, kw_only=True)
class SensorSpec:
    """One water sensor's configuration, as plain values."""

    id: str
    site: str
    mount_mm: int
    """Distance from the sensor face to the gauge's zero: level_mm = mount_mm - dist_mm."""
    thresholds: Thresholds
    interval_s: int = 300
    fast_interval_s: int = 30
    hysteresis_mm: int = 50
    hold_s: int = 600
    siren_mm: int | None = None
    """Level that sounds the siren; the awas threshold when None."""
    sirens: tuple[str, ...] = ()
    """Other boards whose siren follows this sensor."""
    rate_alert_mm_h: float | None = None
    """Raise a ``rate`` alert at this rate of rise; None: no rate alert."""
    max_rise_mm_s: float = 20.0
    """A faster rise than this since the last accepted reading is physically implausible."""
    spike_mm: int = 300
    """A reading this far from the expected level is held as a possible lone spike."""
    battery_low_mv: int = 3400
    battery_hysteresis_mv: int = 100
    no_echo_alert_after: int = 3
    rising_mm_h: float = 200.0
    """Rate from which the board is asked for fast readings."""
    rate_window_s: int = 1200
    rate_min_points: int = 5
    rate_min_span_s: int = 600
    rate_max_points: int = 16
    rate_clear_ratio: float = 0.7
    negative_tolerance_mm: int = 100
    blind_mm: int = 0
    """The sensor's blind zone: a shorter distance cannot be measured."""
    temp_range_c: tuple[float, float] = (-20.0, 85.0)
    future_tolerance_s: int = 300
    stale_s: int | None = None
    """A reading older than this at arrival is history; None: 2 × interval_s."""

    def __post_init__(self) -> None:
        t = self.thresholds
        problems = []
        if not 0 < t.waspada < t.siaga < t.awas < self.mount_mm:
            problems.append("thresholds must rise: 0 < waspada < siaga < awas < mount_mm")
        if not 0 < self.fast_interval_s <= self.interval_s:
            problems.append("need 0 < fast_interval_s <= interval_s")
        if not 0 <= self.hysteresis_mm < t.waspada:
            problems.append("need 0 <= hysteresis_mm < waspada")
        if self.hold_s < 0 or self.no_echo_alert_after < 1 or self.max_rise_mm_s <= 0:
            problems.append("hold_s, no_echo_alert_after and max_rise_mm_s out of range")
        if self.siren_mm is not None and not 0 < self.siren_mm < self.mount_mm:
            problems.append("siren_mm must lie between 0 and mount_mm")
        if self.rate_alert_mm_h is not None and self.rate_alert_mm_h <= 0:
            problems.append("rate_alert_mm_h must be positive")
        if self.rate_min_points < 3 or self.rate_max_points < self.rate_min_points:
            problems.append("need 3 <= rate_min_points <= rate_max_points")
        if problems:
            raise ValueError(f"sensor {self.id}: " + "; ".join(problems))

    @property
    def siren_level_mm(self) -> int:
        """Level at which this sensor's siren(s) sound."""
        return self.siren_mm if self.siren_mm is not None else self.thresholds.awas

    @property
    def stale_after_s(self) -> int:
        """Age at arrival from which a reading counts as history."""
        return self.stale_s if self.stale_s is not None else 2 * self.interval_s

    @property
    def gap_s(self) -> int:
        """Readings further apart than this are not 'continuous' (the slow offline limit)."""
        return OFFLINE_FACTOR * self.interval_s

    @classmethod
    def from_device(cls, dev: WaterDeviceLike, **overrides: Any) -> SensorSpec:
        """The spec of a configured water device; ``overrides`` set the other fields."""
        t = dev.thresholds_mm
        return cls(
            id=dev.id,
            site=dev.site,
            mount_mm=dev.mount_mm,
            thresholds=Thresholds(t.waspada, t.siaga, t.awas),
            interval_s=dev.interval_s,
            fast_interval_s=dev.fast_interval_s,
            hysteresis_mm=dev.hysteresis_mm,
            hold_s=dev.hold_s,
            siren_mm=dev.siren_mm,
            sirens=tuple(dev.sirens),
            rate_alert_mm_h=dev.rate_alert_mm_h,
            **overrides,
        )


# -------------------------------------------------------------- values in/out


@dataclass(frozen=True)
class Reading:
    """One ``evt/reading`` as validated at the edge, ``ts`` already resolved."""

    ts: int
    dist_mm: float | None = None
    err: str | None = None
    temp_c: float | None = None
    batt_mv: int | None = None
    n: int | None = None


@dataclass(frozen=True)
class Verdict:
    """The decision on a held ``suspect_spike`` reading (update its stored row)."""

    ts: int
    level_mm: int
    accepted: bool
    """True: a real step, now accepted; False: a lone spike, stays rejected."""


@dataclass
class IngestResult:
    """What one reading did."""

    accepted: bool
    """Valid and acted on (or, when ``late``, valid history)."""
    reason: str | None
    """Why not accepted: a validation code or ``suspect_rise`` / ``suspect_spike``."""
    level_mm: int | None
    """This reading's level, when it had a usable distance."""
    status: WaterStatus
    """The sensor's status after this reading."""
    status_changed: bool = False
    rate_mm_h: float | None = None
    events: list[AlertEvent] = field(default_factory=list)
    siren: bool | None = None
    """The desired siren state when it changed, else None."""
    stored: bool = False
    """Keep in history (accepted, late, or suspect with ``reason`` as its flag)."""
    late: bool = False
    verdict: Verdict | None = None
    online_changed: bool = False
    """The sensor was offline and is back."""
    config_changed: bool = False
    """``desired_config`` changed (fast readings on or off)."""

    @property
    def suspect(self) -> bool:
        """Held back by a spike filter (stored, counted, not acted on)."""
        return self.reason in SUSPECT_REASONS


@dataclass
class CheckResult:
    """What a periodic :meth:`WaterSensor.check` did."""

    offline: bool
    changed: bool = False
    events: list[AlertEvent] = field(default_factory=list)


# ---------------------------------------------------------------------- state


@dataclass
class Latch:
    """On at once at a threshold; off after staying below a lower one for a hold time."""

    on: bool = False
    below_since: int | None = None

    def update(
        self, value: float, on_at: float, off_below: float, hold_s: int, t: int, continuous: bool
    ) -> bool:
        """Feed one value at time ``t``; returns whether ``on`` changed."""
        if value >= on_at:
            self.below_since = None
            if not self.on:
                self.on = True
                return True
            return False
        if not self.on:
            self.below_since = None
            return False
        if value >= off_below:
            self.below_since = None
            return False
        if self.below_since is None or not continuous:
            self.below_since = t
        if t - self.below_since >= hold_s:
            self.on = False
            self.below_since = None
            return True
        return False


@dataclass(frozen=True)
class Held:
    """A reading held back as a possible lone spike."""

    ts: int
    level_mm: int


@dataclass
class SensorState:
    """Everything one sensor remembers; the first block is what the outside shows."""

    status: WaterStatus = "normal"
    level_mm: int | None = None
    """Level of the last accepted live reading."""
    ts: int | None = None
    """Its ts."""
    rate_mm_h: float | None = None
    offline: bool = False
    siren_on: bool = False
    fast: bool = False
    """The board is asked for fast readings."""
    raised: dict[str, str] = field(default_factory=dict)
    """Alert kinds this sensor has raised and not cleared, with their level."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Count of readings per rejection/suspect reason."""
    held: Held | None = None

    fast_since: float | None = None
    last_heard: float | None = None
    """Arrival time of the last reading of any kind."""
    newest_ts: int | None = None
    no_echo_run: int = 0
    latches: dict[str, Latch] = field(default_factory=lambda: {s: Latch() for s in _WARNINGS})
    siren_latch: Latch = field(default_factory=Latch)
    rate_latch: Latch = field(default_factory=Latch)
    window: list[tuple[int, int]] = field(default_factory=list)
    """(ts, level_mm) of accepted readings of the last 3 rate windows, oldest first."""

    @classmethod
    def resume(
        cls,
        status: WaterStatus = "normal",
        *,
        level_mm: int | None = None,
        ts: int | None = None,
        raised: Mapping[str, str] | None = None,
        siren_on: bool = False,
        last_heard: float | None = None,
    ) -> SensorState:
        """A consistent state after a restart, from what the controller stored."""
        state = cls(
            status=status,
            level_mm=level_mm,
            ts=ts,
            siren_on=siren_on,
            fast=status != "normal",
            raised=dict(raised or {}),
            last_heard=last_heard,
            newest_ts=ts,
        )
        for s in _WARNINGS:
            state.latches[s].on = _RANK[s] <= _RANK[status]
        state.siren_latch.on = siren_on
        state.rate_latch.on = "rate" in state.raised
        if level_mm is not None and ts is not None:
            state.window.append((ts, level_mm))
        return state


# ------------------------------------------------------------------ functions


def robust_rate_mm_h(
    points: Sequence[tuple[int, int]],
    min_points: int = 5,
    min_span_s: int = 600,
    max_points: int = 16,
) -> float | None:
    """Theil–Sen slope of (ts, level_mm) points sorted by ts, in mm/h; None if too few."""
    n = len(points)
    if n < min_points or points[-1][0] - points[0][0] < min_span_s:
        return None
    if n > max_points:
        points = [points[round(i * (n - 1) / (max_points - 1))] for i in range(max_points)]
        n = max_points
    slopes: list[float] = []
    for i, (t0, v0) in enumerate(points):
        slopes += [(v - v0) / (t - t0) for t, v in points[i + 1 :] if t != t0]
    if not slopes:
        return None
    return statistics.median(slopes) * 3600.0


def desired_config(spec: SensorSpec, state: SensorState) -> dict[str, Any]:
    """The retained ``cmd/config`` payload.

    ``hysteresis_mm`` and ``hold_s`` drive the board's own siren rule; ``fast``
    asks for ``fast_interval_s`` readings now (the board may also decide so itself).
    """
    return {
        "interval_s": spec.interval_s,
        "fast_interval_s": spec.fast_interval_s,
        "mount_mm": spec.mount_mm,
        "siren_mm": spec.siren_level_mm,
        "hysteresis_mm": spec.hysteresis_mm,
        "hold_s": spec.hold_s,
        "fast": state.fast,
    }


def water_message(state: SensorState) -> dict[str, Any]:
    """The retained ``site/{site}/water/{id}`` payload; status ``offline`` while offline."""
    return {
        "level_mm": state.level_mm,
        "status": "offline" if state.offline else state.status,
        "rate_mm_h": None if state.rate_mm_h is None else round(state.rate_mm_h),
        "ts": state.ts,
    }


def siren_message(state: SensorState) -> dict[str, Any]:
    """The retained ``cmd/siren`` payload for every board following this sensor."""
    return {"on": state.siren_on, "level": state.status}


def _err_reason(err: str) -> str:
    return f"err:{err}" if _ERR_CODE.fullmatch(err) else "err:other"


# --------------------------------------------------------------------- sensor


class WaterSensor:
    """One sensor's readings → level, status, rate, alerts, siren (see the module rules)."""

    def __init__(self, spec: SensorSpec, state: SensorState | None = None) -> None:
        self.spec = spec
        self.state = state if state is not None else SensorState()

    # ------------------------------------------------------------- queries

    def expected_interval_s(self) -> int:
        """The interval the board is judged by for the offline rule."""
        s = self.state
        if (
            s.fast
            and s.fast_since is not None
            and s.last_heard is not None
            and s.last_heard > s.fast_since
        ):
            return self.spec.fast_interval_s
        return self.spec.interval_s

    def offline_at(self) -> float | None:
        """When the sensor goes offline if nothing arrives (None before the first check)."""
        if self.state.last_heard is None:
            return None
        return self.state.last_heard + OFFLINE_FACTOR * self.expected_interval_s()

    def config(self) -> dict[str, Any]:
        """``desired_config`` of this sensor."""
        return desired_config(self.spec, self.state)

    def message(self) -> dict[str, Any]:
        """``water_message`` of this sensor."""
        return water_message(self.state)

    def level_of(self, reading: Reading) -> int | None:
        """The reading's level, if it has a finite distance."""
        d = reading.dist_mm
        if d is None or not math.isfinite(d):
            return None
        return round(self.spec.mount_mm - d)

    def validate(self, reading: Reading, now: float) -> str | None:
        """The rejection reason of a reading on its own, or None when it is usable."""
        spec = self.spec
        if reading.err is not None:
            return _err_reason(reading.err)
        d = reading.dist_mm
        if d is None or not math.isfinite(d):
            return "no_distance"
        if reading.ts > now + spec.future_tolerance_s:
            return "future_ts"
        temp = reading.temp_c
        lo, hi = spec.temp_range_c
        if temp is not None and not (math.isfinite(temp) and lo <= temp <= hi):
            return "absurd_temp"
        if d <= 0 or d < spec.blind_mm:
            return "above_mount"
        if spec.mount_mm - d < -spec.negative_tolerance_mm:
            return "negative_level"
        return None

    # ------------------------------------------------------------- actions

    def ingest(self, reading: Reading, now: float) -> IngestResult:
        """Process the next arriving reading (``now`` is its arrival time)."""
        spec, s = self.spec, self.state
        start_status, start_siren, start_fast = s.status, s.siren_on, s.fast
        res = IngestResult(
            accepted=False, reason=None, level_mm=self.level_of(reading), status=s.status
        )
        if s.offline:
            s.offline = False
            res.online_changed = True
            self._clear("offline", now, res.events)
        s.last_heard = now if s.last_heard is None else max(s.last_heard, now)

        reason = self.validate(reading, now)
        future = reading.ts > now + spec.future_tolerance_s
        late = not future and (
            (s.newest_ts is not None and reading.ts < s.newest_ts)
            or now - reading.ts > spec.stale_after_s
        )
        if not future and (s.newest_ts is None or reading.ts > s.newest_ts):
            s.newest_ts = reading.ts
        res.late = late
        res.reason = reason

        if late:
            if reason is None and res.level_mm is not None:
                res.accepted = res.stored = True
                self._add_point(reading.ts, res.level_mm)
            else:
                self._count(reason)
            return self._finish(res, start_status, start_siren, start_fast)

        self._health(reading, res.events)
        if reason is not None or res.level_mm is None:
            self._count(reason)
            return self._finish(res, start_status, start_siren, start_fast)
        self._filter_and_apply(reading.ts, res.level_mm, now, res)
        return self._finish(res, start_status, start_siren, start_fast)

    def check(self, now: float, listening_since: float | None = None) -> CheckResult:
        """The offline rule; call periodically (e.g. every few seconds).

        ``listening_since``: when the controller's broker link last came back
        after a loss. The time it could not hear does not count against a
        sensor: it gets the full 3 × interval from then (its backlog is on
        its way), so a broker outage raises no offline alert for every board."""
        s = self.state
        res = CheckResult(offline=s.offline)
        if s.last_heard is None:
            s.last_heard = now
            return res
        deadline = self.offline_at()
        if deadline is not None and listening_since is not None:
            deadline = max(deadline, listening_since + OFFLINE_FACTOR * self.expected_interval_s())
        if not s.offline and deadline is not None and now >= deadline:
            s.offline = res.offline = res.changed = True
            self._raise("offline", "offline", now, res.events)
        return res

    # ----------------------------------------------------------- internals

    def _finish(
        self, res: IngestResult, status: WaterStatus, siren: bool, fast: bool
    ) -> IngestResult:
        s = self.state
        res.status = s.status
        res.status_changed = s.status != status
        res.siren = s.siren_on if s.siren_on != siren else None
        res.config_changed = s.fast != fast
        res.rate_mm_h = s.rate_mm_h
        return res

    def _count(self, reason: str | None) -> None:
        key = reason or "no_distance"
        self.state.rejected[key] = self.state.rejected.get(key, 0) + 1

    def _health(self, reading: Reading, events: list[AlertEvent]) -> None:
        spec, s = self.spec, self.state
        t = float(reading.ts)
        if reading.batt_mv is not None:
            if reading.batt_mv < spec.battery_low_mv:
                self._raise("battery_low", "low", t, events)
            elif reading.batt_mv >= spec.battery_low_mv + spec.battery_hysteresis_mv:
                self._clear("battery_low", t, events)
        if reading.err == "no_echo":
            s.no_echo_run += 1
            if s.no_echo_run >= spec.no_echo_alert_after:
                self._raise("no_echo", "no_echo", t, events)
        elif reading.err is None and self.level_of(reading) is not None:
            s.no_echo_run = 0
            self._clear("no_echo", t, events)

    def _predict(self, t: int) -> float | None:
        s = self.state
        if s.level_mm is None or s.ts is None:
            return None
        slope = (s.rate_mm_h or 0.0) / 3600.0
        return s.level_mm + slope * (t - s.ts)

    def _filter_and_apply(self, t: int, level: int, now: float, res: IngestResult) -> None:
        spec, s = self.spec, self.state
        if s.level_mm is not None and s.ts is not None and level > s.level_mm:
            if (level - s.level_mm) / max(t - s.ts, 1) > spec.max_rise_mm_s:
                res.reason = "suspect_rise"
                res.stored = True
                self._count(res.reason)
                return
        if s.held is not None:
            held, s.held = s.held, None
            expected = self._predict(t)
            spike = expected is not None and abs(level - expected) < abs(level - held.level_mm)
            res.verdict = Verdict(held.ts, held.level_mm, accepted=not spike)
            if not spike:
                self._apply(held.ts, held.level_mm, now, res)
        expected = self._predict(t)
        continuous = s.ts is not None and t - s.ts <= spec.gap_s
        if expected is not None and continuous and abs(level - expected) > spec.spike_mm:
            s.held = Held(t, level)
            res.reason = "suspect_spike"
            res.stored = True
            self._count(res.reason)
            return
        self._apply(t, level, now, res)
        res.accepted = res.stored = True

    def _apply(self, t: int, level: int, now: float, res: IngestResult) -> None:
        """Act on an accepted live level at reading time ``t``."""
        spec, s = self.spec, self.state
        continuous = s.ts is not None and t - s.ts <= spec.gap_s
        hyst, hold = spec.hysteresis_mm, spec.hold_s
        old = s.status
        new: WaterStatus = "normal"
        for status in _WARNINGS:
            thr = spec.thresholds.of(status)
            s.latches[status].update(level, thr, thr - hyst, hold, t, continuous)
            if s.latches[status].on:
                new = status
        s.status = new
        if new != old:
            if new == "normal":
                self._clear("level", t, res.events)
            else:
                self._raise("level", new, t, res.events)

        siren = spec.siren_level_mm
        s.siren_latch.update(level, siren, siren - hyst, hold, t, continuous)
        s.siren_on = s.siren_latch.on

        s.level_mm, s.ts = level, t
        self._add_point(t, level)
        s.rate_mm_h = rate = self._rate()
        if spec.rate_alert_mm_h is not None and rate is not None:
            limit = spec.rate_alert_mm_h
            if s.rate_latch.update(rate, limit, limit * spec.rate_clear_ratio, hold, t, continuous):
                if s.rate_latch.on:
                    self._raise("rate", "rising", t, res.events)
                else:
                    self._clear("rate", t, res.events)

        rising = rate is not None and rate >= spec.rising_mm_h
        calm = rate is None or rate < spec.rising_mm_h / 2
        fast = new != "normal" or rising or (s.fast and not calm)
        if fast and (not s.fast or s.fast_since is None):
            s.fast_since = now
        s.fast = fast

    def refresh_rate(self) -> None:
        """Fit the rate of rise again from the window (after a restore)."""
        self.state.rate_mm_h = self._rate()

    def _rate(self) -> float | None:
        spec, w = self.spec, self.state.window
        if not w:
            return None
        newest = w[-1][0]
        start = bisect.bisect_left(w, (newest - spec.rate_window_s, _LOWEST))
        if len(w) - start < spec.rate_min_points:
            start = max(0, len(w) - spec.rate_min_points)
            if newest - w[start][0] > _LOOKBACK * spec.rate_window_s:
                return None
        return robust_rate_mm_h(
            w[start:], spec.rate_min_points, spec.rate_min_span_s, spec.rate_max_points
        )

    def _add_point(self, t: int, level: int) -> None:
        w = self.state.window
        bisect.insort(w, (t, level))
        horizon = w[-1][0] - _LOOKBACK * self.spec.rate_window_s
        drop = bisect.bisect_left(w, (horizon, _LOWEST))
        drop = max(drop, len(w) - _MAX_WINDOW_POINTS)
        if drop > 0:
            del w[:drop]

    def _raise(self, kind: AlertKind, level: str, t: float, events: list[AlertEvent]) -> None:
        raised = self.state.raised
        if raised.get(kind) == level:
            return
        action: Literal["raise", "update"] = "update" if kind in raised else "raise"
        raised[kind] = level
        events.append(AlertEvent(action, kind, self.spec.id, level, t))

    def _clear(self, kind: AlertKind, t: float, events: list[AlertEvent]) -> None:
        if self.state.raised.pop(kind, None) is not None:
            events.append(AlertEvent("clear", kind, self.spec.id, None, t))
