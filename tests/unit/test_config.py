"""The site config: schema, error places, `sigap check`, the bundled demo (CONTRACT §5, §6)."""

from __future__ import annotations

import copy
import subprocess
import sys
import tomllib
from collections.abc import Callable
from datetime import datetime, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.config import (
    DEMO_CONFIG,
    ConfigError,
    CounterDevice,
    DisplayDevice,
    KioskDevice,
    SiteConfig,
    WaterDevice,
    check_main,
    config_from_dict,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]

# CONTRACT §6, verbatim: "a file shaped like this example must be accepted as is".
CONTRACT_EXAMPLE = """\
[sigap]
prefix = "sigap"                     # MQTT topic prefix
public_url = "http://127.0.0.1:8000" # base of ticket status links

[[sites]]
id = "blitar-mpp"
name = "Mal Pelayanan Publik Kota Blitar"
timezone = "Asia/Jakarta"

[[sites.services]]
code = "A"
name = "Perekaman KTP-el"
agency = "Dispendukcapil"
open = "08:00"
close = "15:00"
quota = 150        # optional: tickets per day
sla_min = 15       # optional: service standard, minutes

[[sites.counters]]
id = "1"
name = "Loket 1"
services = ["A"]

[[sites]]
id = "kota-blitar"
name = "Kota Blitar"

[[devices]]
id = "kiosk-01"
site = "blitar-mpp"
role = "kiosk"
services = ["A"]   # one button per service code

[[devices]]
id = "loket-01"
site = "blitar-mpp"
role = "counter"
counter = "1"

[[devices]]
id = "disp-01"
site = "blitar-mpp"
role = "display"
counters = ["1"]   # a counter's number display; `hall = true` for a hall display of the latest calls

[[devices]]
id = "wl-lahar-01"
site = "kota-blitar"
role = "water"
name = "Kali Lahar, pos pantau 1"
lat = -8.0954
lon = 112.1609
mount_mm = 4000
interval_s = 300
fast_interval_s = 30
thresholds_mm = { waspada = 1500, siaga = 2200, awas = 2800 }
hysteresis_mm = 50
hold_s = 600
"""


def example() -> dict[str, Any]:
    """The contract example as parsed TOML, a fresh copy to break in one place."""
    return copy.deepcopy(tomllib.loads(CONTRACT_EXAMPLE))


def problems_of(data: dict[str, Any]) -> list[str]:
    """The `place: message` of each problem (no file prefix)."""
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    return [str(issue) for issue in caught.value.issues]


