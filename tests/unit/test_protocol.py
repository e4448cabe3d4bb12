"""The wire protocol (protocol/wire.py) against the shared vectors, on CPython.

tests/mpy/test_protocol_mpy.py runs the same vectors on MicroPython; both must
reach the outcome that protocol/vectors.json states.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import wire

VECTORS_PATH = pathlib.Path(wire.__file__).with_name("vectors.json")
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


def payload_bytes(vec: dict[str, Any]) -> bytes:
    """The bytes a vector stands for (payload, raw, raw_hex or raw_repeat)."""
    if "payload" in vec:
        return json.dumps(vec["payload"], separators=(",", ":"), ensure_ascii=False).encode()
    if "raw" in vec:
        return vec["raw"].encode()
    if "raw_hex" in vec:
        return bytes.fromhex(vec["raw_hex"])
    return "".join(text * times for text, times in vec["raw_repeat"]).encode()


def vector_id(vec: dict[str, Any]) -> str:
    if "reason" in vec:
        outcome = vec["reason"]
    else:
        outcome = "valid" if vec.get("valid", True) else "invalid"
    what = vec.get("kind") or vec.get("check") or vec.get("builder") or vec.get("topic")
    return f"{what}-{outcome}-{vec.get('note') or vec.get('value') or vec.get('topic')}"


def params(section: str) -> list[Any]:
    return [pytest.param(v, id=vector_id(v)) for v in VECTORS[section]]


# -- vectors -------------------------------------------------------------------


def test_vectors_cover_every_kind_and_enough_cases() -> None:
    kinds = {v["kind"] for v in VECTORS["messages"]}
    assert kinds == set(wire.KINDS)
    assert sum(len(VECTORS[s]) for s in ("messages", "topics", "ids", "builders")) >= 60
    for kind in wire.KINDS:
        outcomes = {v["valid"] for v in VECTORS["messages"] if v["kind"] == kind}
        assert outcomes == {True, False}, f"{kind} needs valid and invalid vectors"


@pytest.mark.parametrize("vec", params("messages"))
def test_message_vector_gets_its_stated_outcome(vec: dict[str, Any]) -> None:
    data = payload_bytes(vec)
    kind = vec["kind"]
    if vec["valid"]:
        msg = wire.validate(kind, wire.decode(data, wire.payload_limit(kind)), vec.get("role"))
        assert isinstance(msg, dict)
    else:
        with pytest.raises(wire.ProtocolError) as info:
            wire.validate(kind, wire.decode(data, wire.payload_limit(kind)), vec.get("role"))
        assert info.value.reason == vec["reason"]
        assert str(info.value)  # a human message for the log


@pytest.mark.parametrize("vec", params("topics"))
def test_topic_vector_parses_or_names_its_fault(vec: dict[str, Any]) -> None:
    if "reason" in vec:
        with pytest.raises(wire.ProtocolError) as info:
            wire.parse_topic(vec["prefix"], vec["topic"])
        assert info.value.reason == vec["reason"]
    else:
        parsed = wire.parse_topic(vec["prefix"], vec["topic"])
        assert list(parsed) == vec["parsed"]
        assert wire.message_kind(parsed[0], parsed[2]) == vec["kind"]
        assert wire.parse_topic(vec["prefix"], vec["topic"].encode()) == parsed  # umqtt gives bytes


@pytest.mark.parametrize("vec", params("ids"))
def test_identifier_vector_is_judged_as_stated(vec: dict[str, Any]) -> None:
    check = getattr(wire, "valid_" + vec["check"])
    assert check(vec["value"]) is vec["valid"]


@pytest.mark.parametrize("vec", params("builders"))
def test_builder_makes_the_contract_message(vec: dict[str, Any]) -> None:
    msg = getattr(wire, vec["builder"])(*vec["args"], **vec["kwargs"])
    assert msg == vec["expect"]
    assert wire.validate(vec["kind"], msg, vec.get("role")) is msg


# -- topics and helpers ------------------------------------------------------------


def test_topic_builders_round_trip_through_parse_topic() -> None:
    p = "sigap"
    assert wire.parse_topic(p, wire.dev_topic(p, "kiosk-01", "evt/press")) == (
        "dev",
        "kiosk-01",
        "evt/press",
    )
    assert wire.parse_topic(p, wire.ctl_state_topic(p)) == ("ctl", None, "state")
    assert wire.parse_topic(p, wire.site_queue_topic(p, "blitar-mpp")) == (
        "site",
        "blitar-mpp",
        "queue",
    )
    assert wire.parse_topic(p, wire.site_water_topic(p, "kota-blitar", "wl-1")) == (
        "site",
        "kota-blitar",
        "water/wl-1",
    )


def test_subscription_filters_use_mqtt_wildcards() -> None:
    assert wire.dev_sub_topic("sigap", "disp-01") == "sigap/v1/dev/disp-01/cmd/#"
    assert wire.dev_wildcard("sigap") == "sigap/v1/dev/+/#"
    assert wire.controller_subscriptions("sigap") == (
        "sigap/v1/dev/+/state",
        "sigap/v1/dev/+/evt/+",
    )


def test_event_id_is_device_boot_seq() -> None:
    assert wire.event_id("kiosk-01", {"boot": 17, "seq": 42, "key": "A"}) == ("kiosk-01", 17, 42)
    with pytest.raises(wire.ProtocolError) as info:
        wire.event_id("kiosk-01", {"boot": 17, "seq": 0})
    assert info.value.reason == "range:seq"


def test_parse_device_message_checks_topic_then_payload() -> None:
    topic = "sigap/v1/dev/kiosk-01/evt/press"
    assert wire.parse_device_message("sigap", topic, b'{"boot":17,"seq":42,"key":"A"}') == (
        "kiosk-01",
        "press",
        {"boot": 17, "seq": 42, "key": "A"},
    )
    for bad_topic in ("sigap/v1/dev/kiosk-01/cmd/show", "sigap/v1/ctl/state"):
        with pytest.raises(wire.ProtocolError) as info:
            wire.parse_device_message("sigap", bad_topic, b"{}")
        assert info.value.reason == "bad_topic"
    with pytest.raises(wire.ProtocolError) as info:
        wire.parse_device_message("sigap", topic, b"x" * 1025)
    assert info.value.reason == "too_large"
    with pytest.raises(wire.ProtocolError) as info:
        wire.parse_device_message("sigap", topic, b'{"boot":17,"seq":42,"key":"next"}', "kiosk")
    assert info.value.reason == "value:key"


def test_parse_message_names_controller_kinds() -> None:
    scope, ident, kind, msg = wire.parse_message(
        "sigap",
        "sigap/v1/site/kota-blitar/water/wl-1",
        '{"level_mm":1,"status":"awas","rate_mm_h":0,"ts":1}',
    )
    assert (scope, ident, kind, msg["status"]) == ("site", "kota-blitar", "water", "awas")


def test_unknown_kind_is_refused() -> None:
    for call in (lambda: wire.validate("gossip", {}), lambda: wire.payload_limit("gossip")):
        with pytest.raises(wire.ProtocolError) as info:
            call()
        assert info.value.reason == "bad_kind"


def test_validator_refuses_a_non_dict() -> None:
    with pytest.raises(wire.ProtocolError) as info:
        wire.validate("rating", [1, 2])  # type: ignore[arg-type]
    assert info.value.reason == "not_object"


def test_protocol_error_is_a_value_error_with_reason() -> None:
    err = wire.ProtocolError("range:score", "score must be in 1..4")
    assert isinstance(err, ValueError)
    assert (err.reason, str(err)) == ("range:score", "score must be in 1..4")
    assert str(wire.ProtocolError("bad_json")) == "bad_json"


# -- encode / decode ------------------------------------------------------------------


def test_encode_is_compact_utf8() -> None:
    data = wire.encode(
        {"lines": ["Loket 3 \u2013 Dukcapil"], "chime": True}, wire.MAX_CONTROLLER_PAYLOAD
    )
    assert data == '{"lines":["Loket 3 \u2013 Dukcapil"],"chime":true}'.encode()


def test_encode_refuses_oversized_and_non_json() -> None:
    with pytest.raises(wire.ProtocolError) as info:
        wire.encode({"pad": "x" * 1024}, wire.MAX_DEVICE_PAYLOAD)
    assert info.value.reason == "too_large"
    for bad in ({"x": math.nan}, {"x": object()}):
        with pytest.raises(wire.ProtocolError) as info:
            wire.encode(bad, wire.MAX_DEVICE_PAYLOAD)
        assert info.value.reason == "not_json"
    with pytest.raises(wire.ProtocolError) as info:
        wire.encode({"x": "\ud800"}, wire.MAX_DEVICE_PAYLOAD)
    assert info.value.reason == "bad_utf8"


def test_decode_accepts_every_buffer_type_and_text() -> None:
    raw = b'{"boot":1,"seq":1,"score":4}'
    for payload in (raw, bytearray(raw), memoryview(raw), raw.decode()):
        assert wire.decode(payload, wire.MAX_DEVICE_PAYLOAD) == {"boot": 1, "seq": 1, "score": 4}


def test_decode_counts_bytes_of_text_payloads() -> None:
    text = '{"p":"' + "\u00e9" * 600 + '"}'  # 608 characters, 1208 bytes
    with pytest.raises(wire.ProtocolError) as info:
        wire.decode(text, wire.MAX_DEVICE_PAYLOAD)
    assert info.value.reason == "too_large"


def test_decode_refuses_deep_nesting_as_bad_json() -> None:
    with pytest.raises(wire.ProtocolError) as info:
        wire.decode("[" * 100_000, 1 << 20)
    assert info.value.reason == "bad_json"


def test_decode_refuses_non_buffers() -> None:
    with pytest.raises(wire.ProtocolError) as info:
        wire.decode(42, wire.MAX_DEVICE_PAYLOAD)  # type: ignore[arg-type]
    assert info.value.reason == "not_bytes"


# -- properties ---------------------------------------------------------------------

ints31 = st.integers(min_value=1, max_value=wire.INT32_MAX)
codes = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=2)


@given(boot=st.integers(0, wire.INT32_MAX), seq=ints31, key=codes, prio=st.booleans())
def test_kiosk_press_round_trips(boot: int, seq: int, key: str, prio: bool) -> None:
    msg = wire.press(boot, seq, key, prio)
    back = wire.validate_press(
        wire.decode(wire.encode(msg, wire.MAX_DEVICE_PAYLOAD), wire.MAX_DEVICE_PAYLOAD), "kiosk"
    )
    assert back == msg
    assert wire.event_id("kiosk-01", back) == ("kiosk-01", boot, seq)


@given(
    seq=ints31,
    ts=st.none() | st.integers(0, wire.UINT32_MAX),
    dist=st.none() | st.integers(0, 100_000),
    temp=st.none() | st.floats(-60, 150, allow_nan=False) | st.integers(-60, 150),
    batt=st.none() | st.integers(0, 20_000),
    n=st.none() | st.integers(0, 1000),
)
def test_reading_round_trips(
    seq: int, ts: int | None, dist: int | None, temp: float | None, batt: int | None, n: int | None
) -> None:
    msg = wire.reading(1, seq, ts, dist, temp, batt, n, None if dist is not None else "no_echo")
    back = wire.validate_reading(
        wire.decode(wire.encode(msg, wire.MAX_DEVICE_PAYLOAD), wire.MAX_DEVICE_PAYLOAD)
    )
    assert back == msg


@given(st.binary(max_size=1100))
def test_decode_raises_only_protocol_error_on_any_bytes(data: bytes) -> None:
    try:
        msg = wire.decode(data, wire.MAX_DEVICE_PAYLOAD)
    except wire.ProtocolError as e:
        assert e.reason in ("too_large", "bad_utf8", "bad_json", "not_object")
    else:
        assert isinstance(msg, dict)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


FIELDS = "boot seq key score online role fw lines re error on status level_mm rate_mm_h ts dist_mm err site services to prio".split()


@given(
    kind=st.sampled_from(wire.KINDS),
    msg=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8),
)
def test_validators_raise_only_protocol_error(kind: str, msg: dict[str, Any]) -> None:
    try:
        assert wire.validate(kind, msg) is msg
    except wire.ProtocolError as e:
        assert e.reason


@given(st.text(max_size=80))
def test_parse_topic_raises_only_protocol_error(topic: str) -> None:
    try:
        scope, _ident, _kind = wire.parse_topic("sigap", topic)
    except wire.ProtocolError as e:
        assert e.reason in ("bad_topic", "bad_device_id", "bad_site_id")
    else:
        assert scope in ("dev", "ctl", "site")
