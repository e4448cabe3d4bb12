"""The site config: which sites, services, counters and boards exist (CONTRACT §6).

`load_config(path)` (or `parse_config(text)`) returns a `SiteConfig`; a bad file
raises `ConfigError`, whose `errors` name every problem with its place in the
file, e.g. `kota-blitar.toml:57: devices[3].counter: no counter "9" at site
"blitar-mpp"`. `sigap check FILE` runs `check_main`.

Checking happens in three layers, all reported together:
1. TOML syntax (tomllib), with the line of the error;
2. each table's keys and value types (pydantic, strict: `quota = "80"` is an
   error, not silently 80), every site, service, counter and device on its
   own, so one mistake hides no other;
3. rules between fields (`open < close`, thresholds in order) and between
   tables (a counter board's counter exists at its site, ids are unique).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeAlias, get_args, get_origin, overload
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

DEMO_CONFIG = Path(__file__).parent / "sites" / "kota-blitar.toml"
"""The bundled Kota Blitar demo site config (used by `sigap demo`)."""

ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
"""Device and site ids (CONTRACT §1): also MQTT client ids and usernames."""
CONTROLLER_CLIENT_ID = "sigap-controller"
"""The controller's MQTT client id under the default prefix; a board with this id would take over its session."""
SERVICE_CODE_RE = re.compile(r"[A-Z]{1,2}")
COUNTER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,7}")
PREFIX_RE = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")
ALL_DAYS = (1, 2, 3, 4, 5, 6, 7)
"""ISO weekdays, 1 = Monday … 7 = Sunday; a service with no `days` is open on all of them."""

Role = Literal["kiosk", "counter", "display", "water"]
ROLES: tuple[Role, ...] = ("kiosk", "counter", "display", "water")

Loc: TypeAlias = tuple[str | int, ...]
_COLLECT = "sigap_collect"  # validation context flag: report rule problems instead of raising


# ---------------------------------------------------------------- value checks


def _fail(message: str) -> PydanticCustomError:
    # The message goes through the context so braces in user values stay literal.
    return PydanticCustomError("sigap", "{message}", {"message": message})


def _show(value: Any) -> str:
    """A value as the user wrote it in TOML, short enough for one error line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:37] + "...", ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, time | date | datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing"
    return type(value).__name__


def _matching(regex: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise _fail(f"{_show(value)} is not {what}")
        return value

    return check


def _not_blank(value: str) -> str:
    if not value.strip():
        raise _fail("must not be empty")
    return value


def _unique_items(values: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise _fail(f"{_show(v)} is listed twice")
        seen.add(v)
    return values


def _clock_time(value: Any) -> Any:
    if isinstance(value, time):  # an unquoted TOML local time, 08:00:00
        return value
    if not isinstance(value, str):
        raise _fail(f'expected a time "HH:MM" in quotes, got {_show(value)}')
    if not re.fullmatch(r"\d\d:\d\d", value):
        raise _fail(f"{_show(value)} is not HH:MM")
    try:
        return time(int(value[:2]), int(value[3:]))
    except ValueError:
        raise _fail(f"{_show(value)} is not a time of day (00:00 … 23:59)") from None


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _fail(
            f'{_show(value)} is not a known time zone (an IANA name such as "Asia/Jakarta")'
        ) from None
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _fail(f"{_show(value)} is not an http:// or https:// address")
    return value.rstrip("/")


Text = Annotated[str, AfterValidator(_not_blank)]
DeviceId = Annotated[
    str,
    AfterValidator(
        _matching(ID_RE, 'a valid id: a-z, 0-9 and "-", at most 32, not starting with "-"')
    ),
]
SiteId = DeviceId
ServiceCode = Annotated[
    str,
    AfterValidator(
        _matching(SERVICE_CODE_RE, "a service code: one or two capital letters (A, B, … AA)")
    ),
]
CounterId = Annotated[
    str,
    AfterValidator(
        _matching(COUNTER_ID_RE, 'a counter id: letters, digits and "-", at most 8 (e.g. "3")')
    ),
]
ClockTime = Annotated[time, BeforeValidator(_clock_time)]
Weekday = Annotated[int, Field(ge=1, le=7)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


# ---------------------------------------------------------------- models


class _Table(BaseModel):
    """Base of every config table: unknown keys are errors, values are never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    def _own_problems(self) -> list[tuple[Loc, str]]:
        """Problems between this table's own fields, as (place within the table, message)."""
        return []

    @model_validator(mode="after")
    def _apply_rules(self, info: ValidationInfo) -> Self:
        # The loader collects every problem itself (context flag); a direct
        # `Model(...)` or `model_validate` raises on the first one.
        if not (isinstance(info.context, dict) and info.context.get(_COLLECT)):
            for loc, message in self._own_problems():
                raise _fail(f"{_place(loc)}: {message}")
        return self


