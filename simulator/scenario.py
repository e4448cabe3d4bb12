"""Scenario files: what happens around the boards, as readable TOML (simulator/scenarios/).

A scenario names a site, a start time and a length, and then any of:
citizens arriving at the kiosks and staff serving them (`[citizens]`,
`[staff]`), a flood passing the water sensors (`[flood]`), and timed steps
(`[[steps]]`: faults and changes to the virtual hardware). `load_scenario`
validates a file and raises `ScenarioError` naming each problem with its
place (`citizens.services[2].no_show: must be between 0 and 1`); the engine
that runs it is simulator/engine.py.
"""

from __future__ import annotations

import math
import os
import tomllib
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

Share = Annotated[float, Field(ge=0, le=1)]
Minutes = Annotated[float, Field(ge=0)]


def _clock(value: Any) -> time:
    if not isinstance(value, str):
        raise ValueError('a time of day "HH:MM"')
    try:
        h, m = value.split(":")
        return time(int(h), int(m))
    except ValueError:
        raise ValueError(f'a time of day "HH:MM", not "{value}"') from None


def minute_of_day(t: time) -> float:
    """Minutes since midnight."""
    return t.hour * 60 + t.minute + t.second / 60


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Meta(_Model):
    """[scenario]"""

    name: str
    title: str = ""
    site: str | None = None
    """The site whose kiosks and counters the citizens and staff use."""
    start: time | None = None
    """Local time of day (on a weekday) the scenario clock starts at; None: now."""
    minutes: Annotated[float, Field(gt=0)]
    seed: int = 1

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, v: Any) -> Any:
        return None if v is None else _clock(v)


class ServiceLoad(_Model):
    """[[citizens.services]]: demand for one service and how long serving it takes."""

    code: str
    per_hour: Annotated[float, Field(ge=0)]
    """Arrivals per hour when the profile is 1.0."""
    profile: list[tuple[str, float]] | None = None
    """This service's own profile (else the [citizens] one)."""
    service_min: tuple[float, float, float]
    """Minutes at the counter: shortest, most common, longest (a triangular distribution)."""
    no_show: Share = 0.0
    transfer: Share = 0.0
    transfer_to: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ServiceLoad:
        lo, mode, hi = self.service_min
        if not 0 < lo <= mode <= hi:
            raise ValueError("service_min must be [shortest, typical, longest] with 0 < shortest <= typical <= longest")
        if self.transfer > 0 and not self.transfer_to:
            raise ValueError("transfer > 0 needs transfer_to (the service code to move the ticket to)")
        return self


def _profile(value: Any) -> list[tuple[time, float]]:
    out: list[tuple[time, float]] = []
    for i, row in enumerate(value):
        if not (isinstance(row, list | tuple) and len(row) == 2 and isinstance(row[1], int | float)):
            raise ValueError(f'[{i}]: each row is ["HH:MM", factor]')
        if row[1] < 0:
            raise ValueError(f"[{i}]: factor {row[1]} is below 0")
        t = _clock(row[0])
        if out and t <= out[-1][0]:
            raise ValueError(f"[{i}]: {row[0]} is not after {out[-1][0]:%H:%M} (rows go in time order)")
        out.append((t, float(row[1])))
    return out


class Citizens(_Model):
    """[citizens]"""

    profile: list[tuple[str, float]] = [("00:00", 1.0)]
    """Piecewise constant: from each time on, arrivals are per_hour x factor."""
    prio: Share = 0.0
    """Share of citizens who press the priority button first (lansia, disabilitas, ibu hamil)."""
    rating: Share = 0.0
    """Share of citizens who rate the service on the counter keypad."""
    scores: list[Annotated[int, Field(ge=1, le=4)]] = [4, 4, 3, 4, 2]
    """Scores drawn from (each equally likely)."""
    patience_min: Annotated[float, Field(gt=0)] = 15
    """How long a citizen waits at a kiosk for a slip before giving up."""
    services: list[ServiceLoad]

    @field_validator("profile")
    @classmethod
    def _check_profile(cls, v: list[tuple[str, float]]) -> list[tuple[str, float]]:
        _profile(v)
        return v

    def profile_of(self, svc: ServiceLoad) -> list[tuple[time, float]]:
        """The profile rows that apply to a service, as times."""
        return _profile(svc.profile if svc.profile is not None else self.profile)


