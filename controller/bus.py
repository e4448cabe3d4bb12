"""The controller's MQTT link (aiomqtt): subscribe, receive in order, publish, reconnect.

Messages are handed to one async handler strictly in arrival order, because queue
operations are order-sensitive. A handler never raises into this loop: anything
it lets through is logged and counted, and the loop goes on.

Messages come in batches: whatever has arrived when the handler is free (up to
``batch_max``), so a handler can apply many water readings in one transaction
(group commit). QoS 1 messages are acknowledged (PUBACK) only after the handler
has returned, i.e. after their effects are committed, and in arrival order: a
message the broker counts as delivered survives a kill -9 of the controller;
one that was not yet committed is delivered again from the persistent session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import paho.mqtt.client as mqtt

from controller import paho_fast
from controller.config import CONTROLLER_CLIENT_ID
from protocol import wire

log = logging.getLogger("sigap.bus")

Handler = Callable[[str, bytes, bool], Awaitable[None]]
Inbound = tuple[str, bytes, bool]
"""One received message: topic, payload, retained."""
BatchHandler = Callable[[list[Inbound]], Awaitable[None]]


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is and, optionally, who we are to it (`mqtt://user:pass@host:port`)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_broker(url: str) -> BrokerAddress:
    """mqtt://[user[:password]@]host[:port] → BrokerAddress; a clear error (never showing a password)."""
    u = urlsplit(url if "://" in url else "mqtt://" + url)
    try:
        port = u.port or 1883
    except ValueError:
        port = 0
    if u.scheme not in ("mqtt", "tcp") or not u.hostname or not port:
        raise ValueError(f"broker URL must look like mqtt://host:port, got {redact_broker_url(url)!r}")
    user = unquote(u.username) if u.username else None
    password = unquote(u.password) if u.password is not None else None
    return BrokerAddress(u.hostname, port, user, password)


def parse_broker_url(url: str) -> tuple[str, int]:
    """mqtt://host:port → (host, port); a clear error for anything else."""
    addr = parse_broker(url)
    return addr.host, addr.port