class SigapSection(_Table):
    """`[sigap]`: settings of the whole installation."""

    prefix: Annotated[
        str,
        AfterValidator(
            _matching(PREFIX_RE, 'an MQTT topic prefix (e.g. "sigap" or "blitar/sigap")')
        ),
    ] = "sigap"
    public_url: Annotated[str, AfterValidator(_http_url)] = "http://127.0.0.1:8000"
    """Base of ticket status links, without a trailing slash."""
    webhooks: list[Annotated[str, AfterValidator(_http_url)]] = []
    """URLs that receive every alert change as a JSON POST."""
    raw_retention_days: PositiveInt = 90
    """Raw water readings older than this are deleted; 5-minute aggregates are kept."""


class Service(_Table):
    """`[[sites.services]]`: one service a site offers, with its kiosk button code."""

    code: ServiceCode
    name: Text
    agency: Text
    open: ClockTime
    close: ClockTime
    quota: PositiveInt | None = None
    """Tickets per local day; None means no limit."""
    sla_min: PositiveInt | None = None
    """Service standard (standar pelayanan) in minutes."""
    days: Annotated[list[Weekday], Field(min_length=1), AfterValidator(_unique_items)] = Field(
        default_factory=lambda: list(ALL_DAYS)
    )
    """ISO weekdays it is open (1 = Monday … 7 = Sunday); all seven when not given."""

    def _own_problems(self) -> list[tuple[Loc, str]]:
        if self.close <= self.open:
            return [
                (
                    ("close",),
                    f'"{self.close:%H:%M}" is not after open "{self.open:%H:%M}"',
                )
            ]
        return []

    def is_open_at(self, local: datetime) -> bool:
        """True when a ticket may be issued at `local` (a time in the site's zone)."""
        return local.isoweekday() in self.days and self.open <= local.time() < self.close


class Counter(_Table):
    """`[[sites.counters]]`: a loket, and the services whose tickets it calls."""

    id: CounterId
    name: Text
    services: Annotated[list[ServiceCode], Field(min_length=1), AfterValidator(_unique_items)]


class Site(_Table):
    """`[[sites]]`: a place: an MPP with services and counters, or a city with sensors."""

    id: SiteId
    name: Text
    timezone: Annotated[str, AfterValidator(_time_zone)] = "Asia/Jakarta"
    services: list[Service] = []
    counters: list[Counter] = []

    @property
    def tz(self) -> ZoneInfo:
        """The site's time zone (local day, opening hours)."""
        return ZoneInfo(self.timezone)

    def service(self, code: str) -> Service | None:
        """The service with this code, or None."""
        return next((s for s in self.services if s.code == code), None)

    def counter(self, counter_id: str) -> Counter | None:
        """The counter with this id, or None."""
        return next((c for c in self.counters if c.id == counter_id), None)


class _DeviceBase(_Table):
    id: DeviceId
    site: str
    name: str = ""
    """Optional for people (required for water sensors)."""


