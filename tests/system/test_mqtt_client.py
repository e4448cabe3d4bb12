"""The board's MQTT client (firmware/core/mqtt.py) against a real Mosquitto.

Peers are aiomqtt (paho) clients. Where a test needs to lose a PUBACK, cut
or freeze a link, or inject bytes, the board talks to the broker through
`Relay`, a small TCP relay that forwards whole MQTT packets and records what
the board published.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator

import aiomqtt
import pytest

from firmware.core.mqtt import MQTTClient, MQTTError
from tests.harness.broker import MosquittoBroker, free_port

pytestmark = pytest.mark.timeout(30)

STATE = "sigap/v1/dev/b1/state"
EVT = "sigap/v1/dev/b1/evt/press"
CMD = "sigap/v1/dev/b1/cmd/show"

# Short timers so every test runs in a few seconds.
FAST = {
    "backoff_min_ms": 50,
    "backoff_max_ms": 200,
    "ack_timeout_ms": 1000,
    "connect_timeout_ms": 2000,
}

_ids = itertools.count(1)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until cond() holds (checked every 10 ms), or fail after timeout."""

    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def board(port: int, **kw) -> MQTTClient:
    """A board client with fast timers, pointed at 127.0.0.1:port."""
    opts = dict(FAST)
    opts.update(kw)
    return MQTTClient("b1", "127.0.0.1", port, **opts)


@contextlib.asynccontextmanager
async def running(client: MQTTClient, connected: bool = True) -> AsyncIterator[asyncio.Task]:
    """Run client.run() in a task; close the client and reap the task at the end."""
    task = asyncio.create_task(client.run())
    try:
        if connected:
            await asyncio.wait_for(client.wait_connected(), 5)
        yield task
    finally:
        await client.close()
        await asyncio.wait_for(task, 5)


