"""The controller's receive fast path for paho (controller/paho_fast.py), on a socket pair."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import paho.mqtt
import paho.mqtt.client as mqtt
import pytest

from controller import paho_fast


def publish_packet(topic: str, payload: bytes, mid: int) -> bytes:
    """An MQTT 3.1.1 PUBLISH, QoS 1."""
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + struct.pack("!H", mid) + payload
    rem = len(body)
    varint = bytearray()
    while True:
        byte, rem = rem % 128, rem // 128
        varint.append(byte | (128 if rem else 0))
        if not rem:
            break
    return bytes([0x32]) + bytes(varint) + body


@pytest.fixture
def pair() -> Iterator[tuple[mqtt.Client, socket.socket, list[mqtt.MQTTMessage]]]:
    """A paho client whose socket is one end of a socket pair (the other end plays the broker)."""
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv311)
    c.manual_ack_set(True)
    got: list[mqtt.MQTTMessage] = []
    c.on_message = lambda client, userdata, m: got.append(m)
    c._sock = ours  # noqa: SLF001 - as paho's connect leaves it
    yield c, broker, got
    c._sock = None  # noqa: SLF001
    ours.close()
    broker.close()


def test_paho_internals_are_the_pinned_ones() -> None:
    # Fails when paho-mqtt is upgraded or its private receive path changes: check
    # controller/paho_fast.py against the new source, then update PINNED.
    assert paho.mqtt.__version__ == paho_fast.PAHO_VERSION
    for name, digest in paho_fast.PINNED.items():
        assert paho_fast.source_digest(name) == digest, name
    assert paho_fast.supported()


def test_packets_in_the_buffer_are_read_without_the_socket_becoming_readable_again(pair) -> None:
    c, broker, got = pair
    assert paho_fast.speed_up(c)
    # 300 packets in one write: the first recv takes (nearly) all of them into the buffer.
    broker.sendall(b"".join(publish_packet(f"sigap/v1/dev/wl-{i:03d}/evt/reading", b'{"seq":%d}' % i, i + 1)
                            for i in range(300)))
    # What aiomqtt does once per readable event; with nothing in flight paho's own
    # loop_read reads ONE packet per call and the rest would wait for more bytes.
    assert c.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert [m.mid for m in got] == list(range(1, 301))
    assert got[299].topic == "sigap/v1/dev/wl-299/evt/reading"
    assert got[299].payload == b'{"seq":299}'
    assert c._sigap_fast.pending() == 0  # noqa: SLF001


def test_a_packet_split_across_reads_is_completed_when_the_rest_arrives(pair) -> None:
    c, broker, got = pair
    paho_fast.speed_up(c)
    big = publish_packet("sigap/v1/dev/wl-1/evt/reading", b"x" * 200, 7)
    whole = publish_packet("sigap/v1/dev/wl-0/evt/reading", b"{}", 6)
    broker.sendall(whole + big[:1])  # a whole packet, then only the command byte of the next
    c.loop_read()
    assert [m.mid for m in got] == [6]
    broker.sendall(big[1:2])  # the remaining length, then the body in two parts
    c.loop_read()
    broker.sendall(big[2:50])
    c.loop_read()
    assert [m.mid for m in got] == [6]
    broker.sendall(big[50:])
    c.loop_read()
    assert [m.mid for m in got] == [6, 7]
    assert got[1].payload == b"x" * 200


def test_messages_larger_than_one_chunk_arrive_whole(pair) -> None:
    c, broker, got = pair
    paho_fast.speed_up(c)
    payload = bytes(range(256)) * ((paho_fast.CHUNK * 2) // 256)
    data = publish_packet("t/big", payload, 1) + publish_packet("t/small", b"s", 2)
    broker.setblocking(False)
    sent = 0
    while len(got) < 2:
        try:
            sent += broker.send(data[sent:])
        except BlockingIOError:
            pass
        c.loop_read()
    assert [m.payload for m in got] == [payload, b"s"]


def test_a_closed_connection_is_reported_as_lost(pair) -> None:
    c, broker, got = pair
    paho_fast.speed_up(c)
    lost = []
    c.on_disconnect = lambda *a: lost.append(a)
    broker.sendall(publish_packet("t/a", b"1", 1))
    broker.close()
    rcs = [c.loop_read() for _ in range(2)]  # the socket stays readable at end of file
    assert [m.mid for m in got] == [1]
    assert mqtt.MQTT_ERR_CONN_LOST in rcs or lost


def test_a_new_socket_starts_with_an_empty_buffer(pair) -> None:
    c, broker, got = pair
    paho_fast.speed_up(c)
    broker.sendall(publish_packet("t/a", b"1", 1) + publish_packet("t/b", b"2", 2)[:3])
    c.loop_read()
    assert [m.mid for m in got] == [1]
    ours2, broker2 = socket.socketpair()
    ours2.setblocking(False)
    old = c._sock  # noqa: SLF001
    c._sock = ours2  # noqa: SLF001 - a reconnect
    c._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,  # noqa: SLF001
                    "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0}
    try:
        broker2.sendall(publish_packet("t/c", b"3", 3))
        c.loop_read()
        assert [m.mid for m in got] == [1, 3]
    finally:
        c._sock = old  # noqa: SLF001
        ours2.close()
        broker2.close()


def test_per_topic_callbacks_still_get_their_messages(pair) -> None:
    c, broker, got = pair
    paho_fast.speed_up(c)
    filtered: list[int] = []
    c.message_callback_add("t/special", lambda client, userdata, m: filtered.append(m.mid))
    broker.sendall(publish_packet("t/special", b"1", 1) + publish_packet("t/other", b"2", 2))
    c.loop_read()
    assert filtered == [1]
    assert [m.mid for m in got] == [2]


def test_an_unknown_paho_is_left_alone(monkeypatch) -> None:
    monkeypatch.setattr(paho_fast, "_SUPPORTED", None)
    monkeypatch.setattr(paho.mqtt, "__version__", "9.9.9")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t")
    assert not paho_fast.speed_up(c)
    assert "_sock_recv" not in vars(c)
    monkeypatch.setattr(paho_fast, "_SUPPORTED", None)


def test_the_bus_queues_each_message_as_a_tuple_and_survives_a_non_utf8_topic() -> None:
    import asyncio

    from controller.bus import _Inbox

    q: asyncio.Queue[object] = asyncio.Queue()
    inbox = _Inbox(q)
    good = mqtt.MQTTMessage(mid=5, topic=b"sigap/v1/dev/wl-1/evt/reading")
    good.payload, good.qos, good.retain = b"{}", 1, False
    bad = mqtt.MQTTMessage(mid=6, topic=b"sigap/v1/dev/\xff/evt/reading")
    bad.payload, bad.qos = b"{}", 1
    inbox.on_message(None, None, good)
    inbox.on_message(None, None, bad)
    inbox.put(b"t/x", b"p", True, 0, 0)
    assert q.get_nowait() == ("sigap/v1/dev/wl-1/evt/reading", b"{}", False, 1, 5)
    topic, _, _, qos, mid = q.get_nowait()  # type: ignore[misc]
    assert (topic, qos, mid) == ("sigap/v1/dev/\ufffd/evt/reading", 1, 6)
    assert q.get_nowait() == ("t/x", b"p", True, 0, 0)


def raw_publish(topic: bytes, payload: bytes, qos: int, mid: int = 0, retain: bool = False) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"") + payload
    assert len(body) < 128
    return bytes([0x30 | qos << 1 | int(retain), len(body)]) + body


def test_the_publish_fast_path_hands_every_field_to_the_sink(pair) -> None:
    c, broker, got = pair
    sunk: list[tuple[bytes, bytes, bool, int, int]] = []
    assert paho_fast.speed_up(c, lambda *m: sunk.append(m))
    broker.sendall(raw_publish(b"a/b", b"one", 1, 7) + raw_publish(b"r/t", b"", 1, 8, retain=True)
                   + raw_publish(b"q/0", b"zero", 0) + raw_publish(b"\xff/x", b"{}", 1, 9))
    assert c.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert sunk == [(b"a/b", b"one", False, 1, 7), (b"r/t", b"", True, 1, 8), (b"q/0", b"zero", False, 0, 0),
                    (b"\xff/x", b"{}", False, 1, 9)]
    assert got == []  # not through paho's MQTTMessage path
    assert all(type(f) is bytes for m in sunk for f in m[:2])


def test_without_manual_ack_the_fast_path_still_acknowledges(pair) -> None:
    c, broker, got = pair
    c.manual_ack_set(False)
    sent: list[int] = []
    c._send_puback = lambda mid: sent.append(mid) or mqtt.MQTT_ERR_SUCCESS  # noqa: SLF001
    paho_fast.speed_up(c, lambda *m: None)
    broker.sendall(raw_publish(b"a/b", b"x", 1, 42) + raw_publish(b"a/b", b"x", 0))
    c.loop_read()
    assert sent == [42]


def test_qos2_and_per_topic_callbacks_take_paho_s_own_path(pair) -> None:
    c, broker, got = pair
    sunk: list[object] = []
    paho_fast.speed_up(c, lambda *m: sunk.append(m))
    c._send_pubrec = lambda mid: mqtt.MQTT_ERR_SUCCESS  # noqa: SLF001
    broker.sendall(raw_publish(b"q/2", b"two", 2, 3))
    c.loop_read()
    assert sunk == [] and 3 in c._in_messages  # noqa: SLF001 - paho keeps it until PUBREL
    filtered: list[int] = []
    c.message_callback_add("t/special", lambda client, userdata, m: filtered.append(m.mid))
    broker.sendall(raw_publish(b"t/special", b"1", 1, 4) + raw_publish(b"t/other", b"2", 1, 5))
    c.loop_read()
    assert filtered == [4] and [m.mid for m in got] == [5] and sunk == []


def test_a_publish_with_an_empty_topic_is_a_protocol_error_as_in_paho(pair) -> None:
    c, broker, got = pair
    sunk: list[object] = []
    paho_fast.speed_up(c, lambda *m: sunk.append(m))
    broker.sendall(raw_publish(b"", b"x", 1, 1))
    assert c.loop_read() != mqtt.MQTT_ERR_SUCCESS or c._sock is None  # noqa: SLF001
    assert sunk == [] and got == []
