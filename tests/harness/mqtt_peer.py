"""A test peer on the real broker: impersonates a board or watches what boards receive.

`MqttPeer` is an aiomqtt client whose client id is a device id. It publishes
raw payloads (bytes, text or dicts) to any topic at QoS 1, so a test can press
as a kiosk or counter with exact `(boot, seq)`: redeliver an event, publish a
burst without waiting, or send a malformed payload. Everything received on its
subscriptions is collected per topic, and `wait_for` waits on arrival events
(never on fixed sleeps)::

    async with MqttPeer(broker.port, "kiosk-01") as kiosk:
        await kiosk.subscribe(kiosk.dev_topic("cmd/ticket"))
        seq = await kiosk.press("A")
        answer = await kiosk.wait_for(kiosk.dev_topic("cmd/ticket"), lambda m: m.data["re"] == seq)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiomqtt

from protocol import wire


@dataclass(frozen=True)
class Received:
    """One message as the peer received it."""

    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def data(self) -> Any:
        """The payload parsed as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.payload)
        except ValueError:
            return None


Payload = bytes | str | dict[str, Any]
Predicate = Callable[[Received], bool]


def _encode(payload: Payload) -> bytes:
    if isinstance(payload, dict):
        return json.dumps(payload, separators=(",", ":")).encode()
    if isinstance(payload, str):
        return payload.encode()
    return payload


class MqttPeer:
    """One MQTT 3.1.1 client for a test: publish anything, collect what arrives per topic."""

    def __init__(self, port: int, client_id: str, *, prefix: str = wire.DEFAULT_PREFIX, boot: int = 1,
                 will: tuple[str, Payload] | None = None, host: str = "127.0.0.1",
                 username: str | None = None, password: str | None = None):
        self.client_id = client_id
        self.prefix = prefix
        self.boot = boot
        self._seq = itertools.count(1)
        self._client = aiomqtt.Client(
            host,
            port,
            identifier=client_id,
            username=username,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=True,
            keepalive=30,
            will=aiomqtt.Will(will[0], _encode(will[1]), qos=1, retain=True) if will else None,
            max_inflight_messages=200,
        )
        self._received: dict[str, list[Received]] = {}
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.connected = False

    # -- lifetime -------------------------------------------------------------------
    async def __aenter__(self) -> MqttPeer:
        await self._client.__aenter__()
        self.connected = True
        self._reader = asyncio.create_task(self._read(), name=f"peer-{self.client_id}")
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self.connected:
            self.connected = False
            # Bounded: a DISCONNECT to a broker that a test killed gets no answer.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await asyncio.wait_for(self._client.__aexit__(et, e, tb), 5)

    async def _read(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):
            async for m in self._client.messages:
                payload = m.payload if isinstance(m.payload, bytes | bytearray) else str(m.payload or "").encode()
                r = Received(m.topic.value, bytes(payload), bool(m.retain), int(m.qos))
                self._received.setdefault(r.topic, []).append(r)
                self._arrived.set()

    async def abort(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a power cut would: the broker sends the Will."""
        sock = self._client._client.socket()  # noqa: SLF001 - paho's socket: no public way to cut it
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._reader is not None:
            await asyncio.wait_for(asyncio.shield(self._reader), 10)
        self.connected = False
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(None, None, None)

    # -- topics -------------------------------------------------------------------------
    def dev_topic(self, kind: str, device_id: str | None = None) -> str:
        """`{prefix}/v1/dev/{id}/{kind}` of this peer's device (or another)."""
        return wire.dev_topic(self.prefix, device_id or self.client_id, kind)

    # -- publish --------------------------------------------------------------------------
    async def subscribe(self, *filters: str) -> None:
        """Subscribe at QoS 1; returns once the broker acknowledged (retained messages follow)."""
        for f in filters:
            await self._client.subscribe(f, qos=1)

    async def publish(self, topic: str, payload: Payload, retain: bool = False, qos: int = 1) -> None:
        """Publish raw bytes, text or a dict (compact JSON) to any topic; returns on PUBACK."""
        await self._client.publish(topic, _encode(payload), qos=qos, retain=retain)

    def next_seq(self) -> int:
        """The next event seq of this boot."""
        return next(self._seq)

    async def press(self, key: str, seq: int | None = None, boot: int | None = None, **extra: Any) -> int:
        """Publish a press event as this device; returns its seq."""
        seq = self.next_seq() if seq is None else seq
        msg = {"boot": self.boot if boot is None else boot, "seq": seq, "key": key, **extra}
        await self.publish(self.dev_topic("evt/press"), msg)
        return seq

    async def rate(self, score: int, seq: int | None = None) -> int:
        """Publish a rating event as this device; returns its seq."""
        seq = self.next_seq() if seq is None else seq
        await self.publish(self.dev_topic("evt/rating"), {"boot": self.boot, "seq": seq, "score": score})
        return seq

    async def birth(self, role: str, boot: int | None = None, fw: str = "1.0.0") -> None:
        """Publish this device's retained birth state."""
        await self.publish(self.dev_topic("state"), wire.birth(role, fw, self.boot if boot is None else boot),
                           retain=True)

    # -- collect --------------------------------------------------------------------------
    def messages(self, topic: str) -> list[Received]:
        """Everything received on one topic so far, oldest first."""
        return list(self._received.get(topic, []))

    def mark(self, topic: str) -> int:
        """How many messages a topic has now: pass as `start` to wait only for later ones."""
        return len(self._received.get(topic, []))

    async def wait_for(self, topic: str, predicate: Predicate | None = None, timeout: float = 10.0,
                       start: int = 0) -> Received:
        """The first message on topic (from index start) that satisfies predicate; waits for arrivals."""

        async def _wait() -> Received:
            while True:
                self._arrived.clear()
                for m in self._received.get(topic, [])[start:]:
                    if predicate is None or predicate(m):
                        return m
                await self._arrived.wait()

        try:
            return await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            got = [m.payload[:200] for m in self._received.get(topic, [])[start:]]
            raise AssertionError(f"{self.client_id}: no matching message on {topic} in {timeout} s; got {got}") from None

    async def wait_count(self, topic: str, n: int, predicate: Predicate | None = None,
                         timeout: float = 10.0) -> list[Received]:
        """Wait until n messages on topic satisfy predicate; returns them."""

        def matching() -> list[Received]:
            return [m for m in self._received.get(topic, []) if predicate is None or predicate(m)]

        async def _wait() -> list[Received]:
            while True:
                self._arrived.clear()
                found = matching()
                if len(found) >= n:
                    return found
                await self._arrived.wait()

        try:
            return await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.client_id}: {len(matching())} of {n} messages on {topic} after {timeout} s"
            ) from None