class KioskDevice(_DeviceBase):
    """A ticket kiosk: one button per service code, optionally a priority button."""

    role: Literal["kiosk"] = "kiosk"
    services: Annotated[list[ServiceCode], Field(min_length=1), AfterValidator(_unique_items)]
    prio_button: bool = True
    """Has a button for priority tickets (lansia, disabilitas, ibu hamil)."""


class CounterDevice(_DeviceBase):
    """A counter board (next/recall/skip/done… buttons, rating keypad) at one loket."""

    role: Literal["counter"] = "counter"
    counter: str


class DisplayDevice(_DeviceBase):
    """A display: the numbers of some counters, or (`hall = true`) the hall's latest calls."""

    role: Literal["display"] = "display"
    counters: Annotated[list[str], AfterValidator(_unique_items)] = []
    hall: bool = False

    def _own_problems(self) -> list[tuple[Loc, str]]:
        if self.hall and self.counters:
            return [(("hall",), "a display shows either its counters or the hall, not both")]
        if not self.hall and not self.counters:
            return [(("counters",), "missing: list the counters it shows, or set hall = true")]
        return []


class Thresholds(_Table):
    """Water levels (mm above the gauge's zero) where each warning status begins."""

    waspada: PositiveInt
    siaga: PositiveInt
    awas: PositiveInt


class WaterDevice(_DeviceBase):
    """A water-level sensor (ultrasonic, looking down at the river), maybe with a siren."""

    role: Literal["water"] = "water"
    name: Text
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    mount_mm: PositiveInt
    """Distance from the sensor face to the gauge's zero: level_mm = mount_mm - dist_mm."""
    interval_s: PositiveInt = 300
    fast_interval_s: PositiveInt = 30
    """Reading interval once the level is at waspada or above."""
    thresholds_mm: Thresholds
    hysteresis_mm: NonNegativeInt = 50
    hold_s: NonNegativeInt = 600
    siren_mm: PositiveInt | None = None
    """Level that sounds the siren; the awas threshold when not given (`siren_level_mm`)."""
    sirens: Annotated[list[str], AfterValidator(_unique_items)] = []
    """Other boards whose siren follows this sensor."""
    rate_alert_mm_h: PositiveInt | None = None
    """Alert when the level rises faster than this; None: no rate alert."""
    sleep: bool = False
    """A battery board: deep sleep between readings (it is judged by its readings, not its link)."""
    ranger: Literal["a02yyuw", "jsn-sr04t"] = "a02yyuw"
    """Which ultrasonic sensor is fitted (hardware/water.md): the board builds its driver from this."""

    @property
    def siren_level_mm(self) -> int:
        """Level at which this sensor's siren(s) sound."""
        return self.siren_mm if self.siren_mm is not None else self.thresholds_mm.awas

    def _own_problems(self) -> list[tuple[Loc, str]]:
        out: list[tuple[Loc, str]] = []
        t = self.thresholds_mm
        if t.siaga <= t.waspada:
            out.append(
                (("thresholds_mm", "siaga"), f"{t.siaga} must be above waspada ({t.waspada})")
            )
        if t.awas <= t.siaga:
            out.append((("thresholds_mm", "awas"), f"{t.awas} must be above siaga ({t.siaga})"))
        if t.awas >= self.mount_mm:
            out.append(
                (
                    ("thresholds_mm", "awas"),
                    f"{t.awas} must be below mount_mm ({self.mount_mm}): the level cannot reach the sensor",
                )
            )
        if self.fast_interval_s > self.interval_s:
            out.append(
                (
                    ("fast_interval_s",),
                    f"{self.fast_interval_s} must not exceed interval_s ({self.interval_s})",
                )
            )
        if self.hysteresis_mm >= t.waspada:
            out.append(
                (("hysteresis_mm",), f"{self.hysteresis_mm} must be below waspada ({t.waspada})")
            )
        if self.siren_mm is not None and self.siren_mm >= self.mount_mm:
            out.append((("siren_mm",), f"{self.siren_mm} must be below mount_mm ({self.mount_mm})"))
        for k, target in enumerate(self.sirens):
            if target == self.id:
                out.append(
                    (("sirens", k), "lists the sensor itself; its own siren follows it already")
                )
        return out


