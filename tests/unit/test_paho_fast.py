"""The controller's receive fast path for paho (controller/paho_fast.py), on a socket pair."""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
from collections.abc import Iterator

import paho.mqtt
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

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


def new_client() -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv311)
    c.manual_ack_set(True)
    return c


@contextlib.contextmanager
def on_socket_pair(c: mqtt.Client) -> Iterator[socket.socket]:
    """The client's socket is one end of a new socket pair (as paho's connect leaves it); yields
    the other end, which plays the broker. Afterwards the client's old socket is back."""
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    old = c._sock  # noqa: SLF001
    c._sock = ours  # noqa: SLF001
    try:
        yield broker
    finally:
        c._sock = old  # noqa: SLF001
        ours.close()
        broker.close()


@pytest.fixture
def pair() -> Iterator[tuple[mqtt.Client, socket.socket, list[mqtt.MQTTMessage]]]:
    """A paho client on a socket pair, and the messages paho's own path handed to on_message."""
    c = new_client()
    got: list[mqtt.MQTTMessage] = []
    c.on_message = lambda client, userdata, m: got.append(m)
    with on_socket_pair(c) as broker:
        yield c, broker, got


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
    with on_socket_pair(c) as broker2:  # a reconnect
        c._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [],  # noqa: SLF001
                        "remaining_mult": 1, "remaining_length": 0, "packet": bytearray(b""), "to_process": 0,
                        "pos": 0}
        broker2.sendall(publish_packet("t/c", b"3", 3))
        c.loop_read()
        assert [m.mid for m in got] == [1, 3]


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


# The framer: whole PUBLISH packets taken straight from the receive buffer.

def packet(header: int, body: bytes) -> bytes:
    """An MQTT packet: fixed header byte, remaining length (1 to 4 bytes), body."""
    rem = len(body)
    varint = bytearray()
    while True:
        byte, rem = rem % 128, rem // 128
        varint.append(byte | (128 if rem else 0))
        if not rem:
            break
    return bytes([header]) + bytes(varint) + body


def publish(topic: bytes, payload: bytes, qos: int = 1, mid: int = 0, retain: bool = False) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"") + payload
    return packet(0x30 | qos << 1 | int(retain), body)


PUBACK_77 = packet(0x40, struct.pack("!H", 77))
PINGRESP = packet(0xD0, b"")


class Recorder:
    """A client with a sink, an outgoing QoS 1 message (mid 77) waiting for its PUBACK and a PINGREQ
    waiting for its PINGRESP; everything that happens to it goes into one list, in order."""

    def __init__(self, c: mqtt.Client):
        self.client = c
        self.events: list[tuple[object, ...]] = []
        self.handled: list[int] = []  # the packets paho's own _packet_read handled (command bytes)
        assert paho_fast.speed_up(c, lambda *m: self.events.append(("sink", *m)))
        self.fast = c._sigap_fast  # noqa: SLF001
        out = mqtt.MQTTMessage(mid=77, topic=b"sigap/v1/site/kota/water/wl-1")
        out.qos, out.info = 1, mqtt.MQTTMessageInfo(77)
        c._out_messages[77] = out  # noqa: SLF001
        c._inflight_messages = 1  # noqa: SLF001
        c.on_publish = lambda client, userdata, mid, rc, props: self.events.append(("puback", mid))
        c._ping_t = 1.0  # noqa: SLF001
        handle = c._packet_handle  # noqa: SLF001

        def counted() -> mqtt.MQTTErrorCode:
            self.handled.append(c._in_packet["command"])  # noqa: SLF001
            return handle()

        c._packet_handle = counted  # type: ignore[method-assign]  # noqa: SLF001


# PUBLISH QoS 1, QoS 0, retained, a 2-byte and a 3-byte remaining length; a PUBACK and a PINGRESP between them.
STREAM = [
    publish(b"sigap/v1/dev/wl-1/evt/reading", b'{"seq":1}', 1, 1),
    publish(b"sigap/v1/dev/wl-2/state", b"online", 0),
    PUBACK_77,
    publish(b"sigap/v1/site/kota/water/wl-3", b"r" * 200, 1, 2, retain=True),
    PINGRESP,
    publish(b"sigap/v1/dev/wl-4/evt/reading", b"L" * 20000, 1, 65535),
    publish(b"a", b"", 0, retain=True),
]
EVENTS: list[list[tuple[object, ...]]] = [  # what each packet of STREAM makes happen
    [("sink", b"sigap/v1/dev/wl-1/evt/reading", b'{"seq":1}', False, 1, 1)],
    [("sink", b"sigap/v1/dev/wl-2/state", b"online", False, 0, 0)],
    [("puback", 77)],
    [("sink", b"sigap/v1/site/kota/water/wl-3", b"r" * 200, True, 1, 2)],
    [],  # PINGRESP: _ping_t back to 0
    [("sink", b"sigap/v1/dev/wl-4/evt/reading", b"L" * 20000, False, 1, 65535)],
    [("sink", b"a", b"", True, 0, 0)],
]
EXPECTED = [e for events in EVENTS for e in events]