def redact_broker_url(url: str) -> str:
    """The URL safe to log or print: a password in it becomes `***`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at < 0:
        return url
    user, colon, _ = rest[:at].partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}{rest[at:]}"


MAX_PENDING_PUBLISHES = 100_000
"""Publishes in flight at once (the client's outgoing queue); aiomqtt warns only above this."""


def controller_client_id(prefix: str) -> str:
    """The controller's MQTT client id: one per topic prefix, so installations sharing a broker
    do not take over each other's (persistent) session. Only the default one is a valid device id,
    and the site config refuses a board with it."""
    if prefix == wire.DEFAULT_PREFIX:
        return CONTROLLER_CLIENT_ID
    return f"{CONTROLLER_CLIENT_ID}_{prefix}"  # "_" never occurs in a device id


class Bus:
    """One reconnecting MQTT session for the controller."""

    backoff_min_s = 0.2
    backoff_max_s = 10.0

    def __init__(self, url: str, prefix: str, version: str, client_id: str | None = None):
        self.address = parse_broker(url)
        self.host, self.port = self.address.host, self.address.port
        self.prefix = prefix
        self.version = version
        self.client_id = client_id or controller_client_id(prefix)
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self.on_message: Handler | None = None
        self.on_batch: BatchHandler | None = None
        """Takes precedence over on_message: every message received so far, in order."""
        self.batch_max = 1000
        self.on_connect: Callable[[], Awaitable[None]] | None = None
        self.on_error: Callable[[str], None] | None = None
        self.connects = 0
        self.publish_failures = 0
        self._last_sent: mqtt.MQTTMessageInfo | None = None
        self._stopping = False

    @property
    def is_connected(self) -> bool:
        return self.connected.is_set()

    def _ctl_payload(self, online: bool) -> bytes:
        msg: dict[str, object] = {"online": online}
        if online:
            msg["version"] = self.version
        return json.dumps(msg, separators=(",", ":")).encode()

    async def run(self) -> None:
        """Connect, serve and reconnect with back-off until stop()."""
        attempt = 0
        ctl = wire.ctl_state_topic(self.prefix)
        while not self._stopping:
            try:
                client = aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id,
                    username=self.address.username,
                    password=self.address.password,
                    protocol=aiomqtt.ProtocolVersion.V311,
                    will=aiomqtt.Will(ctl, self._ctl_payload(False), qos=1, retain=True),
                    keepalive=15,
                    # A persistent session: while the controller is away (restart,
                    # broker restart) the broker keeps the boards' QoS 1 events for it.
                    clean_session=False,
                    max_queued_outgoing_messages=MAX_PENDING_PUBLISHES,
                    # Retained outputs follow the readings one for one; more in flight than
                    # this costs more than it gains (paho scans the in-flight list per PUBACK).
                    max_inflight_messages=50,
                    # Without TCP_NODELAY every QoS 1 round trip waits ~40 ms on
                    # Nagle + delayed ACK: measured 44 ms vs 0.6 ms on loopback.
                    socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
                )
                # Before connecting: the persistent session's queued messages follow the CONNACK.
                paho = client._client  # noqa: SLF001
                # PUBACK after the handler has committed the message, not on receipt.
                paho.manual_ack_set(True)  # aiomqtt has no public switch
                # Received messages go to aiomqtt's queue as plain tuples (Inbound + qos, mid),
                # not as aiomqtt Messages (whose topic object validates itself each time).
                inbox = _Inbox(client._queue)  # noqa: SLF001
                paho.on_message = inbox.on_message
                # Fewer recv system calls, PUBLISH decoded straight into the queue (paho 2.2.0 only).
                paho_fast.speed_up(paho, inbox.put)
                async with client:
                    # send() overlaps publishes on purpose (every board's retained output
                    # at each connect): not worth aiomqtt's warning for each one above 10.
                    client.pending_calls_threshold = MAX_PENDING_PUBLISHES
                    self.client = client
                    await client.subscribe(wire.dev_topic(self.prefix, "+", "state"), qos=1)
                    await client.subscribe(wire.dev_topic(self.prefix, "+", "evt/+"), qos=1)
                    self.connected.set()
                    self.connects += 1
                    attempt = 0
                    log.info("connected to broker %s:%s", self.host, self.port)
                    if self.on_connect:
                        await self.on_connect()
                    # Announce last: boards answer with a fresh birth, and our
                    # retained state is already in place for them.
                    await client.publish(ctl, self._ctl_payload(True), qos=1, retain=True)
                    await self._serve(client)
            except aiomqtt.MqttError as e:
                if self._stopping:
                    break
                log.warning("broker link lost (%s); reconnecting", e)
            finally:
                self.connected.clear()
                self.client = None
            attempt += 1
            cap = min(self.backoff_max_s, self.backoff_min_s * 2**attempt)
            await asyncio.sleep(random.uniform(self.backoff_min_s / 2, cap))

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Hand messages to the handler in batches, then acknowledge them, until the link drops."""
        # aiomqtt's own queue, read directly: taking everything already received
        # costs no task per message (as its async iterator does).
        queue: asyncio.Queue[Any] = client._queue  # noqa: SLF001
        paho = client._client  # noqa: SLF001
        # The iterator, not queue.get(): it also ends (MqttError) when the link drops.
        async for first in client.messages:
            batch: list[_Received] = [first]  # type: ignore[list-item]  # see _enqueue
            while len(batch) < self.batch_max:
                try:
                    batch.append(queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            await self._dispatch(batch)
            # The whole batch's PUBACKs as one write, in arrival order. We subscribe with QoS 1, so
            # the broker sends nothing above it (MQTT 3.1.1 §3.8.4); anything else: one by one.
            mids = [m[4] for m in batch if m[3] == 1]
            if len(mids) == len(batch) or all(m[3] < 2 for m in batch):
                paho_fast.ack_many(paho, mids)
            else:
                for m in batch:
                    if m[3] > 0:
                        paho.ack(m[4], m[3])

    async def _dispatch(self, batch: list[_Received]) -> None:
        items = [m[:3] for m in batch]
        try:
            if self.on_batch is not None:
                await self.on_batch(items)
            elif self.on_message is not None:
                for item in items:
                    await self.on_message(*item)
        except Exception:  # a handler bug must never stop ingest
            log.exception("handler failed for a batch of %d (first %s)", len(items), items[0][0])
            if self.on_error:
                self.on_error("handler_exception")

    async def publish(self, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> bool:
        """Publish when connected; False (counted) when the link is down."""
        client = self.client
        if client is None or not self.is_connected:
            self.publish_failures += 1
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
            return True
        except aiomqtt.MqttError as e:
            self.publish_failures += 1
            log.warning("publish to %s failed: %s", topic, e)
            return False

    def send(self, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> None:
        """Publish without waiting for the broker's PUBACK.

        The packet goes straight to the MQTT client's outgoing queue (no task, no
        pending-call bookkeeping per message, which aiomqtt's publish does in
        O(pending)), so messages leave in the order they were sent; a failure is
        counted (retained outputs are all published again on reconnect).
        """
        client = self.client
        if client is None or not self.is_connected:
            self.publish_failures += 1
            return
        info = client._client.publish(topic, payload, qos=qos, retain=retain)  # noqa: SLF001
        if info.rc != 0:
            self.publish_failures += 1
            log.warning("publish to %s failed: %s", topic, aiomqtt.MqttCodeError(info.rc))
            return
        self._last_sent = info

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every message handed to send() has been published (or the link is down).

        Messages leave in order and the broker acknowledges them in order, so the
        last one's acknowledgement stands for all.
        """
        info = self._last_sent
        deadline = asyncio.get_running_loop().time() + timeout
        while (info is not None and not info.is_published() and self.is_connected
               and asyncio.get_running_loop().time() < deadline):
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Clean shutdown: retained offline state, then disconnect (no Will)."""
        self._stopping = True
        await self.drain()
        if self.client is not None and self.is_connected:
            try:
                await self.client.publish(
                    wire.ctl_state_topic(self.prefix), self._ctl_payload(False), qos=1, retain=True
                )
            except aiomqtt.MqttError:
                pass


_Received = tuple[str, bytes, bool, int, int]
"""One received message as queued: topic, payload, retained, qos, mid."""


class _Inbox:
    """Received messages into aiomqtt's queue as _Received tuples, in arrival order: from the
    fast path (``put``) or from paho's on_message."""

    def __init__(self, queue: asyncio.Queue[Any]):
        self._put = queue.put_nowait

    def put(self, topic: bytes, payload: bytes, retain: bool, qos: int, mid: int) -> None:
        try:
            text = topic.decode()
        except UnicodeDecodeError:  # not UTF-8: rejected by the handler, not a dropped link
            text = topic.decode("utf-8", "replace")
        self._put((text, payload, retain, qos, mid))

    def on_message(self, client: mqtt.Client, userdata: Any, m: mqtt.MQTTMessage) -> None:
        self.put(bytes(m._topic), bytes(m.payload), bool(m.retain), m.qos, m.mid)  # noqa: SLF001