Device = Annotated[
    KioskDevice | CounterDevice | DisplayDevice | WaterDevice,
    Field(discriminator="role"),
]
DEVICE_MODELS: dict[str, type[KioskDevice | CounterDevice | DisplayDevice | WaterDevice]] = {
    "kiosk": KioskDevice,
    "counter": CounterDevice,
    "display": DisplayDevice,
    "water": WaterDevice,
}


class SiteConfig(_Table):
    """The whole site config file: `[sigap]`, `[[sites]]`, `[[devices]]`."""

    sigap: SigapSection = Field(default_factory=SigapSection)
    sites: Annotated[list[Site], Field(min_length=1)]
    devices: list[Device] = []
    _path: Path | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path | None:
        """The file it was loaded from (absolute), None when built from text or a dict."""
        return self._path

    def site(self, site_id: str) -> Site | None:
        """The site with this id, or None."""
        return next((s for s in self.sites if s.id == site_id), None)

    def device(self, device_id: str) -> Device | None:
        """The registered device with this id, or None (an unknown board)."""
        # An index, not a scan: this runs for every message (5,000 sensors make a scan costly).
        # Kept in the instance's __dict__ (cached_property), not as a pydantic private
        # attribute: reading one of those goes through BaseModel.__getattr__ on every call.
        by_id = self.device_index
        if len(by_id) != len(self.devices):
            by_id = self.__dict__["device_index"] = {d.id: d for d in self.devices}
        return by_id.get(device_id)

    @cached_property
    def device_index(self) -> dict[str, Device]:
        """Registered devices by id (see device())."""
        return {d.id: d for d in self.devices}

    def service(self, site_id: str, code: str) -> Service | None:
        """Service `code` at site `site_id`, or None."""
        site = self.site(site_id)
        return site.service(code) if site else None

    def counter(self, site_id: str, counter_id: str) -> Counter | None:
        """Counter `counter_id` at site `site_id`, or None."""
        site = self.site(site_id)
        return site.counter(counter_id) if site else None

    @overload
    def devices_by_role(self, role: Literal["kiosk"]) -> list[KioskDevice]: ...
    @overload
    def devices_by_role(self, role: Literal["counter"]) -> list[CounterDevice]: ...
    @overload
    def devices_by_role(self, role: Literal["display"]) -> list[DisplayDevice]: ...
    @overload
    def devices_by_role(self, role: Literal["water"]) -> list[WaterDevice]: ...
    def devices_by_role(self, role: str) -> list[Any]:
        """The devices of one role, in file order."""
        return [d for d in self.devices if d.role == role]

    def devices_at(self, site_id: str) -> list[Device]:
        """The devices of one site, in file order."""
        return [d for d in self.devices if d.site == site_id]

    def summary(self) -> str:
        """One line of counts, e.g. `2 sites, 8 services, 12 counters, 31 devices (…)`."""
        services = sum(len(s.services) for s in self.sites)
        counters = sum(len(s.counters) for s in self.sites)
        roles = [(r, sum(1 for d in self.devices if d.role == r)) for r in ROLES]
        by_role = ", ".join(f"{n} {r}" for r, n in roles if n)
        return (
            f"{_count(len(self.sites), 'site')}, {_count(services, 'service')}, "
            f"{_count(counters, 'counter')}, {_count(len(self.devices), 'device')}"
            + (f" ({by_role})" if by_role else "")
        )

    def _own_problems(self) -> list[tuple[Loc, str]]:
        return _cross_problems(self.model_dump())


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# ---------------------------------------------------------------- rules across tables


