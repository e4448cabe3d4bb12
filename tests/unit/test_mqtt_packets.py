"""The board's MQTT 3.1.1 packet codec (firmware/core/mqtt.py), without a network."""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware.core import clock, mqtt
from firmware.core.mqtt import MQTTClient, MQTTError

# Remaining Length boundaries from the spec's table [2.2.3]: the last value of
# each byte count and the first of the next.
VARINT_CASES = [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"),
    (2097151, b"\xff\xff\x7f"),
    (2097152, b"\x80\x80\x80\x01"),
    (268435455, b"\xff\xff\xff\x7f"),
]


def feed(data: bytes) -> asyncio.StreamReader:
    """A stream reader that holds `data` and then end-of-file."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


# -- remaining length ------------------------------------------------------------


@pytest.mark.parametrize(("value", "encoded"), VARINT_CASES)
def test_remaining_length_boundaries_encode_and_decode(value, encoded):
    assert mqtt.encode_length(value) == encoded
    assert mqtt.decode_length(encoded) == (value, len(encoded))


@pytest.mark.parametrize("value", [-1, 268435456])
def test_remaining_length_out_of_range_is_refused(value):
    with pytest.raises(MQTTError) as err:
        mqtt.encode_length(value)
    assert err.value.code == "too_long"


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff", b"\xff\xff\xff\xff\x01"])
def test_remaining_length_truncated_or_five_bytes_is_malformed(data):
    with pytest.raises(MQTTError) as err:
        mqtt.decode_length(data)
    assert err.value.code == "malformed"


@given(st.integers(0, mqtt.MAX_REMAINING))
def test_remaining_length_round_trips(value):
    encoded = mqtt.encode_length(value)
    assert 1 <= len(encoded) <= 4
    assert mqtt.decode_length(b"\x30" + encoded, 1) == (value, 1 + len(encoded))


@pytest.mark.parametrize(("value", "encoded"), VARINT_CASES)
async def test_read_header_decodes_length_from_stream(value, encoded):
    assert await mqtt.read_header(feed(b"\x30" + encoded)) == (0x30, value)


async def test_read_header_five_byte_length_is_malformed():
    with pytest.raises(MQTTError) as err:
        await mqtt.read_header(feed(b"\x30\xff\xff\xff\xff\x01"))
    assert err.value.code == "malformed"


async def test_read_header_at_end_of_stream_raises_eof():
    with pytest.raises(EOFError):
        await mqtt.read_header(feed(b"\x30"))


async def test_read_packet_refuses_oversized_body():
    with pytest.raises(MQTTError) as err:
        await mqtt.read_packet(feed(b"\x30\x80\x01" + bytes(128)), max_size=127)
    assert err.value.code == "too_large"


async def test_read_packet_returns_body():
    packet = mqtt.publish_packet("a/b", b"x" * 300, qos=1, pid=9)
    first, body = await mqtt.read_packet(feed(packet))
    assert mqtt.parse_publish(first, body) == ("a/b", b"x" * 300, 1, False, False, 9)


# -- CONNECT / CONNACK -------------------------------------------------------------


def test_connect_minimal_is_byte_exact():
    assert mqtt.connect_packet("c1", keepalive=60) == (
        b"\x10\x0e" + b"\x00\x04MQTT\x04" + b"\x02" + b"\x00\x3c" + b"\x00\x02c1"
    )


def test_connect_with_will_user_password_sets_flags_and_field_order():
    pkt = mqtt.connect_packet(
        "kiosk-01",
        30,
        will=("s/state", b'{"online":false}', True, 1),
        user="kiosk-01",
        password="pw",
    )
    first, body, end = mqtt.split_packet(pkt)
    assert (first, end) == (0x10, len(pkt))
    assert body[:7] == b"\x00\x04MQTT\x04"
    # user | password | will retain | will QoS 1 | will | clean session
    assert body[7] == 0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02
    assert struct.unpack("!H", body[8:10]) == (30,)
    fields, pos = [], 10
    while pos < len(body):
        (n,) = struct.unpack_from("!H", body, pos)
        fields.append(body[pos + 2 : pos + 2 + n])
        pos += 2 + n
    assert fields == [b"kiosk-01", b"s/state", b'{"online":false}', b"kiosk-01", b"pw"]


def test_connect_password_without_user_is_refused():
    with pytest.raises(MQTTError):
        mqtt.connect_packet("c", password="pw")


@pytest.mark.parametrize("keepalive", [-1, 65536])
def test_connect_keepalive_out_of_range_is_refused(keepalive):
    with pytest.raises(MQTTError):
        mqtt.connect_packet("c", keepalive)


def test_connack_accepted_and_refused_codes():
    assert mqtt.parse_connack(b"\x00\x00") == (False, 0)
    assert mqtt.parse_connack(b"\x01\x00") == (True, 0)
    assert mqtt.parse_connack(b"\x00\x05") == (False, 5)


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x00\x00", b"\x02\x00"])
def test_connack_malformed(body):
    with pytest.raises(MQTTError) as err:
        mqtt.parse_connack(body)
    assert err.value.code == "malformed"


# -- PUBLISH / PUBACK --------------------------------------------------------------


def test_publish_qos0_is_byte_exact():
    assert mqtt.publish_packet("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"


def test_publish_qos1_retain_dup_is_byte_exact():
    pkt = mqtt.publish_packet("a/b", b"hi", qos=1, retain=True, dup=True, pid=0x0102)
    assert pkt == b"\x3b\x09\x00\x03a/b\x01\x02hi"


def test_publish_dup_flag_only_on_qos1():
    assert mqtt.publish_packet("t", b"", qos=0, dup=True)[0] & 0x08 == 0
    assert mqtt.publish_packet("t", b"", qos=1, dup=False, pid=1)[0] & 0x08 == 0
    assert mqtt.publish_packet("t", b"", qos=1, dup=True, pid=1)[0] & 0x08 == 0x08


def test_publish_header_leaves_payload_to_caller():
    header = mqtt.publish_header("t/x", 1000, qos=1, pid=7)
    first, n, pos = header[0], *mqtt.decode_length(header, 1)
    assert first == 0x32
    assert n == 2 + 3 + 2 + 1000
    assert header[pos:] == b"\x00\x03t/x\x00\x07"


def test_publish_str_payload_is_utf8():
    assert mqtt.publish_packet("t", "é").endswith("é".encode())


@pytest.mark.parametrize("pid", [0, 65536])
def test_publish_qos1_pid_out_of_range_is_refused(pid):
    with pytest.raises(MQTTError):
        mqtt.publish_packet("t", b"", qos=1, pid=pid)


@pytest.mark.parametrize("topic", ["", "a/+", "a/#"])
def test_publish_topic_without_wildcards(topic):
    with pytest.raises(MQTTError):
        mqtt.publish_packet(topic, b"")


def test_publish_qos2_is_not_spoken():
    with pytest.raises(MQTTError):
        mqtt.publish_packet("t", b"", qos=2, pid=1)


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("retain", [False, True])
@pytest.mark.parametrize("dup", [False, True])
def test_publish_round_trips(qos, retain, dup):
    pkt = mqtt.publish_packet("sigap/v1/dev/x/cmd/show", b'{"lines":[]}', qos, retain, dup, 65535)
    first, body, _ = mqtt.split_packet(pkt)
    assert mqtt.parse_publish(first, body) == (
        "sigap/v1/dev/x/cmd/show",
        b'{"lines":[]}',
        qos,
        retain,
        dup and qos == 1,
        65535 if qos else 0,
    )


def test_publish_large_payload_uses_multibyte_length():
    payload = bytes(range(256)) * 80  # 20480 bytes: a 3-byte Remaining Length
    pkt = mqtt.publish_packet("t", payload, qos=1, pid=3)
    assert pkt[1:4] == mqtt.encode_length(2 + 1 + 2 + len(payload))
    first, body, end = mqtt.split_packet(pkt)
    assert end == len(pkt)
    assert mqtt.parse_publish(first, body)[1] == payload


@pytest.mark.parametrize(
    ("first", "body"),
    [
        (0x30, b""),  # no topic length
        (0x30, b"\x00"),  # half a topic length
        (0x30, b"\x00\x05abc"),  # topic runs past the body
        (0x32, b"\x00\x01t"),  # QoS 1 without packet id
        (0x32, b"\x00\x01t\x00\x00"),  # packet id 0
        (0x36, b"\x00\x01t\x00\x01"),  # QoS 3
        (0x30, b"\x00\x02\xff\xfe"),  # topic not UTF-8
    ],
)
def test_publish_malformed(first, body):
    with pytest.raises(MQTTError) as err:
        mqtt.parse_publish(first, body)
    assert err.value.code == "malformed"


def test_puback_is_byte_exact_and_parses():
    assert mqtt.puback_packet(0xABCD) == b"\x40\x02\xab\xcd"
    assert mqtt.parse_pid(b"\xab\xcd") == 0xABCD


@pytest.mark.parametrize("body", [b"", b"\x01", b"\x00\x01\x00"])
def test_puback_malformed(body):
    with pytest.raises(MQTTError):
        mqtt.parse_pid(body)


# -- SUBSCRIBE / SUBACK, PING, DISCONNECT -------------------------------------------


def test_subscribe_is_byte_exact():
    pkt = mqtt.subscribe_packet(1, [("cmd/#", 1), ("ctl", 0)])
    assert pkt == b"\x82\x10\x00\x01" + b"\x00\x05cmd/#\x01" + b"\x00\x03ctl\x00"


def test_subscribe_without_topics_is_refused():
    with pytest.raises(MQTTError):
        mqtt.subscribe_packet(1, [])


def test_suback_granted_and_failure_codes():
    assert mqtt.parse_suback(b"\x00\x07\x01\x80") == (7, [1, 0x80])


@pytest.mark.parametrize("body", [b"", b"\x00\x07", b"\x00\x07\x03"])
def test_suback_malformed(body):
    with pytest.raises(MQTTError):
        mqtt.parse_suback(body)


def test_ping_and_disconnect_packets():
    assert mqtt.PINGREQ_PACKET == b"\xc0\x00"
    assert mqtt.DISCONNECT_PACKET == b"\xe0\x00"
    assert mqtt.split_packet(b"\xd0\x00") == (0xD0, b"", 2)


def test_split_packet_walks_a_byte_stream():
    stream = mqtt.puback_packet(1) + b"\xd0\x00" + mqtt.publish_packet("t", b"p")
    pos, kinds = 0, []
    while pos < len(stream):
        first, _, pos = mqtt.split_packet(stream, pos)
        kinds.append(first & 0xF0)
    assert kinds == [0x40, 0xD0, 0x30]


def test_split_packet_truncated_body_is_malformed():
    with pytest.raises(MQTTError):
        mqtt.split_packet(mqtt.publish_packet("t", b"payload")[:-1])


@given(st.binary(max_size=64), st.integers(0, 255))
def test_garbage_raises_only_mqtt_error(data, first):
    # Whatever a broken broker sends, the parsers fail with MQTTError (the
    # client then closes the link), never with IndexError or struct.error.
    for parse in (
        lambda: mqtt.split_packet(bytes([first]) + data),
        lambda: mqtt.parse_publish(first, data),
        lambda: mqtt.parse_suback(data),
        lambda: mqtt.parse_connack(data),
        lambda: mqtt.parse_pid(data),
    ):
        try:
            parse()
        except MQTTError:
            pass


# -- client bookkeeping that needs no network ----------------------------------------


def test_packet_ids_wrap_to_1_never_0_and_skip_ids_in_use():
    client = MQTTClient("c", "127.0.0.1")
    client._pid = 65534
    assert client._new_pid() == 65535
    assert client._new_pid() == 1
    client._pid = 65535
    client._acks[1] = [None, None]
    assert client._new_pid() == 2


def test_backoff_is_full_jitter_within_capped_exponential():
    client = MQTTClient("c", "127.0.0.1", backoff_min_ms=100, backoff_max_ms=5000)
    for attempt in range(12):
        cap = min(5000, 100 * 2**attempt)
        delays = [client.backoff_ms(attempt) for _ in range(300)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap // 2  # spread over the whole range, not fixed
        assert min(delays) < cap // 2


def test_clock_ticks_wrap_like_micropython():
    top = (1 << 30) - 1
    assert clock.ticks_add(top, 1) == 0
    assert clock.ticks_diff(clock.ticks_add(top, 5), top) == 5
    assert clock.ticks_diff(top, clock.ticks_add(top, 5)) == -5
    assert 0 <= clock.ticks_ms() <= top