def test_whole_publish_packets_bypass_paho_and_the_rest_keep_their_place(pair) -> None:
    c, broker, got = pair
    r = Recorder(c)
    broker.sendall(b"".join(STREAM[:5]) * 20 + b"".join(STREAM[5:]))  # 27 KB: one read takes it all
    assert c.loop_read() == mqtt.MQTT_ERR_SUCCESS
    again = [e for e in EXPECTED[:4] if e[0] == "sink"]  # a PUBACK for mid 77 only counts once
    assert r.events == EXPECTED[:4] + again * 19 + EXPECTED[4:]
    # Only the PINGRESPs went through paho's _packet_read; one recv took everything (and a
    # second found the socket empty).
    assert r.handled == [0xD0] * 20
    assert r.fast.recvs == 2 and r.fast.pending() == 0
    assert c._ping_t == 0 and 77 not in c._out_messages and c._inflight_messages == 0  # noqa: SLF001
    assert got == []


def test_publishes_split_at_every_byte_boundary_arrive_whole_and_in_order() -> None:
    data = b"".join(STREAM)
    for cut in range(1, len(data)):
        c = new_client()
        with on_socket_pair(c) as broker:
            r = Recorder(c)
            broker.sendall(data[:cut])
            assert c.loop_read() == mqtt.MQTT_ERR_SUCCESS
            whole = sum(1 for end in itertools.accumulate(map(len, STREAM)) if end <= cut)
            assert r.events == [e for events in EVENTS[:whole] for e in events], cut  # what is whole, no more
            broker.sendall(data[cut:])
            assert c.loop_read() == mqtt.MQTT_ERR_SUCCESS
            assert r.events == EXPECTED, cut


def test_a_stream_arriving_one_byte_at_a_time_is_still_read_in_order(pair) -> None:
    c, broker, got = pair
    r = Recorder(c)
    data = b"".join(STREAM[:5])
    for i in range(len(data)):
        broker.sendall(data[i:i + 1])
        assert c.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert r.events == EXPECTED[:4]


def test_each_call_reads_the_socket_a_bounded_number_of_times_so_a_flood_cannot_starve_the_loop(pair, monkeypatch) -> None:
    c, broker, got = pair
    r = Recorder(c)
    r.fast.reads_per_call = 2
    monkeypatch.setattr(paho_fast, "CHUNK", 4096)  # five reads' worth fits in the socket pair's buffer
    one = publish(b"sigap/v1/dev/wl-1/evt/reading", b"x" * 100, 1, 1)
    total = 5 * paho_fast.CHUNK // len(one)
    broker.sendall(one * total)  # five reads' worth waiting in the socket
    c.loop_read()
    assert r.fast.recvs == 2 and r.fast.pending() == 0
    assert 0 < len(r.events) < total
    c.loop_read()
    assert r.fast.recvs == 4
    c.loop_read()  # the fifth read, and a sixth that finds the socket empty
    assert len(r.events) == total and r.fast.recvs == 6


def test_a_puback_completes_our_publish_once_and_lets_the_next_queued_one_go(pair) -> None:
    c, broker, got = pair
    sunk: list[object] = []
    paho_fast.speed_up(c, lambda *m: sunk.append(m))
    c.max_inflight_messages_set(1)
    c._state = mqtt._ConnectionState.MQTT_CS_CONNECTED  # noqa: SLF001
    published: list[int] = []
    reasons: list[object] = []
    c.on_publish = lambda client, userdata, mid, rc, props: published.append(mid) or reasons.append((rc, props))
    first = c.publish("sigap/v1/site/kota/water/wl-1", b"1", qos=1, retain=True)
    second = c.publish("sigap/v1/site/kota/water/wl-2", b"2", qos=1, retain=True)
    assert broker.recv(1000)[0] == 0x33  # the first went out; the second waits for its PUBACK
    handled: list[int] = []
    handle = c._packet_handle  # noqa: SLF001
    c._packet_handle = lambda: handled.append(c._in_packet["command"]) or handle()  # type: ignore[method-assign]  # noqa: SLF001
    puback = packet(0x40, struct.pack("!H", first.mid))
    broker.sendall(puback + puback + publish(b"t/a", b"x", 1, 9))  # the second PUBACK is a repeat
    assert c.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert published == [first.mid] and first.is_published() and not second.is_published()
    assert sunk == [(b"t/a", b"x", False, 1, 9)] and handled == []
    sent = broker.recv(1000)
    assert sent[0] == 0x33 and b"wl-2" in sent  # the inflight window let the second go
    broker.sendall(packet(0x40, struct.pack("!H", second.mid)))
    c.loop_read()
    assert published == [first.mid, second.mid] and second.is_published()
    # What paho's own _handle_pubackcomp gives on_publish for an MQTT 3.1.1 PUBACK.
    assert all(rc == ReasonCode(PacketTypes.PUBACK) and not rc.is_failure for rc, _ in reasons)
    assert all(isinstance(p, Properties) and p.packetType == PacketTypes.PUBACK and not p.json()
               for _, p in reasons)
    assert c._inflight_messages == 0 and not c._out_messages  # noqa: SLF001