class Staff(_Model):
    """[staff]: how counter staff work their keys."""

    walk_s: tuple[float, float, float] = (10, 25, 60)
    """Seconds from the call until the citizen is at the counter (triangular)."""
    recall_after_s: Annotated[float, Field(gt=0)] = 60
    skip_after_s: Annotated[float, Field(gt=0)] = 120
    idle_s: Annotated[float, Field(gt=0)] = 30
    """Nobody waiting: press next again after this long."""
    first_call: time | None = None
    """Staff start calling at this local time (None: at once)."""

    @field_validator("first_call", mode="before")
    @classmethod
    def _first(cls, v: Any) -> Any:
        return None if v is None else _clock(v)

    @model_validator(mode="after")
    def _check(self) -> Staff:
        if self.skip_after_s <= self.recall_after_s:
            raise ValueError("skip_after_s must be above recall_after_s (recall first, then skip)")
        lo, mode, hi = self.walk_s
        if not 0 <= lo <= mode <= hi:
            raise ValueError("walk_s must be [shortest, typical, longest]")
        return self


class FloodSensor(_Model):
    """[[flood.sensors]]: the wave as one water sensor sees it."""

    device: str
    base_mm: Annotated[float, Field(ge=0)]
    rise_mm: Annotated[float, Field(gt=0)]
    lag_min: Minutes = 0
    """Travel time of the wave from the first sensor."""


class Flood(_Model):
    """[flood]: a flash-flood hydrograph: steady, rising, peak, falling, steady."""

    start: time
    rise_min: Annotated[float, Field(gt=0)]
    peak_min: Minutes = 0
    fall_min: Annotated[float, Field(gt=0)]
    noise_mm: Annotated[float, Field(ge=0)] = 5
    sensors: list[FloodSensor]

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, v: Any) -> Any:
        return _clock(v)

    def level(self, s: FloodSensor, minute: float) -> float:
        """The level (mm) at sensor s, `minute` minutes after the flood's start (cosine rise and fall)."""
        u = minute - s.lag_min
        if u <= 0:
            return s.base_mm
        if u < self.rise_min:
            return s.base_mm + s.rise_mm * (1 - math.cos(math.pi * u / self.rise_min)) / 2
        u -= self.rise_min
        if u < self.peak_min:
            return s.base_mm + s.rise_mm
        u -= self.peak_min
        if u < self.fall_min:
            return s.base_mm + s.rise_mm * (1 + math.cos(math.pi * u / self.fall_min)) / 2
        return s.base_mm


StepKind = Literal["restart_broker", "restart_controller", "reboot", "wifi", "echo", "battery"]
DEVICE_STEPS = ("reboot", "wifi", "echo", "battery")


class Step(_Model):
    """[[steps]]: one timed event."""

    at: time
    do: StepKind
    device: str | None = None
    for_min: Annotated[float, Field(gt=0)] | None = None
    """wifi: how long it stays down; echo: how long the echo is bad (then as before)."""
    drop_rate: Share | None = None
    noise_mm: Annotated[float, Field(ge=0)] | None = None
    mv: Annotated[float, Field(gt=0)] | None = None
    drain_mv_per_h: Annotated[float, Field(ge=0)] | None = None
    note: str = ""

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, v: Any) -> Any:
        return _clock(v)

    @model_validator(mode="after")
    def _check(self) -> Step:
        if self.do in DEVICE_STEPS and not self.device:
            raise ValueError(f'"{self.do}" needs device')
        if self.do not in DEVICE_STEPS and self.device:
            raise ValueError(f'"{self.do}" takes no device')
        if self.do == "wifi" and self.for_min is None:
            raise ValueError('"wifi" needs for_min (how long the WiFi is gone)')
        if self.do == "battery" and self.mv is None:
            raise ValueError('"battery" needs mv')
        if self.do == "echo" and self.drop_rate is None and self.noise_mm is None:
            raise ValueError('"echo" needs drop_rate or noise_mm')
        return self


