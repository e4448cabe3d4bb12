"""The firmware heap bench's verdict: which install modes keep each role under the goal."""

from tests.bench.bench_firmware_heap import verdict

KB = 1024


def peaks(mode: str, **roles: float) -> dict[tuple[str, str], int]:
    return {(mode, role): int(kb * KB) for role, kb in roles.items()}


def test_each_mode_gets_a_line_naming_who_is_over_or_the_largest_when_all_are_under() -> None:
    lines = verdict(peaks("frozen", kiosk=30.9, counter=28.1, display=21.4, water=31.9) | peaks(
        "mpy", kiosk=79.6, counter=72.4, display=62.9, water=81.8
    ) | peaks("romfs", kiosk=45.3, counter=42.0, display=34.1, water=46.4))
    assert lines == [
        "  mpy     met by no role; over: kiosk 79.6 KB, counter 72.4 KB, display 62.9 KB, water 81.8 KB",
        "  romfs   met by display; over: kiosk 45.3 KB, counter 42.0 KB, water 46.4 KB",
        "  frozen  met by all 4 roles (largest: water 31.9 KB)",
    ]


def test_exactly_the_goal_is_not_under_it() -> None:
    lines = verdict(peaks("mpy", kiosk=40, counter=39.9, display=1, water=2) | peaks(
        "romfs", kiosk=1, counter=1, display=1, water=1
    ) | peaks("frozen", kiosk=1, counter=1, display=1, water=1))
    assert lines[0] == "  mpy     met by counter, display, water; over: kiosk 40.0 KB"


def test_failed_runs_get_no_verdict_and_are_counted() -> None:
    lines = verdict(peaks("frozen", kiosk=30, water=31))
    assert lines == [
        "  frozen  met by all 2 roles (largest: water 31.0 KB)",
        "  (10 of the runs failed or were skipped: no verdict for them)",
    ]
    assert verdict({}) == ["  (12 of the runs failed or were skipped: no verdict for them)"]