def _cross_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Problems between tables: unique ids and references that must exist.

    Works on the parsed file (or a model dump), skipping any value of the wrong
    type: that was already reported by its table's own validation, and a table
    that failed its own checks still declares its id for references to it.
    """
    out: list[tuple[Loc, str]] = []
    # site id -> ({service code: index}, {counter id: index})
    sites: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
    site_at: dict[str, int] = {}
    for i, site in _tables(data.get("sites")):
        at: Loc = ("sites", i)
        codes = _first_seen(site.get("services"), "code", at + ("services",), out)
        counters = _first_seen(site.get("counters"), "id", at + ("counters",), out)
        site_id = site.get("id")
        name = _show(site_id)
        for j, table in _tables(site.get("counters")):
            for k, code in _strings(table.get("services")):
                if code not in codes:
                    loc = at + ("counters", j, "services", k)
                    out.append((loc, f"no service {_show(code)} at site {name}"))
        if isinstance(site_id, str):
            if site_id in site_at:
                out.append((at + ("id",), f"{name} is already the id of sites[{site_at[site_id]}]"))
            else:
                site_at[site_id] = i
                sites[site_id] = (codes, counters)

    device_at = _first_seen(data.get("devices"), "id", ("devices",), out)
    if CONTROLLER_CLIENT_ID in device_at:
        out.append((("devices", device_at[CONTROLLER_CLIENT_ID], "id"),
                    f"{_show(CONTROLLER_CLIENT_ID)} is the controller's MQTT client id; give the board another id"))
    for i, device in _tables(data.get("devices")):
        at = ("devices", i)
        site_id = device.get("site")
        if not isinstance(site_id, str):
            continue
        if site_id not in sites:
            out.append((at + ("site",), f"no site {_show(site_id)}{_did_you_mean(site_id, sites)}"))
            continue
        codes, counters = sites[site_id]
        where = f"at site {_show(site_id)}"
        role = device.get("role")
        if role == "kiosk":
            for k, code in _strings(device.get("services")):
                if code not in codes:
                    out.append((at + ("services", k), f"no service {_show(code)} {where}"))
        elif role == "counter":
            counter_id = device.get("counter")
            if isinstance(counter_id, str) and counter_id not in counters:
                out.append((at + ("counter",), f"no counter {_show(counter_id)} {where}"))
        elif role == "display":
            for k, counter_id in _strings(device.get("counters")):
                if counter_id not in counters:
                    out.append((at + ("counters", k), f"no counter {_show(counter_id)} {where}"))
        elif role == "water":
            for k, target in _strings(device.get("sirens")):
                if target not in device_at:
                    hint = _did_you_mean(target, device_at)
                    out.append((at + ("sirens", k), f"no device {_show(target)}{hint}"))
    return out


def _tables(value: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(index, table) for each table in a list of tables; anything else is skipped."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                yield i, item


def _strings(value: Any) -> Iterator[tuple[int, str]]:
    """(index, text) for each string in a list; anything else is skipped."""
    if isinstance(value, list):
        for k, item in enumerate(value):
            if isinstance(item, str):
                yield k, item


def _first_seen(tables: Any, key: str, at: Loc, out: list[tuple[Loc, str]]) -> dict[str, int]:
    """{id: index of first table} for `key` in a list of tables; reports repeats to `out`."""
    first: dict[str, int] = {}
    for i, table in _tables(tables):
        value = table.get(key)
        if not isinstance(value, str):
            continue
        if value in first:
            out.append(
                (
                    at + (i, key),
                    f"{_show(value)} is already the {key} of {_place(at)}[{first[value]}]",
                )
            )
        else:
            first[value] = i
    return first


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean "x"?)` for the closest choice, or "" when none is close."""
    options = sorted(choices)
    match = difflib.get_close_matches(word, options, n=1, cutoff=0.75)
    if not match and len(word) >= 3:
        match = [c for c in options if c.startswith(word) or word.startswith(c)][:1]
    return f" (did you mean {_show(match[0])}?)" if match else ""


