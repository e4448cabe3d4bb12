# Sigap wire protocol v1 (CONTRACT.md section 1): topics, JSON payloads and
# their validation. This one file runs unchanged on the boards (MicroPython,
# compiled with mpy-cross) and in the controller and simulator (CPython).
#
# Rules that keep it portable and cheap on an ESP32:
# - only `json` is imported: no typing, dataclasses or re (MicroPython's re
#   has no {m,n} counts, so ids are checked character by character);
# - annotations use builtin names only (MicroPython compiles them away), so
#   the controller's mypy sees types while the board pays nothing;
# - no module-level mutable state: constants are str, int and tuples, because
#   many virtual boards share one interpreter in the simulator;
# - `type(x) is int`, never isinstance: in CPython `True` is an int, in
#   MicroPython it is not; comparing types exactly gives both the same answer;
# - validators return the message itself (no copy) and allocate only to build
#   an error.
#
# Every refusal is a ProtocolError whose `.reason` is a short stable code,
# used by the controller as a metrics label: "bad_json", "too_large",
# "missing:seq", "type:seq", "range:score", "value:key", "bad_topic", ...
# Field reasons are "<what>:<field>" with what one of missing (absent),
# type (wrong JSON type, null for a required field, or a bool for a number),
# range (number out of range, string or list too long or empty), value (a
# string outside its allowed set or format) and conflict (fields that
# exclude each other).

import json

VERSION = "v1"
PROTOCOL_VERSION = 1
DEFAULT_PREFIX = "sigap"
MAX_DEVICE_PAYLOAD = 1024
MAX_CONTROLLER_PAYLOAD = 4096

ROLES = ("kiosk", "counter", "display", "water")
COUNTER_KEYS = ("next", "recall", "skip", "done", "pause", "resume", "transfer")
REFUSALS = ("quota_full", "closed", "unknown_service", "unavailable")
WATER_STATUSES = ("normal", "waspada", "siaga", "awas")
SENSOR_STATUSES = WATER_STATUSES + ("offline",)

# Topic kinds under dev/{id}/: what a device publishes, then what it receives.
DEV_EVENTS = ("evt/press", "evt/rating", "evt/reading")
DEV_COMMANDS = ("cmd/show", "cmd/ticket", "cmd/siren", "cmd/config")
DEV_KINDS = ("state",) + DEV_EVENTS + DEV_COMMANDS

# Message kinds, as `validate(kind, msg)` names them.
DEVICE_KINDS = ("state", "press", "rating", "reading")
CONTROLLER_KINDS = ("ctl_state", "show", "ticket", "siren", "config", "water", "queue")
KINDS = DEVICE_KINDS + CONTROLLER_KINDS

MAX_ID_LEN = 32
MAX_SHOW_LINES = 8
MAX_LINE_CHARS = 64
INT32_MAX = 0x7FFFFFFF
UINT32_MAX = 0xFFFFFFFF


