"""hardware/: the pin maps validate, the guides' wiring tables are generated from them,
and every device of the demo config gets a profile and its board settings."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from controller.config import DEMO_CONFIG, load_config
from firmware.roles.counter import RATING_KEYS, STAFF_KEYS
from hardware.pinmap import (
    PINS_DIR,
    PROFILES,
    PinmapError,
    load_pinmap,
    profile_for,
    settings_pins,
    validate_pinmap,
)
from hardware.tools import render_wiring
from hardware.tools.render_wiring import blocks, md_files, render

HARDWARE = Path(__file__).resolve().parents[2] / "hardware"


def raw(profile: str) -> dict[str, Any]:
    return json.loads((PINS_DIR / f"{profile}.json").read_text(encoding="utf-8"))


# --- the maps themselves ----------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_every_pin_map_validates(profile: str) -> None:
    assert validate_pinmap(raw(profile)) == []
    assert load_pinmap(profile)["profile"] == profile


@pytest.mark.parametrize("profile", PROFILES)
def test_no_gpio_is_used_twice(profile: str) -> None:
    gpios = list(raw(profile)["pins"].values())
    assert len(gpios) == len(set(gpios))


@pytest.mark.parametrize("profile", PROFILES)
def test_bus_pins_and_pins_agree(profile: str) -> None:
    data = raw(profile)
    for bus, spec in data["buses"].items():
        for key, gpio in spec.items():
            if f"{bus}_{key}" in data["pins"]:
                assert data["pins"][f"{bus}_{key}"] == gpio


def test_counter_map_has_a_pin_for_every_key_the_firmware_reads() -> None:
    pins = raw("counter")["pins"]
    assert set(STAFF_KEYS + RATING_KEYS) <= set(pins)
    assert "transfer" in pins


def test_kiosk_map_has_eight_service_buttons_and_a_priority_button() -> None:
    pins = raw("kiosk")["pins"]
    assert [f"svc{i}" for i in range(1, 9)] == [n for n in pins if n.startswith("svc")]
    assert "prio" in pins


# --- the validator catches what would break a board -------------------------


def broken(profile: str, change) -> list[str]:
    data = copy.deepcopy(raw(profile))
    change(data)
    return validate_pinmap(data)


def _set(data: dict[str, Any], name: str, gpio: int) -> None:
    data["pins"][name] = gpio


def test_validator_refuses_a_gpio_used_twice() -> None:
    problems = broken("counter", lambda d: _set(d, "rate4", 13))
    assert any("GPIO13 is already used by next" in p for p in problems)


def test_validator_refuses_a_flash_pin() -> None:
    problems = broken("counter", lambda d: _set(d, "rate4", 7))
    assert any("flash" in p for p in problems)


def test_validator_refuses_the_console_uart() -> None:
    problems = broken("counter", lambda d: _set(d, "rate4", 1))
    assert any("console" in p for p in problems)


def test_validator_refuses_an_output_on_an_input_only_pin() -> None:
    problems = broken("water", lambda d: _set(d, "siren", 36))
    assert any("input-only" in p and "siren" in p for p in problems)


def test_validator_refuses_an_internal_pull_up_on_an_input_only_pin() -> None:
    problems = broken("counter", lambda d: _set(d, "rate4", 39))
    assert any("no internal pull-up" in p for p in problems)


def test_validator_refuses_a_button_on_a_strapping_pin() -> None:
    problems = broken("counter", lambda d: _set(d, "rate4", 12))
    assert any("strapping" in p and "rate4" in p for p in problems)


def test_validator_wants_a_reason_for_an_output_on_a_strapping_pin() -> None:
    problems = broken("counter", lambda d: d.pop("strapping"))
    assert any("strapping.status_led" in p for p in problems)


def test_validator_refuses_adc2_for_the_battery() -> None:
    problems = broken("water", lambda d: _set(d, "battery", 27))
    assert any("ADC2" in p for p in problems)


def test_validator_refuses_a_bus_that_disagrees_with_pins() -> None:
    problems = broken("kiosk", lambda d: d["buses"]["printer"].update(tx=18))
    assert any("bus printer: tx is GPIO18 but pins.printer_tx is GPIO17" in p for p in problems)


def test_validator_refuses_a_deep_sleep_hold_off_the_rtc_domain() -> None:
    problems = broken("water", lambda d: _set(d, "siren", 23))
    assert any(p.startswith("hold: siren") for p in problems)


def test_validator_wants_a_wiring_entry_for_every_pin() -> None:
    problems = broken("kiosk", lambda d: d["wiring"].pop("svc8"))
    assert any("wiring.svc8" in p for p in problems)


def test_a_key_written_twice_in_the_json_is_an_error(tmp_path, monkeypatch) -> None:
    text = (PINS_DIR / "counter.json").read_text(encoding="utf-8")
    twice = text.replace('"next": 13,', '"next": 13,\n    "next": 14,', 1)
    (tmp_path / "counter.json").write_text(twice, encoding="utf-8")
    monkeypatch.setattr("hardware.pinmap.PINS_DIR", tmp_path)
    with pytest.raises(PinmapError, match="'next' appears twice"):
        load_pinmap("counter")


def test_an_unknown_profile_is_an_error() -> None:
    with pytest.raises(PinmapError, match="no board profile"):
        load_pinmap("printer")


# --- the guides' wiring tables are the maps --------------------------------


def test_every_profile_has_exactly_one_wiring_table_in_the_guides() -> None:
    found = [p for path in md_files() for p in blocks(path.read_text(encoding="utf-8"))]
    assert sorted(found) == sorted(PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
def test_wiring_table_in_the_guide_equals_the_rendered_pin_map(profile: str) -> None:
    tables = {
        p: body
        for path in md_files()
        for p, body in blocks(path.read_text(encoding="utf-8")).items()
    }
    assert tables[profile] == render(profile), (
        f"the {profile} wiring table is stale: run python -m hardware.tools.render_wiring --write"
    )


def test_rendered_table_has_one_row_per_pin_with_its_gpio() -> None:
    data = raw("water")
    text = render("water")
    for name, gpio in data["pins"].items():
        assert f"| {gpio} | `{name}` |" in text


def test_render_check_passes_on_the_committed_guides(capsys) -> None:
    assert render_wiring.main(["--check"]) == 0
    assert capsys.readouterr().out == ""


# --- from the site config to a board's settings ----------------------------


@pytest.fixture(scope="module")
def demo():
    return load_config(DEMO_CONFIG)


def test_profile_for_every_device_of_the_demo_config(demo) -> None:
    expected = {"kiosk": "kiosk", "counter": "counter", "water": "water"}
    for dev in demo.devices:
        profile = profile_for(dev)
        assert profile in PROFILES
        if dev.role == "display":
            assert profile == ("display-hall" if dev.hall else "display-counter")
        else:
            assert profile == expected[dev.role]
    assert profile_for(demo.device("disp-hall")) == "display-hall"
    assert profile_for(demo.device("disp-01")) == "display-counter"
    assert profile_for({"role": "water"}) == "water"


def test_profile_for_an_unknown_role_is_an_error() -> None:
    with pytest.raises(PinmapError, match="no board profile for role"):
        profile_for({"role": "printer"})


def test_every_demo_device_gets_pins_for_its_board(demo) -> None:
    for dev in demo.devices:
        s = settings_pins(dev)
        assert set(s["pins"]) == set(s["pin_modes"])
        assert len(set(s["pins"].values())) == len(s["pins"])
        for spec in s["buses"].values():
            assert "part" not in spec


def test_kiosk_buttons_take_the_services_in_order(demo) -> None:
    s = settings_pins(demo.device("kiosk-02"))  # services A, B, C
    kiosk = raw("kiosk")["pins"]
    assert s["pins"]["svc_A"] == kiosk["svc1"]
    assert s["pins"]["svc_B"] == kiosk["svc2"]
    assert s["pins"]["svc_C"] == kiosk["svc3"]
    assert not any(n.startswith("svc") and n[3:4] != "_" for n in s["pins"])
    assert "svc_D" not in s["pins"] and s["pins"]["prio"] == kiosk["prio"]
    assert s["pin_modes"]["svc_A"] == "in_pullup"
    assert "printer_tx" not in s["pins"] and s["buses"]["printer"]["tx"] == kiosk["printer_tx"]


def test_kiosk_without_a_priority_button_gets_no_prio_pin() -> None:
    s = settings_pins({"id": "k", "role": "kiosk", "services": ["A"], "prio_button": False})
    assert set(s["pins"]) == {"svc_A", "status_led"}


def test_kiosk_with_more_services_than_buttons_is_refused() -> None:
    dev = {"id": "kiosk-09", "role": "kiosk", "services": list("ABCDEFGHI")}
    with pytest.raises(PinmapError, match="9 services but the kiosk board has 8"):
        settings_pins(dev)


def test_water_settings_carry_hold_polarity_and_battery_scaling(demo) -> None:
    s = settings_pins(demo.device("wl-lahar-01"))
    assert s["hold"] == ["siren"]
    assert s["active_low"] == ["sensor_pwr"]
    assert s["pin_modes"]["battery"] == "adc" and s["adc"]["battery"]["ratio"] > 1
    assert s["buses"]["ds18b20"] == {"type": "onewire", "data": 4}