# ---------------------------------------------------------------- errors


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a site config: where (TOML path, file line) and what."""

    place: str
    """TOML path such as `devices[3].counter`; empty for the file as a whole."""
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.place}: {self.message}" if self.place else self.message


class ConfigError(Exception):
    """A site config that cannot be used; `errors` holds one line per problem."""

    def __init__(self, source: str, issues: Sequence[ConfigIssue]) -> None:
        self.source = source
        self.issues = list(issues)
        self.errors: list[str] = [
            f"{source}:{i.line}: {i}" if i.line is not None else f"{source}: {i}"
            for i in self.issues
        ]
        super().__init__("\n".join(self.errors))


def _place(loc: Loc) -> str:
    """('devices', 3, 'counter') → 'devices[3].counter'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = (
                part
                if re.fullmatch(r"[A-Za-z0-9_-]+", part)
                else json.dumps(part, ensure_ascii=False)
            )
            out += f".{key}" if out else key
    return out


def _plain_message(err: ErrorDetails, model: type[BaseModel]) -> str:
    """Pydantic's error as a short sentence for someone editing the TOML file."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = _show(err.get("input"))
    if kind == "sigap":
        return str(ctx.get("message", err["msg"]))
    if kind == "missing":
        return "missing (required)"
    if kind == "extra_forbidden":
        loc = err["loc"]
        known = _fields_at(model, loc[:-1])
        return "unknown key" + _did_you_mean(str(loc[-1]), set(known))
    simple = {
        "string_type": f"expected text in quotes, got {got}",
        "int_type": f"expected a whole number, got {got}",
        "float_type": f"expected a number, got {got}",
        "finite_number": f"expected a finite number, got {got}",
        "bool_type": f"expected true or false, got {got}",
        "list_type": f"expected a list [ … ], got {got}",
        "model_type": f"expected a table, got {got}",
        "model_attributes_type": f"expected a table, got {got}",
        "dict_type": f"expected a table, got {got}",
        "string_too_short": "must not be empty",
        "too_short": "must not be empty",
        "greater_than": f"must be greater than {_bound(ctx.get('gt'))}, got {got}",
        "greater_than_equal": f"must be at least {_bound(ctx.get('ge'))}, got {got}",
        "less_than": f"must be less than {_bound(ctx.get('lt'))}, got {got}",
        "less_than_equal": f"must be at most {_bound(ctx.get('le'))}, got {got}",
        "literal_error": f"must be {ctx.get('expected')}, got {got}",
    }
    if kind in simple:
        return simple[kind]
    return f"{err['msg'].replace('Input should be', 'should be')}, got {got}"


def _bound(limit: Any) -> str:
    """A constraint's limit as written in the schema: -90, not -90.0."""
    if isinstance(limit, float) and limit.is_integer():
        return str(int(limit))
    return str(limit)


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys allowed in the table at `loc` below `model` (for did-you-mean)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _inner_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _inner_model(annotation: Any) -> Any:
    """list[Site] → Site, Thresholds | None → Thresholds, Annotated[X, …] → X."""
    origin = get_origin(annotation)
    if origin is None:
        return annotation
    for arg in get_args(annotation):
        inner = _inner_model(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return None


# ---------------------------------------------------------------- file lines

_AOT_HEADER = re.compile(r"\s*\[\[\s*([^\[\]#]+?)\s*\]\]\s*(?:#.*)?")
_TABLE_HEADER = re.compile(r"\s*\[\s*([^\[\]#]+?)\s*\]\s*(?:#.*)?")


class _LineIndex:
    """Finds the file line of a TOML path by scanning table headers and keys.

    tomllib keeps no positions, so this reads the text again: the n-th
    `[[devices]]` header is `devices[n]`, a `counter = …` line inside it is
    `devices[n].counter`. Best effort: when unsure it gives the table's line.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.blocks: list[tuple[Loc, int]] = [((), 0)]  # (path, index of header line)
        arrays: dict[Loc, int] = {}
        in_string: str | None = None
        for n, line in enumerate(self.lines):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_string = quote
            if in_string is not None:
                continue
            if m := _AOT_HEADER.fullmatch(line):
                parent = self._resolve(_split_key(m.group(1))[:-1], arrays)
                array = parent + (_split_key(m.group(1))[-1],)
                arrays[array] = arrays.get(array, 0) + 1
                self.blocks.append((array + (arrays[array] - 1,), n))
            elif m := _TABLE_HEADER.fullmatch(line):
                self.blocks.append((self._resolve(_split_key(m.group(1)), arrays), n))

    @staticmethod
    def _resolve(parts: list[str], arrays: Mapping[Loc, int]) -> Loc:
        path: Loc = ()
        for part in parts:
            path = path + (part,)
            if path in arrays:
                path = path + (arrays[path] - 1,)
        return path

    def line_of(self, loc: Loc) -> int | None:
        """1-based line for `loc`, or None when the path has no table in the file."""
        if not loc:
            return None
        best = -1
        for b, (path, _n) in enumerate(self.blocks):
            if loc[: len(path)] == path and (best < 0 or len(path) > len(self.blocks[best][0])):
                best = b
        path, start = self.blocks[best]
        end = self.blocks[best + 1][1] if best + 1 < len(self.blocks) else len(self.lines)
        rest = loc[len(path) :]
        if rest and isinstance(rest[0], str):
            key = re.compile(r'\s*"?' + re.escape(rest[0]) + r'"?\s*[=.]')
            first = start + 1 if path else 0
            for n in range(first, end):
                if key.match(self.lines[n]):
                    return n + 1
        return start + 1 if path else None


def _split_key(dotted: str) -> list[str]:
    return [p.strip().strip("\"'") for p in dotted.split(".")]


# ---------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str]) -> SiteConfig:
    """Read and validate a site config file; raises ConfigError naming every problem."""
    source = os.fspath(path)
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, [ConfigIssue("", "no such file")]) from None
    except IsADirectoryError:
        raise ConfigError(
            source, [ConfigIssue("", "is a directory, not a site config file")]
        ) from None
    except OSError as e:
        raise ConfigError(source, [ConfigIssue("", f"cannot read: {e.strerror or e}")]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(source, [ConfigIssue("", "not UTF-8 text", line)]) from None
    config = parse_config(text, source)
    config._path = file.resolve()
    return config


def parse_config(text: str, source: str = "<string>") -> SiteConfig:
    """Validate site config TOML text; `source` names it in error lines."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        line, detail = _syntax_position(str(e), text)
        raise ConfigError(source, [ConfigIssue("", f"TOML syntax error: {detail}", line)]) from None
    return _build(data, source, _LineIndex(text))


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> SiteConfig:
    """Validate a site config given as parsed TOML (a dict); for tests and tools."""
    return _build(data, source, None)


def _syntax_position(message: str, text: str) -> tuple[int | None, str]:
    if m := re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.S):
        return int(m.group(2)), f"{m.group(1)} (column {m.group(3)})"
    if m := re.fullmatch(r"(.*) \(at end of document\)", message, re.S):
        return max(1, len(text.splitlines())), f"{m.group(1)} (at end of file)"
    return None, message


