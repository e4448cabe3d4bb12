"""The controller's MQTT receive path against a real Mosquitto: paho_fast's framer on a live
connection, and the bus's batched PUBACKs (one write per batch, only after the handler returned)
with a persistent session that delivers again exactly what was not acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import aiomqtt
import paho.mqtt.client as mqtt
import pytest

from controller import paho_fast
from controller.bus import Bus, Inbound
from protocol import wire

pytestmark = pytest.mark.timeout(30)

PREFIX = "acks"


def reading(i: int) -> str:
    return wire.dev_topic(PREFIX, f"wl-{i % 7}", "evt/reading")


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until cond() holds (checked every 10 ms), or fail after timeout."""

    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_the_framer_delivers_retained_qos0_and_qos1_on_a_live_connection(broker) -> None:
    sunk: list[tuple[bytes, bytes, bool, int, int]] = []
    handled: list[int] = []
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="framer-retained") as pub:
        await pub.publish("framer/r/1", b"kept", qos=1, retain=True)
    client = aiomqtt.Client("127.0.0.1", broker.port, identifier="framer",
                            protocol=aiomqtt.ProtocolVersion.V311)
    paho = client._client  # noqa: SLF001
    assert paho_fast.speed_up(paho, lambda *m: sunk.append(m))
    handle = paho._packet_handle  # noqa: SLF001

    def counted() -> mqtt.MQTTErrorCode:
        handled.append(paho._in_packet["command"] & 0xF0)  # noqa: SLF001
        return handle()

    paho._packet_handle = counted  # type: ignore[method-assign]  # noqa: SLF001
    async with client:
        await client.subscribe("framer/#", qos=1)
        await until(lambda: len(sunk) == 1)
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="framer-pub") as pub:
            for i in range(50):
                await pub.publish("framer/q1", b"%d" % i, qos=1)
                await pub.publish("framer/q0", b"%d" % i, qos=0)
            await until(lambda: len(sunk) == 101)
            # Nothing but PUBLISH packets from here on: the framer alone records that bytes came,
            # which is what paho's keepalive looks at.
            before = mqtt.time_func()
            handled_before = len(handled)
            await pub.publish("framer/q1", b"last", qos=1)
            await until(lambda: len(sunk) == 102)
            assert paho._last_bytes_received >= before  # noqa: SLF001
            assert len(handled) == handled_before
    assert sunk[0] == (b"framer/r/1", b"kept", True, 1, sunk[0][4])
    assert [m[1] for m in sunk if m[0] == b"framer/q1"] == [b"%d" % i for i in range(50)] + [b"last"]
    assert [m[1] for m in sunk if m[0] == b"framer/q0"] == [b"%d" % i for i in range(50)]
    assert {m[3] for m in sunk if m[0] == b"framer/q0"} == {0}
    assert not any(m[2] for m in sunk[1:])
    # paho handled only what is not a PUBLISH (CONNACK, SUBACK), unless a PUBLISH straddled two reads.
    assert 0x20 in handled and 0x90 in handled
    assert handled.count(0x30) <= 2


@contextlib.asynccontextmanager
async def running(bus: Bus) -> AsyncIterator[asyncio.Task[None]]:
    """bus.run() in a task until connected; cancelled at the end (no PUBACK for what the handler holds)."""
    task = asyncio.create_task(bus.run())
    try:
        await asyncio.wait_for(bus.connected.wait(), 10)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


async def publish_all(port: int, items: list[tuple[str, bytes]]) -> None:
    """Publish QoS 1 back to back (not each waiting for its PUBACK), so they arrive in bursts."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="acks-publisher") as pub:
        infos = [pub._client.publish(topic, payload, qos=1) for topic, payload in items]  # noqa: SLF001
        await until(lambda: all(i.is_published() for i in infos))


async def delivered_again(port: int, client_id: str) -> list[bytes]:
    """Resume the bus's persistent session with a plain client: every payload the broker delivers,
    up to a marker published after resuming (so "nothing" is an answer, not a timeout)."""
    got: list[bytes] = []
    async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, clean_session=False,
                              protocol=aiomqtt.ProtocolVersion.V311) as c:
        await publish_all(port, [(wire.dev_topic(PREFIX, "wl-0", "evt/marker"), b"marker")])
        async for m in c.messages:
            assert isinstance(m.payload, bytes)
            got.append(m.payload)
            if m.payload == b"marker":
                return got
    return got


async def test_a_committed_batch_is_acknowledged_and_never_delivered_again(broker) -> None:
    bus = Bus(broker.url, PREFIX, "test")
    seen: list[Inbound] = []
    bus.on_batch = lambda items: asyncio.sleep(0, seen.extend(items))
    sends: list[bytes] = []
    async with running(bus):
        assert bus.client is not None
        paho = bus.client._client  # noqa: SLF001
        send = paho._sock_send  # noqa: SLF001
        paho._sock_send = lambda buf: sends.append(bytes(buf)) or send(buf)  # type: ignore[method-assign]  # noqa: SLF001
        n = 300
        await publish_all(broker.port, [(reading(i), b'{"seq":%d}' % i) for i in range(n)])
        await until(lambda: len(seen) == n and not paho.want_write())
        assert [p for _, p, _ in seen] == [b'{"seq":%d}' % i for i in range(n)]
    pubacks = [s for s in sends if s[0] == 0x40]
    assert b"".join(pubacks).count(b"\x40\x02") == n
    assert len(pubacks) < n  # batches: several PUBACKs to a write
    assert await delivered_again(broker.port, bus.client_id) == [b"marker"]


async def test_what_the_handler_has_not_returned_from_is_delivered_again_and_nothing_else(broker) -> None:
    bus = Bus(broker.url, PREFIX, "test")
    seen: list[bytes] = []
    holding = asyncio.Event()

    async def on_batch(items: list[Inbound]) -> None:
        seen.extend(p for _, p, _ in items)
        if b"hold" in seen:
            holding.set()
            await asyncio.Event().wait()  # never commits: killed first

    bus.on_batch = on_batch
    async with running(bus):
        assert bus.client is not None
        paho = bus.client._client  # noqa: SLF001
        await publish_all(broker.port, [(reading(i), b"early-%d" % i) for i in range(5)])
        await until(lambda: len(seen) == 5 and not paho.want_write())  # handled and acknowledged
        await publish_all(broker.port, [(reading(5), b"hold"), (reading(6), b"late-6"), (reading(7), b"late-7")])
        await asyncio.wait_for(holding.wait(), 10)
        await until(lambda: paho._in_packet["command"] == 0 and paho._sigap_fast.pending() == 0)  # noqa: SLF001
    # The bus is gone (cancelled inside its handler): the three were never acknowledged.
    assert await delivered_again(broker.port, bus.client_id) == [b"hold", b"late-6", b"late-7", b"marker"]