class Scenario(_Model):
    """A whole scenario file."""

    scenario: Meta
    citizens: Citizens | None = None
    staff: Staff = Staff()
    flood: Flood | None = None
    steps: list[Step] = []
    source: str = ""

    def minute(self, t: time) -> float:
        """Minutes from the scenario's start to local time t (the start itself: now)."""
        start = self.scenario.start
        return minute_of_day(t) - (minute_of_day(start) if start is not None else 0.0)

    @model_validator(mode="after")
    def _times(self) -> Scenario:
        problems = []
        if self.scenario.start is None and (self.steps or self.flood or self.staff.first_call):
            problems.append("scenario.start: needed when steps, a flood or staff.first_call give times of day")
        for i, st in enumerate(self.steps):
            if self.scenario.start is not None and self.minute(st.at) < 0:
                problems.append(f"steps[{i}].at: {st.at:%H:%M} is before the start ({self.scenario.start:%H:%M})")
        if self.flood is not None and self.scenario.start is not None and self.minute(self.flood.start) < 0:
            problems.append(f"flood.start: {self.flood.start:%H:%M} is before the scenario's start")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ScenarioError(Exception):
    """A scenario file that cannot be used; `errors` are 'place: problem' lines."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))


def _place(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith("function-"):  # a validator's name, not a place in the file
            out += ("." if out else "") + str(part)
    return out


def parse_scenario(text: str, source: str = "<string>") -> Scenario:
    """Validate scenario TOML text; `source` names it in error lines."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(source, [f"TOML syntax error: {e}"]) from None
    data["source"] = source
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (misspelt?)"
            elif err["type"] == "missing":
                msg = "missing"
            place = _place(tuple(err["loc"]))
            errors.append(f"{place}: {msg}" if place else msg)
        raise ScenarioError(source, errors) from None


def scenario_path(name: str) -> Path:
    """A bundled scenario's file (simulator/scenarios/NAME.toml), or NAME itself when it is a path."""
    if name.endswith(".toml") or os.sep in name:
        return Path(name)
    return SCENARIO_DIR / f"{name}.toml"


def bundled() -> list[str]:
    """Names of the bundled scenarios."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(name: str) -> Scenario:
    """A bundled scenario by name, or a scenario file by path; ScenarioError when it is bad."""
    path = scenario_path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = f" (bundled: {', '.join(bundled())})" if not path.exists() else ""
        raise ScenarioError(str(path), [f"no such scenario file{hint}"]) from None
    except OSError as e:
        raise ScenarioError(str(path), [f"cannot read: {e.strerror or e}"]) from None
    return parse_scenario(text, str(path))


def check_against(sc: Scenario, cfg: Any) -> list[str]:
    """Problems between a scenario and a site config (devices, site, services it names)."""
    problems = []
    ids = {d.id for d in cfg.devices}
    site = sc.scenario.site
    if site is not None and cfg.site(site) is None:
        problems.append(f'scenario.site: no site "{site}" in the config')
    if sc.citizens is not None and site is not None and cfg.site(site) is not None:
        codes = {s.code for s in cfg.site(site).services}
        for i, svc in enumerate(sc.citizens.services):
            if svc.code not in codes:
                problems.append(f'citizens.services[{i}].code: no service "{svc.code}" at site "{site}"')
            if svc.transfer_to and svc.transfer_to not in codes:
                problems.append(f'citizens.services[{i}].transfer_to: no service "{svc.transfer_to}" at site "{site}"')
    if sc.flood is not None:
        for i, fs in enumerate(sc.flood.sensors):
            dev = cfg.device(fs.device)
            if dev is None or dev.role != "water":
                problems.append(f'flood.sensors[{i}].device: no water device "{fs.device}" in the config')
    for i, st in enumerate(sc.steps):
        if st.device is not None and st.device not in ids:
            problems.append(f'steps[{i}].device: no device "{st.device}" in the config')
    return problems
