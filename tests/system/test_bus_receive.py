"""The controller's MQTT receive path against a real Mosquitto: paho_fast's framer on a live
connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt
import paho.mqtt.client as mqtt
import pytest

from controller import paho_fast

pytestmark = pytest.mark.timeout(30)


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
