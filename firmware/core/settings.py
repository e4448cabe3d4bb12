# A board's settings: validated at boot, with a safe fallback.
#
# settings.json is written by `sigap deploy` (firmware/tools/settings.py), but a
# board must survive a hand-edited or half-copied file: it then runs on the
# last copy that worked (SETTINGS_GOOD in its storage, saved after the first
# successful broker connection of a boot) and reports what was wrong in its
# birth ("cfg_err"). With no usable copy at all it boots "unconfigured": it
# shows the error on its status LED and display, and retries.
#
# Two kinds of problem:
#   fatal     identity and broker (device_id, role, prefix, broker_*, mqtt_*,
#             wifi_*, pins): without them the board cannot be itself on the
#             network, so the whole file is refused;
#   tunable   a bad value of an optional tunable (keepalive_s, broker_reboot_s,
#             ...): the key is dropped, the default applies, and the error is
#             still reported; the rest of the file is used.
# Error codes follow protocol.wire's reasons: "<what>:<key>" with what one of
# missing, type, range, value; "bad_json" for a file that is not JSON,
# "missing:settings" when there is no file.
#
# Only the boot needs this module (and an unconfigured board, which runs
# run_unconfigured() below): on MicroPython the runtime drops it from
# sys.modules once the settings are chosen, and the GC frees its code.
import asyncio
import json

from firmware.core import clock
from protocol import wire

SETTINGS_FILE = "settings.json"
SETTINGS_GOOD = "settings.good.json"  # name in board.storage

DEFAULT_BROKER_HOST = "127.0.0.1"
DEFAULT_BROKER_PORT = 1883

# Optional string settings: a wrong type makes the board unable to join.
_FATAL_STRINGS = ("broker_host", "mqtt_user", "mqtt_password", "wifi_ssid", "wifi_password")

# Optional integer tunables: (key, lowest, highest). Out of range or of the
# wrong type: dropped (the code's default applies) and reported.
TUNABLES = (
    ("keepalive_s", 0, 65535),  # MQTT keepalive [MQTT-3.1.2.10]; 0 turns it off
    ("outbox_size", 1, 1000),  # events kept while offline (RAM)
    ("broker_reboot_s", 0, 604800),  # reboot after this long without the broker; 0: never
    ("watchdog_ms", 2000, 600000),  # hardware watchdog period
    ("mqtt_backoff_max_s", 1, 3600),  # cap of the MQTT reconnect back-off
    ("ntp_resync_s", 60, 604800),  # re-sync the clock this often
    ("awake_max_s", 1, 3600),  # water, deep sleep: longest wake waiting for the link
    ("spool_max", 1, 10000),  # water: unsent readings kept on flash
    ("spool_chunk", 1, 64),  # water: readings per spool chunk (two chunks in RAM)
)
# Optional boolean tunables, dropped and reported when not true/false.
BOOL_TUNABLES = ("sleep",)  # water: deep sleep between readings

MAX_REPORTED = 6  # cfg_err entries in a birth: the payload must stay under 1024 bytes


def _int_ok(v):
    # type() is, not isinstance: True is an int on CPython but not on MicroPython.
    return type(v) is int


def validate_settings(d):
    """(settings, errors): a cleaned copy of d (None if d is unusable) and error codes.

    d is the parsed settings.json (a dict), its raw text, or None (no file)."""
    if d is None:
        return None, ["missing:settings"]
    if type(d) is str:
        try:
            d = json.loads(d)
        except ValueError:
            return None, ["bad_json"]
    if type(d) is not dict:
        return None, ["type:settings"]
    errors = []
    fatal = False
    if "device_id" not in d:
        errors.append("missing:device_id")
    elif not wire.valid_device_id(d["device_id"]):
        errors.append("value:device_id")
    if "role" not in d:
        errors.append("missing:role")
    elif d["role"] not in wire.ROLES:
        errors.append("value:role")
    if "prefix" in d and not wire.valid_prefix(d["prefix"]):
        errors.append("value:prefix")
    for key in _FATAL_STRINGS:
        v = d.get(key)
        if v is not None and type(v) is not str:
            errors.append("type:" + key)
    if d.get("broker_host") == "":
        errors.append("value:broker_host")
    port = d.get("broker_port")
    if port is not None:
        if not _int_ok(port):
            errors.append("type:broker_port")
        elif not 0 < port < 65536:
            errors.append("range:broker_port")
    pins = d.get("pins")
    if pins is not None and type(pins) is not dict:
        errors.append("type:pins")
    if errors:
        fatal = True
    s = dict(d)  # a copy: the caller's dict (the board's file) stays as it was
    for key, lo, hi in TUNABLES:
        if key not in s or s[key] is None:
            continue
        v = s[key]
        if not _int_ok(v):
            errors.append("type:" + key)
            del s[key]
        elif not lo <= v <= hi:
            errors.append("range:" + key)
            del s[key]
    for key in BOOL_TUNABLES:
        if s.get(key) is not None and type(s[key]) is not bool:
            errors.append("type:" + key)
            del s[key]
    if fatal:
        return None, errors
    if s.get("prefix") is None:
        s["prefix"] = wire.DEFAULT_PREFIX
    if s.get("broker_host") is None:
        s["broker_host"] = DEFAULT_BROKER_HOST
    if s.get("broker_port") is None:
        s["broker_port"] = DEFAULT_BROKER_PORT
    return s, errors


def choose_settings(raw, good_text):
    """(settings, errors, source) for this boot.

    raw: settings.json as validate_settings takes it; good_text: the text of
    the last known good copy, or None. source is "file" (settings.json is
    usable), "good" (the fallback copy is used; errors say why) or None (no
    usable settings: boot unconfigured)."""
    s, errors = validate_settings(raw)
    if s is not None:
        return s, errors, "file"
    if good_text:
        g, _ = validate_settings(good_text)
        if g is not None:
            return g, errors, "good"
    return None, errors, None


def reported(errors):
    """The errors as a birth's "cfg_err": at most MAX_REPORTED short codes."""
    out = []
    for e in errors[:MAX_REPORTED]:
        out.append(str(e)[:40])
    return out


def same_settings(text, s):
    """True when text is JSON for exactly the dict s (saves a flash write)."""
    if not text:
        return False
    try:
        return json.loads(text) == s
    except ValueError:
        return False


async def run_unconfigured(device):
    """Run a board that has no usable settings at all (the runtime's Device,
    unconfigured): no identity to go online with. Show the error, keep the
    watchdog fed (a reboot loop would not fix a file), and read the settings
    again every config_retry_s: once they validate, reboot into them (reason
    "config")."""
    board = device.board
    errors = device.cfg_errors
    device.log("settings unusable: " + ", ".join(errors))
    device.led.set("error")
    try:
        board.text_display("main").show(["CONFIG ERROR", errors[0] if errors else "?"])
    except Exception:  # no display: the LED says it
        pass
    device.health.expect("loop", device.loop_grace_ms)
    tasks = [asyncio.create_task(device.led.run()), asyncio.create_task(device.feed())]
    waited = 0
    try:
        while True:
            device.health.beat("loop")
            await clock.sleep_ms(device.tick_ms)
            waited += device.tick_ms
            if waited < device.config_retry_s * 1000:
                continue
            waited = 0
            reload = getattr(board, "reload_settings", None)
            raw = reload() if reload is not None else board.settings
            if validate_settings(raw)[0] is not None:
                device.reboot("config")
                return
    finally:
        for t in tasks:
            t.cancel()