class ProtocolError(ValueError):
    """A topic or payload that breaks the protocol; `.reason` is a stable code."""

    def __init__(self, reason: str, detail: "str | None" = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason


# -- identifiers ---------------------------------------------------------------


def valid_device_id(s: object) -> bool:
    """True if s matches [a-z0-9][a-z0-9-]{0,31} (device ids, also MQTT client ids)."""
    if type(s) is not str or not 0 < len(s) <= MAX_ID_LEN or s[0] == "-":
        return False
    for c in s:
        if not ("a" <= c <= "z" or "0" <= c <= "9" or c == "-"):
            return False
    return True


def valid_site_id(s: object) -> bool:
    """True if s is a valid site id (same rule as a device id)."""
    return valid_device_id(s)


def valid_service_code(s: object) -> bool:
    """True if s is a service code: one or two letters A-Z."""
    if type(s) is not str or not 0 < len(s) <= 2:
        return False
    for c in s:
        if not "A" <= c <= "Z":
            return False
    return True


def valid_ticket_number(s: object) -> bool:
    """True if s is a ticket number: a service code and three digits ("A012")."""
    if type(s) is not str or not 4 <= len(s) <= 5:
        return False
    for c in s[-3:]:
        if not "0" <= c <= "9":
            return False
    return valid_service_code(s[:-3])


def valid_prefix(s: object) -> bool:
    """True if s can be a topic prefix: non-empty segments, no wildcards."""
    if type(s) is not str or not 0 < len(s) <= 64:
        return False
    for part in s.split("/"):
        if not part or "+" in part or "#" in part:
            return False
    return True


# -- topics --------------------------------------------------------------------


def dev_topic(prefix: str, device_id: str, kind: str) -> str:
    """`{prefix}/v1/dev/{id}/{kind}`; no checks, so "+" and "evt/+" build filters."""
    return "/".join((prefix, VERSION, "dev", device_id, kind))


def dev_sub_topic(prefix: str, device_id: str) -> str:
    """What a board subscribes to for its commands: `{prefix}/v1/dev/{id}/cmd/#`."""
    return dev_topic(prefix, device_id, "cmd/#")


def dev_wildcard(prefix: str, kind: str = "#") -> str:
    """Filter for one kind from every board, e.g. `{prefix}/v1/dev/+/evt/#`."""
    return dev_topic(prefix, "+", kind)


def controller_subscriptions(prefix: str) -> "tuple[str, str]":
    """The filters the controller needs: every board's state and events."""
    return (dev_wildcard(prefix, "state"), dev_wildcard(prefix, "evt/+"))


def ctl_state_topic(prefix: str) -> str:
    """The controller's retained presence topic: `{prefix}/v1/ctl/state`."""
    return "/".join((prefix, VERSION, "ctl", "state"))


def site_queue_topic(prefix: str, site: str) -> str:
    """A site's retained queue snapshot: `{prefix}/v1/site/{site}/queue`."""
    return "/".join((prefix, VERSION, "site", site, "queue"))


def site_water_topic(prefix: str, site: str, sensor_id: str) -> str:
    """A sensor's retained level: `{prefix}/v1/site/{site}/water/{sensor_id}`."""
    return "/".join((prefix, VERSION, "site", site, "water", sensor_id))


def parse_topic(prefix: str, topic: "str | bytes") -> "tuple[str, str | None, str]":
    """Split a topic into (scope, ident, kind), e.g. ("dev", "kiosk-01", "evt/press")."""
    if not isinstance(topic, str):
        try:
            topic = str(topic, "utf-8")
        except (UnicodeError, TypeError):
            raise ProtocolError("bad_topic", "topic is not UTF-8 text") from None
    head = prefix + "/" + VERSION + "/"
    if not topic.startswith(head):
        raise ProtocolError("bad_topic", "not under " + head + ": " + topic)
    parts = topic[len(head) :].split("/")
    n = len(parts)
    scope = parts[0]
    if scope == "dev" and n >= 3:
        if not valid_device_id(parts[1]):
            raise ProtocolError("bad_device_id", "bad device id in " + topic)
        kind = parts[2] if n == 3 else "/".join(parts[2:])
        if kind in DEV_KINDS:
            return ("dev", parts[1], kind)
    elif scope == "ctl" and n == 2 and parts[1] == "state":
        return ("ctl", None, "state")
    elif scope == "site" and ((n == 3 and parts[2] == "queue") or (n == 4 and parts[2] == "water")):
        if not valid_site_id(parts[1]):
            raise ProtocolError("bad_site_id", "bad site id in " + topic)
        if n == 3:
            return ("site", parts[1], "queue")
        if not valid_device_id(parts[3]):
            raise ProtocolError("bad_device_id", "bad sensor id in " + topic)
        return ("site", parts[1], "water/" + parts[3])
    raise ProtocolError("bad_topic", "unknown topic " + topic)


def message_kind(scope: str, kind: str) -> str:
    """The validate() kind of a parsed topic: ("dev", "evt/press") -> "press"."""
    if scope == "dev":
        return kind[4:] if kind[:4] in ("evt/", "cmd/") else kind
    if scope == "ctl":
        return "ctl_state"
    return "water" if kind[:6] == "water/" else kind


# -- payload bytes -------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError("not a JSON number: " + name)


# Decided once at import: CPython's json takes keyword arguments, MicroPython's
# does not. CPython must also refuse NaN/Infinity (MicroPython never accepts
# them) and must write UTF-8 rather than \u escapes (as MicroPython does), so
# both sides produce the same bytes and the same size checks. (Plain `dict`
# annotations: the board-side type check sees MicroPython's json stubs, which
# have none of CPython's keywords.)
_DUMPS_KW: dict = {"ensure_ascii": False, "allow_nan": False}
# One decoder, built once (json.loads with a keyword builds a new one per call);
# immutable configuration, not state, so boards in one process may share it.
_DECODER = getattr(json, "JSONDecoder", None)  # CPython only
if _DECODER is not None:
    _loads = _DECODER(parse_constant=_reject_constant).decode
else:  # MicroPython
    _loads = json.loads
    _DUMPS_KW = {}


def encode(msg: dict, limit: int) -> bytes:
    """Compact UTF-8 JSON bytes of msg; ProtocolError("too_large") above limit bytes."""
    try:
        text = json.dumps(msg, separators=(",", ":"), **_DUMPS_KW)
        data = text.encode("utf-8")
    except UnicodeError:
        raise ProtocolError("bad_utf8", "text is not valid Unicode") from None
    except (TypeError, ValueError) as e:
        raise ProtocolError("not_json", str(e)) from None
    if len(data) > limit:
        raise ProtocolError("too_large", f"{len(data)} bytes > {limit}")
    return data


def decode(payload: "bytes | bytearray | memoryview | str", limit: int) -> dict:
    """Parse a payload into a dict: size first, then UTF-8, JSON and a top-level object."""
    if not isinstance(payload, (str, bytes, bytearray, memoryview)):
        raise ProtocolError("not_bytes", "payload must be bytes or text")
    n = len(payload)
    if n > limit:
        raise ProtocolError("too_large", f"{n} > {limit}")
    if isinstance(payload, str):
        text = payload
        if n * 4 > limit:  # a character is at most four bytes: count only if it matters
            try:
                n = len(payload.encode("utf-8"))
            except UnicodeError:
                raise ProtocolError("bad_utf8", "text is not valid Unicode") from None
            if n > limit:
                raise ProtocolError("too_large", f"{n} bytes > {limit}")
    else:
        try:
            text = str(payload, "utf-8")
        except UnicodeError:
            raise ProtocolError("bad_utf8", "payload is not UTF-8") from None
    try:
        msg = _loads(text)
    except (ValueError, RuntimeError) as e:  # RuntimeError: CPython's RecursionError
        raise ProtocolError("bad_json", str(e)) from None
    if type(msg) is not dict:
        raise ProtocolError("not_object", "payload is not a JSON object")
    return msg


# -- field checks (private) ------------------------------------------------------


def _err(what: str, name: str, detail: str) -> ProtocolError:
    return ProtocolError(what + ":" + name, name + " " + detail)


def _absent(msg: dict, name: str) -> ProtocolError:
    if name in msg:
        return _err("type", name, "must not be null")
    return _err("missing", name, "is required")


def _present(msg: dict, name: str, required: bool):
    """The field's value; None when absent or null (an error when required)."""
    v = msg.get(name)
    if v is None and required:
        raise _absent(msg, name)
    return v


def _obj(msg: object) -> dict:
    if type(msg) is not dict:
        raise ProtocolError("not_object", "message is not a JSON object")
    return msg


def _int(msg: dict, name: str, lo: int, hi: int, required: bool = True) -> "int | None":
    v = _present(msg, name, required)
    if v is None:
        return None
    if type(v) is not int:
        raise _err("type", name, "must be an integer")
    if v < lo or v > hi:
        raise _err("range", name, f"must be in {lo}..{hi}")
    return v


def _num(msg: dict, name: str, lo: float, hi: float, required: bool = True) -> "float | None":
    v = _present(msg, name, required)
    if v is None:
        return None
    if type(v) is not int and type(v) is not float:
        raise _err("type", name, "must be a number")
    if v - v != 0 or v < lo or v > hi:  # v - v != 0 catches inf and nan
        raise _err("range", name, f"must be a finite number in {lo}..{hi}")
    return v


def _str(msg: dict, name: str, maxlen: int, required: bool = True) -> "str | None":
    v = _present(msg, name, required)
    if v is None:
        return None
    if type(v) is not str:
        raise _err("type", name, "must be a string")
    if not 0 < len(v) <= maxlen:
        raise _err("range", name, f"must have 1..{maxlen} characters")
    return v


def _bool(msg: dict, name: str, required: bool = True) -> "bool | None":
    v = _present(msg, name, required)
    if v is None:
        return None
    if type(v) is not bool:
        raise _err("type", name, "must be true or false")
    return v


def _choice(msg: dict, name: str, choices: tuple, required: bool = True) -> "str | None":
    v = _present(msg, name, required)
    if v is None:
        return None
    if type(v) is not str:
        raise _err("type", name, "must be a string")
    if v not in choices:
        raise _err("value", name, "must be one of " + ",".join(choices))
    return v


def _code(msg: dict, name: str, required: bool = True) -> "str | None":
    v = _present(msg, name, required)
    if v is None:
        return None
    if type(v) is not str:
        raise _err("type", name, "must be a string")
    if not valid_service_code(v):
        raise _err("value", name, "must be a service code (A-Z, 1-2 letters)")
    return v


def _event(msg: object) -> "tuple[int, int]":
    m = _obj(msg)
    boot = _int(m, "boot", 0, INT32_MAX)
    seq = _int(m, "seq", 1, INT32_MAX)
    return (boot or 0, seq or 0)  # both are required: never None here


# -- device messages -------------------------------------------------------------


def validate_state(msg: dict) -> dict:
    """A board's state: birth (online true, role, fw, boot, ...) or offline (boot, sleep_s)."""
    _obj(msg)
    online = _bool(msg, "online")
    _int(msg, "boot", 0, INT32_MAX)
    if online:
        _choice(msg, "role", ROLES)
        _str(msg, "fw", MAX_ID_LEN)
        _int(msg, "rssi", -128, 0, False)
        _int(msg, "heap", 0, INT32_MAX, False)
        _int(msg, "up", 0, INT32_MAX, False)
    else:
        _int(msg, "sleep_s", 1, INT32_MAX, False)
    return msg


def validate_press(msg: dict, role: "str | None" = None) -> dict:
    """A button press; role "kiosk" or "counter" narrows which keys are allowed."""
    _event(msg)
    key = msg.get("key")
    if key is None:
        raise _absent(msg, "key")
    if type(key) is not str:
        raise _err("type", "key", "must be a string")
    if role == "kiosk" or (role is None and valid_service_code(key)):
        if not valid_service_code(key):
            raise _err("value", "key", "must be a service code on a kiosk")
        _bool(msg, "prio", False)
    elif role == "counter" or role is None:
        if key not in COUNTER_KEYS:
            raise _err("value", "key", "must be one of " + ",".join(COUNTER_KEYS))
        _code(msg, "to", key == "transfer")
    else:
        raise ProtocolError("bad_role", f"a {role} board has no buttons")
    return msg


def validate_rating(msg: dict) -> dict:
    """An SKM rating: score 1 (tidak baik) .. 4 (sangat baik)."""
    _event(msg)
    _int(msg, "score", 1, 4)
    return msg


def validate_reading(msg: dict) -> dict:
    """A water reading: dist_mm, or err when the measurement failed; ts when synced."""
    _event(msg)
    _int(msg, "ts", 0, UINT32_MAX, False)
    dist = _int(msg, "dist_mm", 0, 100000, False)
    err = _str(msg, "err", MAX_ID_LEN, False)
    if dist is None and err is None:
        raise _err("missing", "dist_mm", "or err is required")
    if dist is not None and err is not None:
        raise _err("conflict", "err", "and dist_mm exclude each other")
    _num(msg, "temp_c", -60, 150, False)
    _int(msg, "batt_mv", 0, 20000, False)
    _int(msg, "n", 0, 1000, False)
    return msg


def event_id(device_id: str, msg: dict) -> "tuple[str, int, int]":
    """The identity (device_id, boot, seq) under which an event is applied at most once."""
    boot, seq = _event(msg)
    return (device_id, boot, seq)


# -- controller messages ---------------------------------------------------------


def validate_ctl_state(msg: dict) -> dict:
    """The controller's presence: online bool, version str when online."""
    _obj(msg)
    _bool(msg, "online")
    _str(msg, "version", 64, False)
    return msg


def validate_show(msg: dict) -> dict:
    """What a display shows: lines (<= 8 strings of <= 64 chars), chime bool."""
    _obj(msg)
    lines = msg.get("lines")
    if lines is None:
        raise _absent(msg, "lines")
    if type(lines) is not list:
        raise _err("type", "lines", "must be a list of strings")
    if len(lines) > MAX_SHOW_LINES:
        raise _err("range", "lines", f"must have at most {MAX_SHOW_LINES} lines")
    for line in lines:
        if type(line) is not str:
            raise _err("type", "lines", "must be a list of strings")
        if len(line) > MAX_LINE_CHARS:
            raise _err("range", "lines", f"must be at most {MAX_LINE_CHARS} characters each")
    _bool(msg, "chime", False)
    return msg


def validate_ticket(msg: dict) -> dict:
    """A kiosk answer: a ticket (ticket, service, ahead, wait_min, at, ...) or an error."""
    _obj(msg)
    _int(msg, "re", 1, INT32_MAX)
    if msg.get("error") is not None:
        _choice(msg, "error", REFUSALS)
        return msg
    if not valid_ticket_number(_str(msg, "ticket", 5)):
        raise _err("value", "ticket", "must be a service code and three digits")
    _str(msg, "service", 64)
    _str(msg, "agency", 64, False)
    _int(msg, "ahead", 0, INT32_MAX)
    _int(msg, "wait_min", 0, INT32_MAX)
    _str(msg, "at", 40)
    _str(msg, "url", 256, False)
    return msg


def validate_siren(msg: dict) -> dict:
    """A siren command: on bool, level one of WATER_STATUSES."""
    _obj(msg)
    _bool(msg, "on")
    _choice(msg, "level", WATER_STATUSES, False)
    return msg


def validate_config(msg: dict) -> dict:
    """Runtime settings for a board: every value a positive integer."""
    _obj(msg)
    for name in msg:
        if not 0 < len(name) <= MAX_ID_LEN:
            raise ProtocolError("range:key", f"setting names have 1..{MAX_ID_LEN} characters")
        _int(msg, name, 1, INT32_MAX)
    return msg


def validate_water(msg: dict) -> dict:
    """A sensor's level: level_mm, status, rate_mm_h, ts (null allowed when offline;
    rate_mm_h also null while there are too few readings for a fit)."""
    _obj(msg)
    known = _choice(msg, "status", SENSOR_STATUSES) != "offline"
    _int(msg, "level_mm", -100000, 100000, known)
    _num(msg, "rate_mm_h", -1000000, 1000000, False)
    _int(msg, "ts", 0, UINT32_MAX, known)
    return msg


def validate_queue(msg: dict) -> dict:
    """A site's queue snapshot: site str and services object (rest is free-form)."""
    _obj(msg)
    _str(msg, "site", 64)
    services = msg.get("services")
    if services is None:
        raise _absent(msg, "services")
    if type(services) is not dict:
        raise _err("type", "services", "must be an object")
    return msg


_VALIDATORS = (
    ("state", validate_state),
    ("rating", validate_rating),
    ("reading", validate_reading),
    ("ctl_state", validate_ctl_state),
    ("show", validate_show),
    ("ticket", validate_ticket),
    ("siren", validate_siren),
    ("config", validate_config),
    ("water", validate_water),
    ("queue", validate_queue),
)


def validate(kind: str, msg: dict, role: "str | None" = None) -> dict:
    """Validate msg as a message of kind (see KINDS); role matters for "press" only."""
    if kind == "press":
        return validate_press(msg, role)
    for name, check in _VALIDATORS:
        if name == kind:
            return check(msg)
    raise ProtocolError("bad_kind", "unknown message kind " + str(kind))


def payload_limit(kind: str) -> int:
    """Largest payload in bytes for a message kind: 1024 from devices, 4096 from the controller."""
    if kind in DEVICE_KINDS:
        return MAX_DEVICE_PAYLOAD
    if kind in CONTROLLER_KINDS:
        return MAX_CONTROLLER_PAYLOAD
    raise ProtocolError("bad_kind", "unknown message kind " + str(kind))


def parse_message(
    prefix: str, topic: "str | bytes", payload: "bytes | str", role: "str | None" = None
) -> "tuple[str, str | None, str, dict]":
    """Topic and payload to (scope, ident, kind, msg), all checked; kind as validate() names it."""
    scope, ident, tkind = parse_topic(prefix, topic)
    kind = message_kind(scope, tkind)
    return (scope, ident, kind, validate(kind, decode(payload, payload_limit(kind)), role))


def parse_device_message(
    prefix: str, topic: "str | bytes", payload: "bytes | str", role: "str | None" = None
) -> "tuple[str, str, dict]":
    """A board's state or event to (device_id, kind, msg); kind is state/press/rating/reading."""
    scope, ident, tkind = parse_topic(prefix, topic)
    if scope != "dev" or tkind[:4] == "cmd/" or ident is None:
        raise ProtocolError("bad_topic", "not published by a device")
    kind = message_kind(scope, tkind)
    return (ident, kind, validate(kind, decode(payload, MAX_DEVICE_PAYLOAD), role))


# -- builders (return dicts; encode() makes the bytes) ---------------------------


def birth(
    role: str,
    fw: str,
    boot: int,
    rssi: "int | None" = None,
    heap: "int | None" = None,
    up: "int | None" = None,
    **extra: object,
) -> dict:
    """A board's retained birth state; None fields are left out, extra fields kept."""
    msg: dict = {"online": True, "role": role, "fw": fw, "boot": boot}
    if rssi is not None:
        msg["rssi"] = rssi
    if heap is not None:
        msg["heap"] = heap
    if up is not None:
        msg["up"] = up
    if extra:
        msg.update(extra)
    return msg


def offline(boot: int, sleep_s: "int | None" = None) -> dict:
    """The offline state: the Last Will, a clean shutdown, or a sleep of sleep_s seconds."""
    if sleep_s is None:
        return {"online": False, "boot": boot}
    return {"online": False, "boot": boot, "sleep_s": sleep_s}


def press(boot: int, seq: int, key: str, prio: bool = False, to: "str | None" = None) -> dict:
    """A press event: a service code from a kiosk, or a counter key (transfer needs to)."""
    msg: dict = {"boot": boot, "seq": seq, "key": key}
    if prio:
        msg["prio"] = True
    if to is not None:
        msg["to"] = to
    return msg


def rating(boot: int, seq: int, score: int) -> dict:
    """A rating event, score 1..4."""
    return {"boot": boot, "seq": seq, "score": score}


def reading(
    boot: int,
    seq: int,
    ts: "int | None" = None,
    dist_mm: "int | None" = None,
    temp_c: "float | None" = None,
    batt_mv: "int | None" = None,
    n: "int | None" = None,
    err: "str | None" = None,
) -> dict:
    """A reading event; None fields are left out (ts when the clock is not synced)."""
    msg: dict = {"boot": boot, "seq": seq}
    if ts is not None:
        msg["ts"] = ts
    if dist_mm is not None:
        msg["dist_mm"] = dist_mm
    if temp_c is not None:
        msg["temp_c"] = temp_c
    if batt_mv is not None:
        msg["batt_mv"] = batt_mv
    if n is not None:
        msg["n"] = n
    if err is not None:
        msg["err"] = err
    return msg


def ctl_state(online: bool, version: "str | None" = None) -> dict:
    """The controller's presence: birth with its version, or the Will {"online": false}."""
    if version is None:
        return {"online": online}
    return {"online": online, "version": version}


def refusal(re: int, error: str) -> dict:
    """A kiosk answer that refuses the press: error is one of REFUSALS."""
    return {"re": re, "error": error}