def line_no(text: str, fragment: str) -> int:
    """1-based number of the first line containing `fragment`."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


# ---------------------------------------------------------------- accepted files


def test_contract_example_is_accepted_as_is() -> None:
    config = parse_config(CONTRACT_EXAMPLE)

    assert config.sigap.prefix == "sigap"
    assert config.sigap.public_url == "http://127.0.0.1:8000"
    assert [s.id for s in config.sites] == ["blitar-mpp", "kota-blitar"]
    assert config.sites[1].timezone == "Asia/Jakarta"
    service = config.service("blitar-mpp", "A")
    assert service is not None
    assert (service.open, service.close, service.quota, service.sla_min) == (
        time(8, 0),
        time(15, 0),
        150,
        15,
    )
    assert [d.role for d in config.devices] == ["kiosk", "counter", "display", "water"]


def test_bundled_demo_config_is_valid_with_expected_counts() -> None:
    config = load_config(DEMO_CONFIG)

    assert config.path == DEMO_CONFIG.resolve()
    assert config.sigap.prefix == "sigap"
    assert [s.id for s in config.sites] == ["blitar-mpp", "kota-blitar"]
    mpp = config.site("blitar-mpp")
    assert mpp is not None
    assert [s.code for s in mpp.services] == list("ABCDEFGH")
    assert [c.id for c in mpp.counters] == [str(n) for n in range(1, 13)]
    assert all(1 <= len(c.services) <= 2 for c in mpp.counters)
    assert len(config.devices) == 31
    assert [len(config.devices_by_role(r)) for r in ("kiosk", "counter", "display", "water")] == [
        2,
        12,
        13,
        4,
    ]
    # every loket has its counter board and its number display; one hall display
    boards = {d.counter for d in config.devices_by_role("counter")}
    shown = {c for d in config.devices_by_role("display") for c in d.counters}
    assert boards == shown == {c.id for c in mpp.counters}
    assert [d.id for d in config.devices_by_role("display") if d.hall] == ["disp-hall"]
    # one sensor sounds another board's siren
    sirens = {d.id: d.sirens for d in config.devices_by_role("water") if d.sirens}
    assert sirens == {"wl-lahar-01": ["wl-lahar-02"]}


def test_bundled_demo_water_sensors_are_in_kota_blitar() -> None:
    config = load_config(DEMO_CONFIG)

    for sensor in config.devices_by_role("water"):
        assert sensor.site == "kota-blitar"
        assert -8.13 <= sensor.lat <= -8.04 and 112.13 <= sensor.lon <= 112.19
        t = sensor.thresholds_mm
        assert t.waspada < t.siaga < t.awas < sensor.mount_mm


# ---------------------------------------------------------------- helpers


def test_lookup_helpers_find_tables_and_return_none_for_unknown_ids() -> None:
    config = parse_config(CONTRACT_EXAMPLE)

    assert config.site("kota-blitar") is not None and config.site("nowhere") is None
    assert isinstance(config.device("loket-01"), CounterDevice)
    assert config.device("stranger-99") is None
    assert config.counter("blitar-mpp", "1") is not None
    assert config.counter("blitar-mpp", "9") is None
    assert config.service("kota-blitar", "A") is None
    assert config.service("nowhere", "A") is None
    assert [d.id for d in config.devices_at("blitar-mpp")] == ["kiosk-01", "loket-01", "disp-01"]
    (kiosk,) = config.devices_by_role("kiosk")
    assert isinstance(kiosk, KioskDevice) and kiosk.prio_button is True
    (display,) = config.devices_by_role("display")
    assert isinstance(display, DisplayDevice) and display.hall is False


def test_water_defaults_and_siren_level_follows_awas_unless_given() -> None:
    config = parse_config(CONTRACT_EXAMPLE)
    (sensor,) = config.devices_by_role("water")

    assert isinstance(sensor, WaterDevice)
    assert (sensor.siren_mm, sensor.siren_level_mm) == (None, 2800)
    assert sensor.sirens == [] and sensor.rate_alert_mm_h is None
    data = example()
    data["devices"][3]["siren_mm"] = 2500
    sensor = config_from_dict(data).devices_by_role("water")[0]
    assert sensor.siren_level_mm == 2500


def test_service_is_open_all_week_by_default_within_hours() -> None:
    config = parse_config(CONTRACT_EXAMPLE)
    service = config.service("blitar-mpp", "A")
    assert service is not None

    assert service.days == [1, 2, 3, 4, 5, 6, 7]
    assert service.is_open_at(datetime(2026, 11, 22, 8, 0))  # a Sunday
    assert not service.is_open_at(datetime(2026, 11, 23, 7, 59))
    assert not service.is_open_at(datetime(2026, 11, 23, 15, 0))


def test_service_days_restrict_opening_to_listed_weekdays() -> None:
    data = example()
    data["sites"][0]["services"][0]["days"] = [1, 2, 3, 4, 5]
    service = config_from_dict(data).service("blitar-mpp", "A")
    assert service is not None

    assert service.is_open_at(datetime(2026, 11, 23, 9, 0))  # Monday
    assert not service.is_open_at(datetime(2026, 11, 22, 9, 0))  # Sunday


def test_public_url_loses_its_trailing_slash() -> None:
    data = example()
    data["sigap"]["public_url"] = "https://antrean.blitarkota.go.id/"

    assert config_from_dict(data).sigap.public_url == "https://antrean.blitarkota.go.id"


def test_missing_sigap_section_takes_defaults() -> None:
    data = example()
    del data["sigap"]

    config = config_from_dict(data)
    assert (config.sigap.prefix, config.sigap.public_url) == ("sigap", "http://127.0.0.1:8000")


# ---------------------------------------------------------------- one rule, one error


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target = data
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return change


def _append(path: tuple[Any, ...], table: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        target = data
        for part in path:
            target = target[part]
        target.append(table)

    return change


SVC = ("sites", 0, "services", 0)
CTR = ("sites", 0, "counters", 0)
KIOSK, LOKET, DISP, WATER = (("devices", i) for i in range(4))

RULES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    (
        "counter board names a missing counter",
        _set((*LOKET, "counter"), "9"),
        'devices[1].counter: no counter "9" at site "blitar-mpp"',
    ),
    (
        "device id with capitals and underscore",
        _set((*KIOSK, "id"), "Kiosk_01"),
        'devices[0].id: "Kiosk_01" is not a valid id: a-z, 0-9 and "-", at most 32, not starting with "-"',
    ),
    (
        "device id longer than 32",
        _set((*KIOSK, "id"), "k" * 33),
        'devices[0].id: "' + "k" * 33 + '" is not a valid id',
    ),
    (
        "site id with a space",
        _set(("sites", 1, "id"), "kota blitar"),
        'sites[1].id: "kota blitar" is not a valid id',
    ),
    (
        "duplicate device id",
        _set((*DISP, "id"), "kiosk-01"),
        'devices[2].id: "kiosk-01" is already the id of devices[0]',
    ),
    (
        "duplicate site id",
        _set(("sites", 1, "id"), "blitar-mpp"),
        'sites[1].id: "blitar-mpp" is already the id of sites[0]',
    ),
    (
        "duplicate service code at a site",
        _append(
            ("sites", 0, "services"),
            {
                "code": "A",
                "name": "KIA",
                "agency": "Dispendukcapil",
                "open": "08:00",
                "close": "12:00",
            },
        ),
        'sites[0].services[1].code: "A" is already the code of sites[0].services[0]',
    ),
    (
        "duplicate counter id at a site",
        _append(("sites", 0, "counters"), {"id": "1", "name": "Loket 1b", "services": ["A"]}),
        'sites[0].counters[1].id: "1" is already the id of sites[0].counters[0]',
    ),
    (
        "service code lower case",
        _set((*SVC, "code"), "a"),
        'sites[0].services[0].code: "a" is not a service code: one or two capital letters (A, B, … AA)',
    ),
    (
        "service code of three letters",
        _set((*SVC, "code"), "ABC"),
        'sites[0].services[0].code: "ABC" is not a service code',
    ),
    (
        "open without leading zero",
        _set((*SVC, "open"), "8:00"),
        'sites[0].services[0].open: "8:00" is not HH:MM',
    ),
    (
        "close at an impossible hour",
        _set((*SVC, "close"), "25:00"),
        'sites[0].services[0].close: "25:00" is not a time of day (00:00 … 23:59)',
    ),
    (
        "close before open",
        _set((*SVC, "open"), "16:00"),
        'sites[0].services[0].close: "15:00" is not after open "16:00"',
    ),
    (
        "weekday zero",
        _set((*SVC, "days"), [0, 1]),
        "sites[0].services[0].days[0]: must be at least 1, got 0",
    ),
    (
        "quota as text",
        _set((*SVC, "quota"), "150"),
        'sites[0].services[0].quota: expected a whole number, got "150"',
    ),
    (
        "quota zero",
        _set((*SVC, "quota"), 0),
        "sites[0].services[0].quota: must be greater than 0, got 0",
    ),
    (
        "unknown time zone",
        _set(("sites", 0, "timezone"), "Asia/Jakrta"),
        'sites[0].timezone: "Asia/Jakrta" is not a known time zone (an IANA name such as "Asia/Jakarta")',
    ),
    (
        "counter serves a missing service",
        _set((*CTR, "services"), ["A", "Z"]),
        'sites[0].counters[0].services[1]: no service "Z" at site "blitar-mpp"',
    ),
    (
        "counter lists a service twice",
        _set((*CTR, "services"), ["A", "A"]),
        'sites[0].counters[0].services: "A" is listed twice',
    ),
    (
        "device at a missing site",
        _set((*KIOSK, "site"), "mpp-blitar"),
        'devices[0].site: no site "mpp-blitar"',
    ),
    (
        "kiosk button for a missing service",
        _set((*KIOSK, "services"), ["A", "X"]),
        'devices[0].services[1]: no service "X" at site "blitar-mpp"',
    ),
    (
        "kiosk without services",
        _set((*KIOSK, "services"), []),
        "devices[0].services: must not be empty",
    ),
    (
        "display shows a missing counter",
        _set((*DISP, "counters"), ["2"]),
        'devices[2].counters[0]: no counter "2" at site "blitar-mpp"',
    ),
    (
        "display with counters and hall",
        _set((*DISP, "hall"), True),
        "devices[2].hall: a display shows either its counters or the hall, not both",
    ),
    (
        "display with neither counters nor hall",
        _delete((*DISP, "counters")),
        "devices[2].counters: missing: list the counters it shows, or set hall = true",
    ),
    (
        "siaga not above waspada",
        _set((*WATER, "thresholds_mm", "siaga"), 1400),
        "devices[3].thresholds_mm.siaga: 1400 must be above waspada (1500)",
    ),
    (
        "awas not above siaga",
        _set((*WATER, "thresholds_mm", "awas"), 2200),
        "devices[3].thresholds_mm.awas: 2200 must be above siaga (2200)",
    ),
    (
        "awas at the sensor face",
        _set((*WATER, "thresholds_mm", "awas"), 4000),
        "devices[3].thresholds_mm.awas: 4000 must be below mount_mm (4000): the level cannot reach the sensor",
    ),
    (
        "threshold missing",
        _delete((*WATER, "thresholds_mm", "awas")),
        "devices[3].thresholds_mm.awas: missing (required)",
    ),
    (
        "fast interval slower than interval",
        _set((*WATER, "fast_interval_s"), 600),
        "devices[3].fast_interval_s: 600 must not exceed interval_s (300)",
    ),
    (
        "hysteresis as big as waspada",
        _set((*WATER, "hysteresis_mm"), 1500),
        "devices[3].hysteresis_mm: 1500 must be below waspada (1500)",
    ),
    (
        "siren level above the sensor",
        _set((*WATER, "siren_mm"), 4500),
        "devices[3].siren_mm: 4500 must be below mount_mm (4000)",
    ),
    (
        "siren of a missing board",
        _set((*WATER, "sirens"), ["wl-lahar-01x"]),
        'devices[3].sirens[0]: no device "wl-lahar-01x"',
    ),
    (
        "siren list names the sensor itself",
        _set((*WATER, "sirens"), ["wl-lahar-01"]),
        "devices[3].sirens[0]: lists the sensor itself; its own siren follows it already",
    ),
    (
        "latitude out of range",
        _set((*WATER, "lat"), -98.1),
        "devices[3].lat: must be at least -90, got -98.1",
    ),
    (
        "latitude as text",
        _set((*WATER, "lat"), "-8.09"),
        'devices[3].lat: expected a number, got "-8.09"',
    ),
    (
        "latitude not a number",
        _set((*WATER, "lat"), float("nan")),
        "devices[3].lat: expected a finite number, got nan",
    ),
    ("water sensor without name", _delete((*WATER, "name")), "devices[3].name: missing (required)"),
    (
        "misspelt key",
        _set((*KIOSK, "prio_buton"), False),
        'devices[0].prio_buton: unknown key (did you mean "prio_button"?)',
    ),
    (
        "unknown role",
        _set((*KIOSK, "role"), "kioks"),
        'devices[0].role: "kioks" is not a role (one of "kiosk", "counter", "display", "water")',
    ),
    (
        "missing role",
        _delete((*KIOSK, "role")),
        'devices[0].role: missing (one of "kiosk", "counter", "display", "water")',
    ),
    (
        "bool as text",
        _set((*KIOSK, "prio_button"), "yes"),
        'devices[0].prio_button: expected true or false, got "yes"',
    ),
    ("device not a table", _set(("devices", 0), 5), "devices[0]: expected a table, got 5"),
    (
        "misspelt top-level key",
        lambda d: d.update(device=d.pop("devices")),
        'device: unknown key (did you mean "devices"?)',
    ),
    (
        "no sites",
        _delete(("sites",)),
        "sites: missing: the file needs at least one [[sites]] table",
    ),
    (
        "empty sites",
        _set(("sites",), []),
        "sites: missing: the file needs at least one [[sites]] table",
    ),
    ("site without name", _delete(("sites", 1, "name")), "sites[1].name: missing (required)"),
    ("blank site name", _set(("sites", 1, "name"), "  "), "sites[1].name: must not be empty"),
    (
        "services not a list of tables",
        _set(("sites", 0, "services"), "A"),
        'sites[0].services: expected [[sites.services]] tables, got "A"',
    ),
    (
        "prefix with an MQTT wildcard",
        _set(("sigap", "prefix"), "sigap/#"),
        'sigap.prefix: "sigap/#" is not an MQTT topic prefix (e.g. "sigap" or "blitar/sigap")',
    ),
    (
        "board named like the controller's MQTT client",
        _set(("devices", 0, "id"), "sigap-controller"),
        'devices[0].id: "sigap-controller" is the controller\'s MQTT client id; give the board another id',
    ),
    (
        "public url without scheme",
        _set(("sigap", "public_url"), "127.0.0.1:8000"),
        'sigap.public_url: "127.0.0.1:8000" is not an http:// or https:// address',
    ),
]


@pytest.mark.parametrize(("change", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_names_its_place(change: Callable[[dict[str, Any]], None], expected: str) -> None:
    data = example()
    change(data)

    problems = problems_of(data)
    assert any(p.startswith(expected) for p in problems), problems


def test_contract_error_example_devices_3_counter() -> None:
    data = example()
    data["devices"].insert(1, dict(data["devices"][1], id="loket-00"))
    data["devices"].insert(1, dict(data["devices"][1], id="loket-02"))
    data["devices"][3]["counter"] = "9"

    assert problems_of(data) == ['devices[3].counter: no counter "9" at site "blitar-mpp"']


def test_reference_to_a_table_with_its_own_error_is_not_reported_twice() -> None:
    data = example()
    data["sites"][0]["services"][0]["open"] = "8:00"  # the service is still declared
    data["sites"][0]["timezone"] = "Mars/Olympus"  # the site is still declared

    assert problems_of(data) == [
        'sites[0].timezone: "Mars/Olympus" is not a known time zone (an IANA name such as "Asia/Jakarta")',
        'sites[0].services[0].open: "8:00" is not HH:MM',
    ]


def test_unquoted_toml_time_is_accepted_for_opening_hours() -> None:
    text = CONTRACT_EXAMPLE.replace('open = "08:00"', "open = 08:00:00")

    service = parse_config(text).service("blitar-mpp", "A")
    assert service is not None and service.open == time(8, 0)


# ---------------------------------------------------------------- several errors, lines


def test_several_errors_are_reported_together_in_file_order_with_lines() -> None:
    text = (
        CONTRACT_EXAMPLE.replace('counter = "1"', 'counter = "9"')
        .replace('open = "08:00"', 'open = "8:00"')
        .replace("siaga = 2200", "siaga = 1200")
        .replace('role = "kiosk"', 'role = "kiosk"\nprio = true')
    )

    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="kota-blitar.toml")

    assert caught.value.errors == [
        f'kota-blitar.toml:{line_no(text, "open =")}: sites[0].services[0].open: "8:00" is not HH:MM',
        f'kota-blitar.toml:{line_no(text, "prio =")}: devices[0].prio: unknown key (did you mean "prio_button"?)',
        f'kota-blitar.toml:{line_no(text, "counter = ")}: devices[1].counter: no counter "9" at site "blitar-mpp"',
        f"kota-blitar.toml:{line_no(text, 'thresholds_mm =')}: devices[3].thresholds_mm.siaga: 1200 must be above waspada (1500)",
    ]


def test_missing_key_points_at_the_line_of_its_table() -> None:
    text = CONTRACT_EXAMPLE.replace('counter = "1"\n', "")
    loket = text.index('id = "loket-01"')
    header = text[:loket].count("\n")  # the [[devices]] line just above

    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="f.toml")
    assert caught.value.errors == [f"f.toml:{header}: devices[1].counter: missing (required)"]


def test_toml_syntax_error_names_its_line() -> None:
    text = '[sigap]\nprefix = "sigap"\npublic_url = http://x\n'

    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="bad.toml")
    assert caught.value.errors == ["bad.toml:3: TOML syntax error: Invalid value (column 14)"]


def test_toml_duplicate_key_is_a_syntax_error_with_line() -> None:
    text = CONTRACT_EXAMPLE.replace(
        'timezone = "Asia/Jakarta"', 'timezone = "Asia/Jakarta"\nname = "x"'
    )

    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="dup.toml")
    (error,) = caught.value.errors
    line = line_no(text, 'name = "x"')
    assert error.startswith(f"dup.toml:{line}: TOML syntax error: ")


def test_unterminated_string_reports_the_last_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[sigap]\nprefix = "sigap\n', source="s.toml")
    (error,) = caught.value.errors
    assert error.startswith("s.toml:") and "TOML syntax error" in error


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "none.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [f"{path}: no such file"]


def test_non_utf8_file_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[sigap]\nprefix = "caf\xe9"\n')

    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors == [f"{path}:2: not UTF-8 text"]


# ---------------------------------------------------------------- models used directly


def test_model_built_directly_raises_on_a_broken_rule() -> None:
    with pytest.raises(ValidationError, match=r"thresholds_mm\.siaga: 1400 must be above waspada"):
        WaterDevice(
            id="wl-x",
            site="kota-blitar",
            name="x",
            lat=-8.1,
            lon=112.1,
            mount_mm=4000,
            thresholds_mm={"waspada": 1500, "siaga": 1400, "awas": 2800},  # type: ignore[arg-type]
        )


def test_site_config_model_validate_checks_references_too() -> None:
    assert SiteConfig.model_validate(example()).device("disp-01") is not None
    data = example()
    data["devices"][1]["counter"] = "9"

    with pytest.raises(ValidationError, match=r'devices\[1\]\.counter: no counter "9"'):
        SiteConfig.model_validate(data)


# ---------------------------------------------------------------- never a traceback

TOML_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["A", "1", "blitar-mpp", "kiosk", "water", "08:00", "kiosk-01"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at] if at else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, at + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, at + (i,))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_broken_value_gives_config_error_not_a_crash(data: st.DataObject) -> None:
    config = example()
    paths = _paths(config)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        target: Any = config
        try:
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = data.draw(TOML_VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced the parent

    try:
        config_from_dict(config)
    except ConfigError as e:
        assert e.errors and all(": " in line for line in e.errors)


# ---------------------------------------------------------------- sigap check


def test_check_main_prints_summary_and_returns_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_main(str(DEMO_CONFIG)) == 0

    out, err = capsys.readouterr()
    assert out == (
        f"OK: {DEMO_CONFIG}: 2 sites, 8 services, 12 counters, 31 devices "
        "(2 kiosk, 12 counter, 13 display, 4 water)\n"
    )
    assert err == ""


def test_check_main_prints_each_error_and_a_count_and_returns_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    text = CONTRACT_EXAMPLE.replace('counter = "1"', 'counter = "9"').replace(
        'open = "08:00"', 'open = "8:00"'
    )
    path.write_text(text)

    assert check_main(str(path)) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f'{path}:{line_no(text, "open =")}: sites[0].services[0].open: "8:00" is not HH:MM',
        f'{path}:{line_no(text, "counter =")}: devices[1].counter: no counter "9" at site "blitar-mpp"',
        f"{path}: 2 errors",
    ]


def test_check_main_on_a_missing_file_returns_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_main("/nonexistent/site.toml") == 1

    assert capsys.readouterr().err.splitlines() == [
        "/nonexistent/site.toml: no such file",
        "/nonexistent/site.toml: 1 error",
    ]


def _sigap_check(path: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "check", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_sigap_check_command_exits_1_without_traceback_on_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(CONTRACT_EXAMPLE.replace('counter = "1"', "counter = 1"))
    broken = tmp_path / "broken.toml"
    broken.write_text("[[devices]\n")

    for path, expected in [
        (bad, "devices[1].counter: expected text in quotes, got 1"),
        (broken, "TOML syntax error"),
        (tmp_path, "is a directory"),
    ]:
        result = _sigap_check(path)
        assert result.returncode == 1, result
        assert expected in result.stderr
        assert "Traceback" not in result.stdout + result.stderr


def test_sigap_check_command_exits_0_on_the_demo_config() -> None:
    result = _sigap_check(DEMO_CONFIG)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"OK: {DEMO_CONFIG}: 2 sites")
