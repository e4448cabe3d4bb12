# The board's MQTT client under real MicroPython (the WebAssembly port, run by
# tests/mpy/run.mjs with firmware/ importable from /lib).
#
# Plain tests check the packet codec and the client's bookkeeping. That port
# has no sockets, so the async tests run the whole MQTTClient (its tasks,
# Lock, Event, wait_for timeouts and cancellation: MicroPython's asyncio, not
# CPython's) against FakeBroker, an in-memory broker behind the same stream
# interface that asyncio.open_connection returns.
import asyncio
import struct

from firmware.core import clock, mqtt
from firmware.core.mqtt import MQTTClient, MQTTError

VARINTS = (
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"),
    (2097151, b"\xff\xff\x7f"),
    (2097152, b"\x80\x80\x80\x01"),
    (268435455, b"\xff\xff\xff\x7f"),
)


def raises_code(fn, code=None):
    try:
        fn()
    except MQTTError as e:
        return code is None or e.code == code
    return False


class FakeReader:
    """Serves bytes from memory through readexactly(), as asyncio streams do."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    async def readexactly(self, n):
        if self.pos + n > len(self.data):
            raise EOFError
        self.pos += n
        return self.data[self.pos - n : self.pos]


def drive(coro):
    # Run a coroutine that never suspends to its end and return its result.
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("coroutine suspended")


def test_remaining_length_boundaries():
    for value, encoded in VARINTS:
        assert mqtt.encode_length(value) == encoded, value
        assert mqtt.decode_length(encoded) == (value, len(encoded)), value


def test_remaining_length_malformed():
    assert raises_code(lambda: mqtt.encode_length(268435456), "too_long")
    assert raises_code(lambda: mqtt.decode_length(b"\xff\xff\xff\xff\x01"), "malformed")
    assert raises_code(lambda: mqtt.decode_length(b"\x80"), "malformed")


def test_read_header_from_stream():
    for value, encoded in VARINTS:
        assert drive(mqtt.read_header(FakeReader(b"\x30" + encoded))) == (0x30, value)
    assert raises_code(
        lambda: drive(mqtt.read_header(FakeReader(b"\x30\xff\xff\xff\xff\x01"))), "malformed"
    )


def test_read_packet_returns_body():
    pkt = mqtt.publish_packet("a/b", b"x" * 200, qos=1, pid=5)
    first, body = drive(mqtt.read_packet(FakeReader(pkt)))
    assert mqtt.parse_publish(first, body) == ("a/b", b"x" * 200, 1, False, False, 5)


def test_connect_bytes():
    assert mqtt.connect_packet("c1", 60) == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1"
    pkt = mqtt.connect_packet("b", 30, ("s", b"w", True, 1), "u", "p")
    first, body, _ = mqtt.split_packet(pkt)
    assert first == 0x10
    assert body[7] == 0xEE  # user, password, will retain, will QoS 1, will, clean
    assert struct.unpack("!H", body[8:10])[0] == 30
    assert raises_code(lambda: mqtt.connect_packet("c", 60, None, None, "p"))


def test_connack():
    assert mqtt.parse_connack(b"\x00\x00") == (False, 0)
    assert mqtt.parse_connack(b"\x00\x05") == (False, 5)
    assert raises_code(lambda: mqtt.parse_connack(b"\x00"), "malformed")


def test_publish_bytes_and_dup_flag():
    assert mqtt.publish_packet("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert (
        mqtt.publish_packet("a/b", b"hi", 1, True, True, 0x0102) == b"\x3b\x09\x00\x03a/b\x01\x02hi"
    )
    assert mqtt.publish_packet("t", b"", 0, False, True)[0] & 0x08 == 0
    assert raises_code(lambda: mqtt.publish_packet("t", b"", 1, False, False, 0))
    assert raises_code(lambda: mqtt.publish_packet("a/#", b""), "bad_topic")


def test_publish_round_trip():
    for qos in (0, 1):
        for retain in (False, True):
            pkt = mqtt.publish_packet("d/x/cmd/show", b'{"a":1}', qos, retain, True, 65535)
            first, body, end = mqtt.split_packet(pkt)
            assert end == len(pkt)
            got = mqtt.parse_publish(first, body)
            assert got == ("d/x/cmd/show", b'{"a":1}', qos, retain, qos == 1, 65535 if qos else 0)


def test_publish_malformed():
    for first, body in (
        (0x30, b""),
        (0x30, b"\x00\x05abc"),
        (0x32, b"\x00\x01t"),
        (0x32, b"\x00\x01t\x00\x00"),
        (0x36, b"\x00\x01t\x00\x01"),
        (0x30, b"\x00\x02\xff\xfe"),
    ):
        assert raises_code(lambda f=first, b=body: mqtt.parse_publish(f, b), "malformed"), body


def test_puback_subscribe_suback():
    assert mqtt.puback_packet(0xABCD) == b"\x40\x02\xab\xcd"
    assert mqtt.parse_pid(b"\xab\xcd") == 0xABCD
    assert raises_code(lambda: mqtt.parse_pid(b"\x01"), "malformed")
    pkt = mqtt.subscribe_packet(1, [("cmd/#", 1), ("ctl", 0)])
    assert pkt == b"\x82\x10\x00\x01\x00\x05cmd/#\x01\x00\x03ctl\x00"
    assert mqtt.parse_suback(b"\x00\x07\x01\x80") == (7, [1, 0x80])
    assert raises_code(lambda: mqtt.parse_suback(b"\x00\x07\x03"), "malformed")


def test_outbox_overflow_drops_oldest():
    client = MQTTClient("b1", "127.0.0.1", outbox_size=3)
    results = [client.publish("e", b"m%d" % i) for i in range(5)]
    assert results == [True, True, True, False, False]
    assert client.stats["dropped"] == 2
    assert client.pending() == 3
    assert [entry[1] for entry in client._outbox] == [b"m2", b"m3", b"m4"]


def test_packet_ids_wrap_never_zero():
    client = MQTTClient("b1", "127.0.0.1")
    client._pid = 65535
    assert client._new_pid() == 1
    client._pid = 65535
    client._acks[1] = None
    assert client._new_pid() == 2


def test_backoff_full_jitter_bounds():
    client = MQTTClient("b1", "127.0.0.1", backoff_min_ms=500, backoff_max_ms=60000)
    for attempt in range(25):
        cap = min(60000, 500 << attempt)
        for _ in range(50):
            d = client.backoff_ms(attempt)
            assert 0 <= d <= cap, (attempt, d)


def test_clock_is_micropython_ticks():
    t = clock.ticks_ms()
    assert clock.ticks_diff(clock.ticks_add(t, 1500), t) == 1500
    assert clock.ticks_diff(t, clock.ticks_add(t, 1500)) == -1500


# -- the whole client on MicroPython's asyncio, against an in-memory broker ----------


class Pipe:
    """One direction of a fake TCP link: bytes in, readexactly() out."""

    def __init__(self):
        self.buf = b""
        self.ev = asyncio.Event()
        self.closed = False

    def feed(self, data):
        if not self.closed:
            self.buf += bytes(data)
            self.ev.set()

    def close(self):
        self.closed = True
        self.ev.set()

    async def readexactly(self, n):
        while len(self.buf) < n:
            if self.closed:
                raise EOFError
            self.ev.clear()
            await self.ev.wait()
        data = self.buf[:n]
        self.buf = self.buf[n:]
        return data


class PipeWriter:
    def __init__(self, up, down):
        self.up = up
        self.down = down

    def write(self, data):
        if self.up.closed:
            raise OSError(104)  # ECONNRESET
        self.up.feed(data)

    async def drain(self):
        pass

    def close(self):
        self.up.close()
        self.down.close()

    async def wait_closed(self):
        pass


class FakeBroker:
    """Answers CONNECT, SUBSCRIBE, PUBLISH (QoS 1) and PINGREQ; logs every
    packet as (link number, first byte, body). Knobs: drop_pubacks (lose the
    next n PUBACKs), cut_on_publish (drop the link when a PUBLISH comes),
    silent (answer nothing)."""

    def __init__(self):
        self.log = []
        self.links = 0
        self.drop_pubacks = 0
        self.cut_on_publish = 0
        self.silent = False
        self.down = None

    async def open_connection(self, host, port):
        up, down = Pipe(), Pipe()
        self.links += 1
        self.down = down
        asyncio.create_task(self._serve(up, down, self.links))
        return down, PipeWriter(up, down)

    def publishes(self):
        """(link, topic, payload, dup) of every PUBLISH the client sent."""
        out = []
        for link, first, body in self.log:
            if first & 0xF0 == 0x30:
                topic, payload, _, _, dup, _ = mqtt.parse_publish(first, body)
                out.append((link, topic, payload, dup))
        return out

    async def _serve(self, up, down, link):
        try:
            while True:
                first, body = await mqtt.read_packet(up)
                self.log.append((link, first, body))
                kind = first & 0xF0
                if self.silent:
                    continue
                if kind == 0x10:
                    down.feed(b"\x20\x02\x00\x00")
                elif kind == 0x80:
                    down.feed(b"\x90\x03" + body[:2] + b"\x01")
                elif kind == 0x30 and self.cut_on_publish:
                    self.cut_on_publish -= 1
                    up.close()
                    down.close()
                    return
                elif kind == 0x30 and (first >> 1) & 3:
                    if self.drop_pubacks:
                        self.drop_pubacks -= 1
                    else:
                        down.feed(mqtt.puback_packet(mqtt.parse_publish(first, body)[5]))
                elif kind == 0xC0:
                    down.feed(b"\xd0\x00")
                elif kind == 0xE0:
                    up.close()
                    down.close()
                    return
        except EOFError:
            pass


async def until(cond, timeout=5):
    async def poll():
        while not cond():
            await asyncio.sleep_ms(10)

    await asyncio.wait_for(poll(), timeout)


def fake_client(broker, **kw):
    opts = {
        "backoff_min_ms": 20,
        "backoff_max_ms": 100,
        "ack_timeout_ms": 200,
        "connect_timeout_ms": 500,
    }
    opts.update(kw)
    return MQTTClient("b1", "fake", open_connection=broker.open_connection, **opts)


async def start(client):
    task = asyncio.create_task(client.run())
    await asyncio.wait_for(client.wait_connected(), 2)
    return task


async def stop(client, task):
    await client.close()
    await asyncio.wait_for(task, 2)


async def test_client_subscribes_publishes_birth_then_drains_outbox_in_order():
    broker = FakeBroker()
    client = fake_client(broker)
    client.subscribe("cmd/#", 1)

    async def birth():
        await client.publish_now("s", b"birth", True)

    client.on_connect = birth
    client.publish("e", b"q1")
    client.publish("e", b"q2")
    task = await start(client)
    await until(lambda: client.pending() == 0)
    kinds = [first & 0xF0 for _, first, _ in broker.log]
    assert kinds[:2] == [0x10, 0x80], kinds  # CONNECT, SUBSCRIBE
    assert [p[2] for p in broker.publishes()] == [b"birth", b"q1", b"q2"]
    assert client.stats["sent"] == 3
    await stop(client, task)


async def test_client_acks_incoming_qos1_after_on_message():
    broker = FakeBroker()
    client = fake_client(broker)
    got = []
    client.on_message = lambda topic, payload, retained: got.append((topic, payload, retained))
    task = await start(client)
    broker.down.feed(mqtt.publish_packet("cmd/show", b"hi", 1, True, False, 77))
    await until(lambda: any(first == 0x40 for _, first, _ in broker.log))
    assert got == [("cmd/show", b"hi", True)]
    assert [body for _, first, body in broker.log if first == 0x40] == [b"\x00\x4d"]
    await stop(client, task)


async def test_client_resends_with_dup_when_puback_is_lost():
    broker = FakeBroker()
    broker.drop_pubacks = 1
    client = fake_client(broker)
    task = await start(client)
    client.publish("e", b"once")
    await until(lambda: client.pending() == 0)
    assert broker.publishes() == [(1, "e", b"once", False), (1, "e", b"once", True)]
    assert client.stats["retransmits"] == 1
    await stop(client, task)


async def test_client_resends_with_dup_after_link_cut_before_puback():
    broker = FakeBroker()
    broker.cut_on_publish = 1
    client = fake_client(broker)
    task = await start(client)
    client.publish("e", b"press")
    await until(lambda: client.pending() == 0)
    assert broker.publishes() == [(1, "e", b"press", False), (2, "e", b"press", True)]
    assert client.stats["connects"] == 2
    await stop(client, task)


async def test_client_pings_and_declares_a_silent_link_dead():
    broker = FakeBroker()
    client = fake_client(broker, keepalive=1)
    task = await start(client)
    await until(lambda: client.stats["pings"] >= 2, 3)
    broker.silent = True
    await until(lambda: client.stats["link_timeouts"] == 1, 3)
    broker.silent = False
    await until(lambda: client.stats["connects"] == 2, 3)
    await stop(client, task)


async def test_client_survives_unexpected_and_reconnects_after_malformed():
    broker = FakeBroker()
    client = fake_client(broker)
    task = await start(client)
    broker.down.feed(b"\x62\x02\x00\x07")  # PUBREL: ignored
    await until(lambda: client.stats["unexpected"] == 1)
    assert client.isconnected()
    broker.down.feed(b"\x30\xff\xff\xff\xff\x01")  # 5-byte length: malformed
    await until(lambda: client.stats["connects"] == 2)
    assert client.stats["malformed"] == 1
    await stop(client, task)


async def test_client_close_sends_final_then_disconnect():
    broker = FakeBroker()
    client = fake_client(broker, will=("s", b"will", True, 1))
    task = await start(client)
    await client.close(("s", b"bye", True, 1))
    await asyncio.wait_for(task, 2)
    last = [(first, body) for _, first, body in broker.log][-2:]
    assert mqtt.parse_publish(last[0][0], last[0][1])[:2] == ("s", b"bye")
    assert last[1] == (0xE0, b"")
    assert not client.isconnected()
