"""Scenario files (simulator/scenario.py) and scenario time (simulator/clock.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from controller.config import DEMO_CONFIG, load_config
from firmware.core import clock as fw_clock
from simulator import clock
from simulator.scenario import ScenarioError, bundled, check_against, load_scenario, parse_scenario

GOOD = """
[scenario]
name = "kecil"
site = "blitar-mpp"
start = "08:00"
minutes = 30

[citizens]
profile = [["08:00", 1.0], ["09:00", 0.5]]

[[citizens.services]]
code = "A"
per_hour = 10
service_min = [2, 5, 9]
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "kecil.toml")
    assert str(e.value).startswith("kecil.toml: ")
    return e.value.errors


def test_a_good_file_loads():
    sc = parse_scenario(GOOD)
    assert sc.scenario.name == "kecil" and sc.citizens is not None
    assert sc.citizens.services[0].service_min == (2, 5, 9)


def test_a_bad_value_is_named_with_its_place():
    text = GOOD.replace("service_min = [2, 5, 9]", "service_min = [2, 5, 9]\nno_show = 1.5")
    assert errors_of(text) == ["citizens.services[0].no_show: Input should be less than or equal to 1"]


def test_a_misspelt_key_is_named():
    assert errors_of(GOOD.replace("per_hour", "per_hours")) == [
        "citizens.services[0].per_hour: missing",
        "citizens.services[0].per_hours: unknown key (misspelt?)",
    ]


def test_rules_across_fields_are_named():
    text = GOOD.replace("service_min = [2, 5, 9]", "service_min = [9, 5, 2]")
    assert errors_of(text) == [
        "citizens.services[0]: service_min must be [shortest, typical, longest] "
        "with 0 < shortest <= typical <= longest"
    ]
    text = GOOD.replace('["09:00", 0.5]', '["07:00", 0.5]')
    assert errors_of(text) == ["citizens.profile: [1]: 07:00 is not after 08:00 (rows go in time order)"]


def test_a_step_needs_its_device_and_a_time_after_the_start():
    text = GOOD + '\n[[steps]]\nat = "07:30"\ndo = "wifi"\nfor_min = 2\n'
    errs = errors_of(text)
    assert errs == ['steps[0]: "wifi" needs device']
    text = GOOD + '\n[[steps]]\nat = "07:30"\ndo = "reboot"\ndevice = "disp-hall"\n'
    assert errors_of(text) == ["steps[0].at: 07:30 is before the start (08:00)"]
    text = GOOD + '\n[[steps]]\nat = "8 pagi"\ndo = "restart_broker"\n'
    assert errors_of(text) == ['steps[0].at: a time of day "HH:MM", not "8 pagi"']


def test_toml_syntax_error_names_the_line():
    [err] = errors_of(GOOD.replace("minutes = 30", "minutes = "))
    assert err.startswith("TOML syntax error:") and "line" in err


def test_missing_scenario_file_lists_the_bundled_ones():
    with pytest.raises(ScenarioError) as e:
        load_scenario("tidak-ada")
    assert "no such scenario file (bundled: banjir, gangguan, mpp-pagi)" in str(e.value)


def test_names_the_config_does_not_have():
    cfg = load_config(DEMO_CONFIG)
    text = GOOD.replace('code = "A"', 'code = "Z"') + '\n[[steps]]\nat = "08:10"\ndo = "reboot"\ndevice = "disp-99"\n'
    assert check_against(parse_scenario(text), cfg) == [
        'citizens.services[0].code: no service "Z" at site "blitar-mpp"',
        'steps[0].device: no device "disp-99" in the config',
    ]


def test_bundled_scenarios_fit_the_demo_config():
    cfg = load_config(DEMO_CONFIG)
    assert bundled() == ["banjir", "gangguan", "mpp-pagi"]
    for name in bundled():
        assert check_against(load_scenario(name), cfg) == [], name


def test_banjir_rises_1_5_m_in_40_minutes_upstream_first():
    flood = load_scenario("banjir").flood
    assert flood is not None
    up, mid, down = flood.sensors
    assert flood.level(up, 40) - flood.level(up, 0) == pytest.approx(1500)
    # The wave reaches each gauge later: at the upstream peak, downstream still rises or has not begun.
    assert flood.level(mid, 40) < mid.base_mm + mid.rise_mm and flood.level(down, 20) == down.base_mm
    assert 0 < up.lag_min < mid.lag_min < down.lag_min or up.lag_min == 0 < mid.lag_min < down.lag_min
    # Back to its base after the fall.
    assert flood.level(down, down.lag_min + flood.rise_min + flood.peak_min + flood.fall_min) == down.base_mm


# -- scenario time --------------------------------------------------------------------------

def test_scaled_loop_sleeps_in_loop_seconds_and_firmware_ticks_follow_it():
    async def main() -> tuple[float, float, int]:
        loop = asyncio.get_running_loop()
        t0, m0, k0 = loop.time(), time.monotonic(), fw_clock.ticks_ms()
        assert clock.loop_speed() == 1000 and clock.loop_time() == pytest.approx(loop.time(), abs=1)
        await asyncio.sleep(60)  # a minute of scenario time
        return loop.time() - t0, time.monotonic() - m0, fw_clock.ticks_diff(fw_clock.ticks_ms(), k0)

    loop_s, real_s, ticks = clock.run(main(), speed=1000)
    assert loop_s >= 60 and ticks >= 60_000
    assert real_s < loop_s  # the host lived less than the loop did (about 1/1000 of it)


def test_outside_a_loop_ticks_and_loop_time_are_the_host_clock():
    assert clock.loop_speed() == 1.0
    a, b = time.monotonic(), clock.loop_time()
    assert a <= b <= time.monotonic()
    assert fw_clock.ticks_diff(fw_clock.ticks_ms(), (time.monotonic_ns() // 1_000_000) & ((1 << 30) - 1)) <= 0


def test_scenario_clock_starts_at_its_start_and_runs_with_the_loop():
    start = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)

    async def main() -> tuple[datetime, float]:
        c = clock.ScenarioClock(start)
        assert c() - start < (datetime(2026, 11, 23, 1, 1, tzinfo=UTC) - start)
        await c.sleep_until(3600)
        return c(), c.elapsed()

    now, elapsed = clock.run(main(), speed=1000)
    assert elapsed >= 3600 and (now - start).total_seconds() >= 3600


def test_speed_must_be_positive():
    with pytest.raises(ValueError):
        clock.ScaledEventLoop(0)


def test_sigap_simulate_names_a_bad_scenario_in_one_line_per_problem(tmp_path, capsys):
    from controller.cli import main

    bad = tmp_path / "rusak.toml"
    bad.write_text('[scenario]\nname = "x"\nminutes = 10\nstart = "08:00"\n[[steps]]\nat = "08:05"\ndo = "wifi"\n'
                   'device = "kiosk-01"\n')
    code = main(["simulate", "--config", str(DEMO_CONFIG), "--broker", "mqtt://127.0.0.1:1", "--scenario", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"sigap simulate: bad scenario {bad}:" in err
    assert 'steps[0]: "wifi" needs for_min (how long the WiFi is gone)' in err
