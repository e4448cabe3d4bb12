"""A generated site config with many boards, for scale tests and the fleet benchmark.

Half the boards are water sensors of one city; the other half are MPP sites of
`per_site` counters, each counter with its keypad board and its number display.
"""

from __future__ import annotations


def big_site_toml(boards: int, per_site: int = 10, interval_s: int = 60, tz: str = "Asia/Jakarta") -> str:
    """A valid site config with exactly `boards` devices (water ~ half, counters and displays the rest)."""
    water = boards - boards // 2
    queue = boards - water
    lines = ["[sigap]", 'prefix = "sigap"', "", "[[sites]]", 'id = "kota"', 'name = "Kota (generated)"']
    n_sites = (queue + 2 * per_site - 1) // (2 * per_site)
    devices: list[str] = []
    made = 0
    for s in range(n_sites):
        site = f"mpp-{s:03d}"
        lines += ["", "[[sites]]", f'id = "{site}"', f'name = "MPP {s}"', f'timezone = "{tz}"',
                  "", "[[sites.services]]", 'code = "A"', 'name = "Perekaman KTP-el"', 'agency = "Dispendukcapil"',
                  'open = "00:00"', 'close = "23:59"']
        for c in range(1, per_site + 1):
            lines += ["", "[[sites.counters]]", f'id = "{c}"', f'name = "Loket {c}"', 'services = ["A"]']
            for role in ("counter", "display"):
                if made >= queue:
                    break
                made += 1
                dev_id = f"{'loket' if role == 'counter' else 'disp'}-{s:03d}-{c:02d}"
                where = f'counter = "{c}"' if role == "counter" else f'counters = ["{c}"]'
                devices += ["", "[[devices]]", f'id = "{dev_id}"', f'site = "{site}"', f'role = "{role}"', where]
    for i in range(water):
        devices += ["", "[[devices]]", f'id = "wl-{i:04d}"', 'site = "kota"', 'role = "water"', f'name = "Pos {i}"',
                    "lat = -8.1", "lon = 112.16", "mount_mm = 4000", f"interval_s = {interval_s}",
                    f"fast_interval_s = {max(1, interval_s // 2)}",
                    "thresholds_mm = { waspada = 1500, siaga = 2200, awas = 2800 }"]
    return "\n".join(lines + devices) + "\n"