def _build(data: Mapping[str, Any], source: str, lines: _LineIndex | None) -> SiteConfig:
    """Check every table on its own, then the rules across tables; all problems together."""
    problems: list[tuple[Loc, str]] = []
    context = {_COLLECT: True}

    def validate(model: type[_Table], raw: Any, at: Loc) -> None:
        try:
            table = model.model_validate(raw, context=context)
        except ValidationError as e:
            problems.extend(_pydantic_problems(e, model, at))
        else:
            problems.extend(_rule_problems(table, at))

    def tables(key: Loc, value: Any, what: str) -> list[Any]:
        if isinstance(value, list):
            return value
        problems.append((key, f"expected {what} tables, got {_show(value)}"))
        return []

    for key in data:
        if key not in SiteConfig.model_fields:
            hint = _did_you_mean(key, set(SiteConfig.model_fields))
            problems.append(((key,), f"unknown key{hint}"))

    validate(SigapSection, data.get("sigap", {}), ("sigap",))

    raw_sites = data.get("sites")
    if raw_sites is None or raw_sites == []:
        problems.append((("sites",), "missing: the file needs at least one [[sites]] table"))
    for i, site in enumerate(tables(("sites",), raw_sites or [], "[[sites]]")):
        at: Loc = ("sites", i)
        if not isinstance(site, Mapping):
            validate(Site, site, at)
            continue
        # Each service and counter on its own, so one mistake hides no other.
        validate(Site, {k: v for k, v in site.items() if k not in ("services", "counters")}, at)
        for j, service in enumerate(
            tables(at + ("services",), site.get("services", []), "[[sites.services]]")
        ):
            validate(Service, service, at + ("services", j))
        for j, counter in enumerate(
            tables(at + ("counters",), site.get("counters", []), "[[sites.counters]]")
        ):
            validate(Counter, counter, at + ("counters", j))

    roles = ", ".join(_show(r) for r in ROLES)
    for i, device in enumerate(tables(("devices",), data.get("devices", []), "[[devices]]")):
        at = ("devices", i)
        role = device.get("role") if isinstance(device, Mapping) else None
        if not isinstance(device, Mapping):
            problems.append((at, f"expected a table, got {_show(device)}"))
        elif role is None:
            problems.append((at + ("role",), f"missing (one of {roles})"))
        elif not isinstance(role, str) or role not in DEVICE_MODELS:
            problems.append((at + ("role",), f"{_show(role)} is not a role (one of {roles})"))
        else:
            validate(DEVICE_MODELS[role], device, at)

    problems.extend(_cross_problems(data))
    if not problems:
        try:
            return SiteConfig.model_validate(data, context=context)
        except ValidationError as e:  # a rule the per-table checks missed: still no traceback
            problems.extend(_pydantic_problems(e, SiteConfig, ()))
    issues = [
        ConfigIssue(_place(loc), msg, lines.line_of(loc) if lines else None)
        for loc, msg in problems
    ]
    if lines is not None:
        issues.sort(key=lambda issue: issue.line or 0)
    raise ConfigError(source, issues)


def _pydantic_problems(
    error: ValidationError, model: type[BaseModel], at: Loc
) -> Iterator[tuple[Loc, str]]:
    for err in error.errors(include_url=False):
        yield at + tuple(err["loc"]), _plain_message(err, model)


def _rule_problems(table: _Table, at: Loc) -> Iterator[tuple[Loc, str]]:
    """Rule problems of `table` and every table inside it, with full places."""
    for loc, message in table._own_problems():
        yield at + loc, message
    for name in type(table).model_fields:
        value = getattr(table, name)
        if isinstance(value, _Table):
            yield from _rule_problems(value, at + (name,))
        elif isinstance(value, list):
            for k, item in enumerate(value):
                if isinstance(item, _Table):
                    yield from _rule_problems(item, at + (name, k))


# ---------------------------------------------------------------- sigap check


def check_main(path: str) -> int:
    """`sigap check FILE`: 0 and a summary when valid, else 1 and one line per error."""
    try:
        config = load_config(path)
    except ConfigError as e:
        for line in e.errors:
            print(line, file=sys.stderr)
        print(f"{path}: {_count(len(e.errors), 'error')}", file=sys.stderr)
        return 1
    print(f"OK: {path}: {config.summary()}")
    return 0