def test_a_puback_of_the_wrong_length_is_paho_s_protocol_error(pair) -> None:
    c, broker, got = pair
    r = Recorder(c)
    broker.sendall(packet(0x40, struct.pack("!HB", 77, 0)))
    assert c.loop_read() != mqtt.MQTT_ERR_SUCCESS or c._sock is None  # noqa: SLF001
    assert r.handled == [0x40] and r.events == []


def test_the_framer_records_when_bytes_came_so_keepalive_sends_no_ping(pair) -> None:
    c, broker, got = pair
    r = Recorder(c)
    c._ping_t = 0  # noqa: SLF001
    c._keepalive = 15  # noqa: SLF001
    c._state = mqtt._ConnectionState.MQTT_CS_CONNECTED  # noqa: SLF001
    now = mqtt.time_func()
    c._last_msg_out = now  # noqa: SLF001 - we sent something just now
    c._last_bytes_received = now - 60  # noqa: SLF001 - and heard nothing for a minute
    broker.sendall(publish(b"t/a", b"1", 1, 1) + publish(b"t/b", b"2", 0))
    c.loop_read()
    assert len(r.events) == 2 and r.handled == []  # the framer alone
    assert c._last_bytes_received >= now  # noqa: SLF001
    c._check_keepalive()  # noqa: SLF001
    assert c._ping_t == 0 and not c.want_write()  # noqa: SLF001 - no PINGREQ: the broker was heard


def test_a_malformed_publish_stops_the_framer_and_paho_reports_it(pair) -> None:
    c, broker, got = pair
    r = Recorder(c)
    broker.sendall(publish(b"t/a", b"1", 1, 1) + publish(b"", b"x", 1, 2) + publish(b"t/c", b"3", 1, 3))
    rc = c.loop_read()
    assert rc != mqtt.MQTT_ERR_SUCCESS or c._sock is None  # noqa: SLF001
    assert r.events == [("sink", b"t/a", b"1", False, 1, 1)]
    assert r.handled == [0x32]


def test_end_of_file_found_by_the_framer_is_reported_as_paho_would(pair) -> None:
    c, broker, got = pair
    r = Recorder(c)
    lost: list[object] = []
    c.on_disconnect = lambda *a: lost.append(a)
    broker.close()
    assert c.loop_read() == mqtt.MQTT_ERR_CONN_LOST
    assert r.events == [] and lost


def test_ack_many_sends_every_puback_in_order_in_one_write(pair) -> None:
    c, broker, got = pair
    paho_fast.speed_up(c, lambda *m: None)
    sends: list[bytes] = []
    send = c._sock_send  # noqa: SLF001
    c._sock_send = lambda buf: sends.append(bytes(buf)) or send(buf)  # type: ignore[method-assign]  # noqa: SLF001
    assert paho_fast.ack_many(c, [1, 2, 300, 65535]) == mqtt.MQTT_ERR_SUCCESS
    assert paho_fast.ack_many(c, []) == mqtt.MQTT_ERR_SUCCESS
    wire = bytes.fromhex("40020001" "40020002" "4002012c" "4002ffff")
    assert sends == [wire]
    assert broker.recv(100) == wire


def test_ack_many_on_a_client_left_alone_acks_one_by_one(pair) -> None:
    c, broker, got = pair  # not sped up (as on an unknown paho)
    sends: list[bytes] = []
    send = c._sock_send  # noqa: SLF001
    c._sock_send = lambda buf: sends.append(bytes(buf)) or send(buf)  # type: ignore[method-assign]  # noqa: SLF001
    assert paho_fast.ack_many(c, [5, 6]) == mqtt.MQTT_ERR_SUCCESS
    assert sends == [bytes.fromhex("40020005"), bytes.fromhex("40020006")]
