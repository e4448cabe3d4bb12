# protocol/wire.py on MicroPython, against protocol/vectors.json.
#
# Run by tests/mpy/run.mjs. tests/unit/test_protocol.py runs the same vectors
# on CPython; each vector here must reach the same outcome the file states,
# so board and controller agree on every payload, topic and id.
import json

from mpyunit import Failure, raises

from protocol import wire

_vectors = None


def vectors():
    """The parsed vectors file, read once (it sits beside wire.py)."""
    global _vectors
    if _vectors is None:
        with open(wire.__file__.rsplit("/", 1)[0] + "/vectors.json") as f:
            _vectors = json.load(f)
    return _vectors


def payload_bytes(vec):
    if "payload" in vec:
        return json.dumps(vec["payload"], separators=(",", ":")).encode()
    if "raw" in vec:
        return vec["raw"].encode()
    if "raw_hex" in vec:
        return bytes.fromhex(vec["raw_hex"])
    return "".join(text * times for text, times in vec["raw_repeat"]).encode()


def outcome(fn, *args):
    """Return "valid" if fn(*args) returns, else the ProtocolError reason."""
    try:
        fn(*args)
    except wire.ProtocolError as e:
        return e.reason
    return "valid"


def check_all(section, judge):
    """Apply judge(vec) -> (got, want) to every vector; fail listing mismatches."""
    bad = []
    vecs = vectors()[section]
    for i, vec in enumerate(vecs):
        try:
            got, want = judge(vec)
        except Exception as e:  # noqa: BLE001 - any surprise is a mismatch to report
            got, want = type(e).__name__ + ": " + str(e), "no exception"
        if got != want:
            label = vec.get("note") or vec.get("topic") or repr(vec.get("value"))
            bad.append(f"{section}[{i}] {label}: got {got!r}, want {want!r}")
    if bad:
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        head = f"{len(bad)} of {len(vecs)} mismatch:\n  "
        raise Failure(head + "\n  ".join(bad[:20]) + more)
    print(f"  {len(vecs)} {section} vectors agree")


def _message(vec):
    kind = vec["kind"]
    data = payload_bytes(vec)

    def pipeline():
        return wire.validate(kind, wire.decode(data, wire.payload_limit(kind)), vec.get("role"))

    return outcome(pipeline), "valid" if vec["valid"] else vec["reason"]


def _topic(vec):
    if "reason" in vec:
        return outcome(wire.parse_topic, vec["prefix"], vec["topic"]), vec["reason"]
    parsed = wire.parse_topic(vec["prefix"], vec["topic"])
    as_bytes = wire.parse_topic(vec["prefix"], vec["topic"].encode())
    got = [list(parsed), list(as_bytes), wire.message_kind(parsed[0], parsed[2])]
    return got, [vec["parsed"], vec["parsed"], vec["kind"]]


def _ident(vec):
    return getattr(wire, "valid_" + vec["check"])(vec["value"]), vec["valid"]


def _builder(vec):
    msg = getattr(wire, vec["builder"])(*vec["args"], **vec["kwargs"])
    verdict = outcome(wire.validate, vec["kind"], msg, vec.get("role"))
    return [msg, verdict], [vec["expect"], "valid"]


def test_message_vectors_match_cpython():
    check_all("messages", _message)


def test_topic_vectors_match_cpython():
    check_all("topics", _topic)


def test_identifier_vectors_match_cpython():
    check_all("ids", _ident)


def test_builder_vectors_match_cpython():
    check_all("builders", _builder)


def test_bool_is_not_an_int_on_either_platform():
    # MicroPython: isinstance(True, int) is False; CPython: True. wire must not care.
    e = raises(wire.ProtocolError, wire.validate_rating, {"boot": 1, "seq": True, "score": 4})
    assert e.reason == "type:seq", e.reason


def test_encode_writes_compact_utf8_like_cpython():
    data = wire.encode({"lines": ["Loket 3 \u2013 Dukcapil"]}, wire.MAX_CONTROLLER_PAYLOAD)
    assert data == '{"lines":["Loket 3 \u2013 Dukcapil"]}'.encode(), data
    e = raises(wire.ProtocolError, wire.encode, {"pad": "x" * 1024}, wire.MAX_DEVICE_PAYLOAD)
    assert e.reason == "too_large", e.reason


def test_decode_accepts_bytes_bytearray_memoryview_and_str():
    raw = b'{"boot":1,"seq":1,"score":4}'
    for payload in (raw, bytearray(raw), memoryview(raw), raw.decode()):
        assert wire.decode(payload, wire.MAX_DEVICE_PAYLOAD)["score"] == 4


def test_topic_helpers_and_event_id():
    assert wire.dev_sub_topic("sigap", "disp-01") == "sigap/v1/dev/disp-01/cmd/#"
    assert wire.controller_subscriptions("sigap") == (
        "sigap/v1/dev/+/state",
        "sigap/v1/dev/+/evt/+",
    )
    assert wire.event_id("kiosk-01", wire.press(17, 42, "A")) == ("kiosk-01", 17, 42)
    topic = wire.dev_topic("sigap", "kiosk-01", "evt/rating")
    got = wire.parse_device_message("sigap", topic, wire.encode(wire.rating(3, 9, 2), 1024))
    assert got == ("kiosk-01", "rating", {"boot": 3, "seq": 9, "score": 2}), got


async def test_wire_works_inside_asyncio_tasks():
    # Shows async tests work in this port (no asyncio.run: the runner awaits us).
    import asyncio

    out = []

    async def board(seq):
        await asyncio.sleep_ms(1)
        out.append(wire.encode(wire.press(1, seq, "A"), wire.MAX_DEVICE_PAYLOAD))

    await asyncio.gather(board(1), board(2))
    assert len(out) == 2 and all(wire.decode(b, 1024)["key"] == "A" for b in out), out