@contextlib.asynccontextmanager
async def peer(port: int, *topics: str) -> AsyncIterator[tuple[aiomqtt.Client, asyncio.Queue]]:
    """An aiomqtt client subscribed (QoS 1) to topics; messages land in a queue."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"peer-{next(_ids)}") as c:
        for t in topics:
            await c.subscribe(t, qos=1)
        q: asyncio.Queue = asyncio.Queue()

        async def pump() -> None:
            async for m in c.messages:
                q.put_nowait(m)

        task = asyncio.create_task(pump())
        try:
            yield c, q
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def next_msg(q: asyncio.Queue, timeout: float = 5.0) -> aiomqtt.Message:
    return await asyncio.wait_for(q.get(), timeout)


class Relay:
    """TCP relay board <-> broker that forwards whole MQTT packets.

    It records every PUBLISH the board sends as (link number, dup, pid,
    payload), and can swallow PUBACKs from the broker, cut a link when a
    PUBACK comes, freeze links (drop everything, keep sockets open) or inject
    raw bytes towards the board.
    """

    def __init__(self, broker_port: int):
        self.broker_port = broker_port
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.published: list[tuple[int, bool, int, bytes]] = []
        self.swallow_pubacks = 0
        self.cut_on_puback = 0
        self.frozen = False
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Relay:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        self.cut()
        await self.server.wait_closed()

    def cut(self) -> None:
        """Abort every link, as a dead WiFi would."""
        for board_w, broker_w in self.links:
            board_w.transport.abort()
            broker_w.transport.abort()

    def inject(self, data: bytes) -> None:
        """Write raw bytes to the board on the newest link, between packets."""
        self.links[-1][0].write(data)

    @staticmethod
    async def _packet(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
        head = await reader.readexactly(1)
        n, shift, raw = 0, 0, bytearray(head)
        while True:
            b = (await reader.readexactly(1))[0]
            raw.append(b)
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        body = await reader.readexactly(n)
        return head[0], body, bytes(raw) + body

    async def _link(self, board_r: asyncio.StreamReader, board_w: asyncio.StreamWriter) -> None:
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.broker_port)
        number = len(self.links)
        self.links.append((board_w, broker_w))

        async def upstream() -> None:
            while True:
                first, body, raw = await self._packet(board_r)
                if self.frozen:
                    continue
                if first & 0xF0 == 0x30:
                    (tlen,) = struct.unpack_from("!H", body)
                    qos = (first >> 1) & 3
                    pid = struct.unpack_from("!H", body, 2 + tlen)[0] if qos else 0
                    payload = body[2 + tlen + (2 if qos else 0) :]
                    self.published.append((number, bool(first & 0x08), pid, payload))
                broker_w.write(raw)

        async def downstream() -> None:
            while True:
                first, _, raw = await self._packet(broker_r)
                if self.frozen:
                    continue
                if first == 0x40 and self.swallow_pubacks:
                    self.swallow_pubacks -= 1
                    continue
                if first == 0x40 and self.cut_on_puback:
                    self.cut_on_puback -= 1
                    board_w.transport.abort()
                    broker_w.transport.abort()
                    return
                board_w.write(raw)

        tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            board_w.transport.abort()
            broker_w.transport.abort()


@pytest.fixture
def logged_broker(tmp_path) -> Iterator[MosquittoBroker]:
    """A private broker whose log file is readable (broker.log_text())."""
    b = MosquittoBroker(tmp_path / "logged").start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
async def relay(broker) -> AsyncIterator[Relay]:
    r = await Relay(broker.port).start()
    try:
        yield r
    finally:
        await r.close()


# -- connecting -------------------------------------------------------------------


async def test_connects_and_counts_connack(broker):
    client = board(broker.port)
    async with running(client) as task:
        assert client.isconnected()
        assert client.stats["connects"] == 1
        assert client.stats["connect_failures"] == 0
    assert task.done() and task.exception() is None
    assert not client.isconnected()
    assert client.stats["disconnects"] == 1


async def test_refused_connack_raises_code_retries_and_counts(tmp_path):
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "b1", "right"], check=True)
    conf = f"allow_anonymous false\npassword_file {pwfile}\n"
    secured = MosquittoBroker(tmp_path / "broker", extra_conf=conf).start()
    try:
        wrong = board(secured.port, user="b1", password="wrong")
        async with running(wrong, connected=False):
            await until(lambda: wrong.stats["connect_failures"] >= 3)
            assert not wrong.isconnected()
            assert wrong.stats["connects"] == 0
            assert isinstance(wrong.last_error, MQTTError)
            assert wrong.last_error.code == 5  # not authorized (Mosquitto's answer for 3.1.1)

        right = board(secured.port, user="b1", password="right")
        async with running(right):
            assert right.stats["connects"] == 1
    finally:
        secured.stop()


async def test_close_during_backoff_returns_promptly():
    client = board(free_port(), backoff_min_ms=10000, backoff_max_ms=10000)
    task = asyncio.create_task(client.run())
    await until(lambda: client.stats["connect_failures"] >= 1)
    await asyncio.wait_for(client.close(), 2)
    await asyncio.wait_for(task, 2)
    assert client.stats["connects"] == 0


async def test_publish_now_when_not_connected_raises():
    client = board(free_port())
    with pytest.raises(MQTTError) as err:
        await client.publish_now(EVT, b"x")
    assert err.value.code == "not_connected"


# -- publishing and subscribing ------------------------------------------------------


async def test_publish_qos1_reaches_subscriber(broker):
    async with peer(broker.port, "sigap/v1/dev/b1/#") as (_, q):
        client = board(broker.port)
        async with running(client):
            assert client.publish(EVT, b'{"boot":1,"seq":1,"key":"A"}') is True
            msg = await next_msg(q)
            assert (msg.topic.value, msg.payload, msg.qos) == (
                EVT,
                b'{"boot":1,"seq":1,"key":"A"}',
                1,
            )
            await client.publish_now(STATE, b'{"online":true}', retain=True)
            msg = await next_msg(q)
            assert (msg.topic.value, msg.payload) == (STATE, b'{"online":true}')
            await until(lambda: client.pending() == 0)
            assert client.stats["sent"] == 2


async def test_subscribe_receives_retained_then_live_messages(broker):
    got: asyncio.Queue = asyncio.Queue()
    async with peer(broker.port) as (p, _):
        await p.publish(CMD, b'{"lines":["A001"]}', qos=1, retain=True)
        client = board(broker.port)
        client.on_message = lambda topic, payload, retained: got.put_nowait(
            (topic, payload, retained)
        )
        client.subscribe("sigap/v1/dev/b1/cmd/#", 1)
        async with running(client):
            assert await next_msg(got) == (CMD, b'{"lines":["A001"]}', True)
            await p.publish(CMD, b'{"lines":["A002"]}', qos=1)
            assert await next_msg(got) == (CMD, b'{"lines":["A002"]}', False)
            assert client.stats["received"] == 2


async def test_subscribe_while_connected_takes_effect(broker):
    got: asyncio.Queue = asyncio.Queue()
    async with peer(broker.port) as (p, _):
        # Retained, so it arrives as soon as the late SUBSCRIBE is processed.
        await p.publish("late/topic", b"hello", qos=1, retain=True)
        client = board(broker.port)
        client.on_message = lambda topic, payload, retained: got.put_nowait((payload, retained))
        async with running(client):
            client.subscribe("late/topic", 1)
            assert await next_msg(got) == (b"hello", True)
            await p.publish("late/topic", b"live", qos=1)
            assert await next_msg(got) == (b"live", False)


async def test_on_connect_runs_before_outbox_drains(broker):
    async with peer(broker.port, "sigap/v1/dev/b1/#") as (_, q):
        client = board(broker.port)
        client.publish(EVT, b"queued")

        async def birth() -> None:
            await client.publish_now(STATE, b"birth", retain=True)

        client.on_connect = birth
        async with running(client):
            assert (await next_msg(q)).payload == b"birth"
            assert (await next_msg(q)).payload == b"queued"


# -- Will and clean shutdown ----------------------------------------------------------


async def test_will_delivered_when_link_dies_without_disconnect(broker):
    writers: list[asyncio.StreamWriter] = []

    async def opener(host: str, port: int):
        reader, writer = await asyncio.open_connection(host, port)
        writers.append(writer)
        return reader, writer

    async with peer(broker.port, STATE) as (_, q):
        client = board(
            broker.port, will=(STATE, b'{"online":false,"boot":1}', True, 1), open_connection=opener
        )
        async with running(client):
            writers[-1].transport.abort()  # the TCP link dies; no DISCONNECT was sent
            msg = await next_msg(q)
            assert msg.payload == b'{"online":false,"boot":1}'
            # ... and the board comes back by itself.
            await until(lambda: client.stats["connects"] == 2)
            assert client.stats["disconnects"] == 1


async def test_close_with_final_publishes_it_and_no_will_fires(logged_broker):
    broker = logged_broker
    async with peer(broker.port, STATE) as (p, q):
        client = board(broker.port, will=(STATE, b"will", True, 1))
        task = asyncio.create_task(client.run())
        await asyncio.wait_for(client.wait_connected(), 5)
        await client.close(final=(STATE, b'{"online":false,"boot":1,"sleep_s":300}', True, 1))
        await asyncio.wait_for(task, 2)
        assert (await next_msg(q)).payload == b'{"online":false,"boot":1,"sleep_s":300}'
        # Mosquitto logs a clean DISCONNECT as "disconnected." (a dropped link
        # reads "closed its connection."); once it has, the Will is gone for good.
        await until(lambda: "Client b1 disconnected." in broker.log_text())
        await p.publish(STATE, b"marker", qos=1)
        assert (await next_msg(q)).payload == b"marker"  # no Will in between
    assert client.stats["disconnects"] == 1


# -- keepalive ----------------------------------------------------------------------


async def test_keepalive_sends_pingreq_when_idle(broker):
    client = board(broker.port, keepalive=1)
    async with running(client):
        await until(lambda: client.stats["pings"] >= 3, timeout=4)
        assert client.isconnected()
        assert client.stats["disconnects"] == 0
        assert client.stats["link_timeouts"] == 0


async def test_silent_link_is_declared_dead_and_reconnected(relay):
    client = board(relay.port, keepalive=1)
    async with running(client):
        relay.frozen = True  # packets vanish, sockets stay open: a black-holed WiFi
        await until(lambda: client.stats["link_timeouts"] == 1, timeout=4)
        relay.frozen = False
        await until(lambda: client.stats["connects"] == 2)
        assert client.isconnected()


# -- riding through a broker restart ----------------------------------------------------


async def test_broker_restart_resubscribes_and_delivers_message_queued_while_down(broker):
    reachable = asyncio.Event()
    reachable.set()
    down = asyncio.Event()
    connects = asyncio.Queue()
    got: asyncio.Queue = asyncio.Queue()

    async def opener(host: str, port: int):
        if not reachable.is_set():
            raise ConnectionRefusedError("broker unreachable")
        return await asyncio.open_connection(host, port)

    async def on_connect() -> None:
        connects.put_nowait(client.stats["connects"])

    client = board(broker.port, open_connection=opener)
    client.on_connect = on_connect
    client.on_disconnect = down.set
    client.on_message = lambda topic, payload, retained: got.put_nowait(payload)
    client.subscribe("sigap/v1/dev/b1/cmd/#", 1)
    async with running(client):
        assert await next_msg(connects) == 1
        # The test holds the board off until its own subscriber is back on the
        # restarted broker, so the check does not race the board's reconnect.
        reachable.clear()
        await asyncio.to_thread(broker.kill)
        await asyncio.wait_for(down.wait(), 5)
        assert client.publish(EVT, b"pressed while down") is True
        assert client.pending() == 1
        await asyncio.to_thread(broker.start)
        async with peer(broker.port, "sigap/v1/dev/b1/evt/#") as (p, q):
            reachable.set()
            assert await next_msg(connects) == 2
            msg = await next_msg(q)
            assert (msg.payload, msg.qos) == (b"pressed while down", 1)
            await p.publish(CMD, b"after restart", qos=1)  # needs the re-subscription
            assert await next_msg(got) == b"after restart"
        await until(lambda: client.pending() == 0)
    assert client.stats["connects"] == 2


# -- QoS 1 retransmission ------------------------------------------------------------


async def test_lost_puback_resends_with_dup_on_same_link(relay, broker):
    relay.swallow_pubacks = 1
    async with peer(broker.port, EVT) as (_, q):
        client = board(relay.port, ack_timeout_ms=300)
        async with running(client):
            client.publish(EVT, b"once")
            assert (await next_msg(q)).payload == b"once"
            await until(lambda: client.pending() == 0)
            attempts = [
                (link, dup, pid)
                for link, dup, pid, payload in relay.published
                if payload == b"once"
            ]
            assert len(attempts) == 2
            (link1, dup1, pid1), (link2, dup2, pid2) = attempts
            assert (dup1, dup2) == (False, True)
            assert link1 == link2 and pid1 == pid2  # same packet id on the same link
            assert client.stats["retransmits"] == 1
            assert client.stats["connects"] == 1


async def test_link_cut_before_puback_resends_with_dup_after_reconnect(relay, broker):
    relay.cut_on_puback = 1
    async with peer(broker.port, EVT) as (_, q):
        client = board(relay.port)
        async with running(client):
            client.publish(EVT, b"press 7")
            await until(lambda: client.stats["connects"] == 2)
            await until(lambda: client.pending() == 0)
            payloads = [(await next_msg(q)).payload]
            with contextlib.suppress(TimeoutError):
                payloads.append((await next_msg(q, timeout=0.5)).payload)
            assert set(payloads) == {b"press 7"}  # at least once; the controller dedups
            attempts = [
                (link, dup) for link, dup, _, payload in relay.published if payload == b"press 7"
            ]
            assert attempts == [(0, False), (1, True)]


# -- bounded outbox -----------------------------------------------------------------


async def test_outbox_overflow_drops_oldest_counts_and_keeps_order(broker):
    client = board(broker.port, outbox_size=3)
    results = [client.publish(EVT, b"m%d" % i) for i in range(1, 6)]
    assert results == [True, True, True, False, False]
    assert client.stats["dropped"] == 2
    assert client.pending() == 3
    async with peer(broker.port, EVT) as (_, q):
        async with running(client):
            assert [(await next_msg(q)).payload for _ in range(3)] == [b"m3", b"m4", b"m5"]
            await until(lambda: client.pending() == 0)


# -- a broker that misbehaves ----------------------------------------------------------


async def test_malformed_packet_closes_link_counts_and_reconnects(relay):
    client = board(relay.port)
    async with running(client):
        relay.inject(b"\x30\xff\xff\xff\xff\x01")  # a 5-byte Remaining Length
        await until(lambda: client.stats["connects"] == 2)
        assert client.stats["malformed"] == 1
        assert client.stats["disconnects"] == 1


async def test_unexpected_packet_types_are_ignored(relay, broker):
    async with peer(broker.port, EVT) as (_, q):
        client = board(relay.port)
        async with running(client):
            relay.inject(b"\x62\x02\x00\x07")  # PUBREL: QoS 2, which we never asked for
            relay.inject(b"\xf0\x00")  # reserved type 15
            relay.inject(b"\x20\x02\x00\x00")  # a second CONNACK
            await until(lambda: client.stats["unexpected"] == 3)
            client.publish(EVT, b"still here")
            assert (await next_msg(q)).payload == b"still here"
            assert client.stats["connects"] == 1
            assert client.stats["malformed"] == 0


async def test_oversized_message_is_skipped_acked_and_counted(broker):
    got: asyncio.Queue = asyncio.Queue()
    async with peer(broker.port) as (p, _):
        client = board(broker.port)
        client.max_packet = 100
        client.on_message = lambda topic, payload, retained: got.put_nowait(payload)
        client.subscribe(CMD, 1)
        async with running(client):
            await p.publish(CMD, b"x" * 500, qos=1)
            await p.publish(CMD, b"small", qos=1)
            assert await next_msg(got) == b"small"
            assert client.stats["oversized"] == 1
            assert client.stats["connects"] == 1
