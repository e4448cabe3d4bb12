"""Receive fast path for the controller's paho client (pinned paho-mqtt 2.2.0).

paho reads each packet with three or more ``recv`` system calls (the command byte,
each byte of the remaining length, then the body) and matches every message's
topic against its per-topic callbacks, which the controller never registers.
Under a burst of readings that is a large share of the controller's time
(bench_water_ingest). ``speed_up(client)`` changes one paho client instance:

- ``_sock_recv`` serves paho's small reads from one ``recv`` of up to 64 KB;
- ``loop_read`` keeps going while whole packets wait in that buffer. This matters:
  aiomqtt calls ``loop_read`` when the socket is readable, and paho's
  ``loop_read`` reads only a few packets per call; a packet already taken from
  the socket into the buffer would otherwise wait for the next byte to arrive;
- ``_handle_on_message`` hands a message straight to ``on_message`` while no
  per-topic callback exists (paho's own method otherwise);
- with a ``sink``, ``_handle_publish`` decodes an MQTT 3.1.1 PUBLISH of QoS 0 or 1
  itself and hands topic, payload, retain, qos and mid to the sink: no MQTTMessage,
  no per-message debug log line. Anything else (MQTT 5, QoS 2, a malformed packet,
  per-topic callbacks) goes through paho's own method.

These are paho's private methods: ``speed_up`` only changes a client of the
version and the method sources it was written against (``PINNED``), and
leaves any other untouched (logged once); tests/unit/test_paho_fast.py fails
when paho's internals change.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt

log = logging.getLogger("sigap.bus")

CHUNK = 65536
"""Bytes asked of the socket per system call."""

PAHO_VERSION = "2.2.0"
PINNED = {
    # sha256 of inspect.getsource(mqtt.Client.<name>) for paho-mqtt 2.2.0: what this module relies on.
    "_sock_recv": "c3b9043a46dd81b79a601a321a2479154ec158c75243f4f4ad7431474efa1d62",
    "loop_read": "4fa11ca2d451dbec3f8518b7ce7578e17513c03d319139017512773b8ec1bded",
    "_packet_read": "bbe32d8af1e37955175d7835c8b0a16a61435dbc40e563f447f08b102c776347",
    "_handle_on_message": "8ccc46fdb090aeadac6c4afea7e684dd714ca2d4b163f38271b0a30dbaa112ed",
    "_handle_publish": "1bbaa3ef0e3afc6dea0423a41e67170930c024827e2e8dbf69b5d61c304b675d",
    "_packet_handle": "ac4c129ed409db421a6f85be6fdce91ebee5bdf1048bcc67034930c2617472f5",
}

Sink = Callable[[bytes, bytes, bool, int, int], None]
"""Receives each PUBLISH: topic (raw bytes), payload, retain, qos, mid."""


def source_digest(name: str) -> str:
    """sha256 of paho's source of ``mqtt.Client.<name>``."""
    return hashlib.sha256(inspect.getsource(getattr(mqtt.Client, name)).encode()).hexdigest()


def supported() -> bool:
    """True when the installed paho is the one this module was written against."""
    if paho.mqtt.__version__ != PAHO_VERSION:
        return False
    try:
        return all(source_digest(name) == digest for name, digest in PINNED.items())
    except (AttributeError, OSError, TypeError):
        return False


_SUPPORTED: bool | None = None


class _FastReceive:
    """The per-client state: the receive buffer and paho's original methods."""

    def __init__(self, client: mqtt.Client, sink: Sink | None):
        self.client = client
        self.sink = sink
        self.sock: Any = None
        self.buf = b""
        self.pos = 0
        self._recv = client._sock_recv  # noqa: SLF001
        self._loop_read = client.loop_read
        self._on_message = client._handle_on_message  # noqa: SLF001
        self._handle_publish = client._handle_publish  # noqa: SLF001
        self._filtered = client._on_message_filtered  # noqa: SLF001

    def pending(self) -> int:
        """Bytes received from the socket that paho has not read yet."""
        return len(self.buf) - self.pos if self.client._sock is self.sock else 0  # noqa: SLF001

    def sock_recv(self, bufsize: int) -> bytes:
        sock = self.client._sock  # noqa: SLF001
        if sock is not self.sock:  # a new connection: nothing buffered belongs to it
            self.sock, self.buf, self.pos = sock, b"", 0
        pos = self.pos
        buf = self.buf
        if pos < len(buf):
            end = pos + bufsize
            self.pos = end if end < len(buf) else len(buf)
            return buf[pos:end]
        if type(sock) is not socket.socket:  # TLS, websockets or no socket: paho's own way
            return self._recv(bufsize)
        data = sock.recv(CHUNK)  # BlockingIOError / OSError / b"" as paho expects them
        if len(data) <= bufsize:
            self.buf, self.pos = b"", 0
            return data
        self.buf, self.pos = data, bufsize
        return data[:bufsize]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = self._loop_read(max_packets)
        while rc == mqtt.MQTT_ERR_SUCCESS and self.pending():
            before = self.pos
            rc = self._loop_read(max_packets)
            if self.pos == before:  # nothing taken (cannot happen while paho reads): do not spin
                break
        return rc

    def handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        on_message = self.client.on_message
        if self._filtered._root._children or on_message is None:  # noqa: SLF001
            self._on_message(message)
            return
        on_message(self.client, self.client._userdata, message)  # noqa: SLF001


    def handle_publish(self) -> mqtt.MQTTErrorCode:
        c = self.client
        sink = self.sink
        if sink is None or c._protocol == mqtt.MQTTv5 or self._filtered._root._children:  # noqa: SLF001
            return self._handle_publish()
        header = c._in_packet["command"]  # noqa: SLF001
        packet = c._in_packet["packet"]  # noqa: SLF001
        qos = (header & 0x06) >> 1
        n = len(packet)
        if qos > 1 or n < 2:
            return self._handle_publish()
        pos = 2 + ((packet[0] << 8) | packet[1])
        if pos == 2 or n < pos + 2 * qos:  # empty topic, or cut short: paho's own error handling
            return self._handle_publish()
        topic = bytes(packet[2:pos])
        mid = 0
        if qos:
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        sink(topic, bytes(packet[pos:]), bool(header & 0x01), qos, mid)
        if qos and not c._manual_ack:  # noqa: SLF001
            return c._send_puback(mid)  # noqa: SLF001
        return mqtt.MQTT_ERR_SUCCESS


def speed_up(client: mqtt.Client, sink: Sink | None = None) -> bool:
    """Give a paho client the buffered receive path (and, with a sink, the PUBLISH fast path);
    False (and unchanged) on an unknown paho."""
    global _SUPPORTED
    if _SUPPORTED is None:
        _SUPPORTED = supported()
        if not _SUPPORTED:
            log.warning("paho-mqtt %s is not the pinned %s: receiving without the fast path",
                        paho.mqtt.__version__, PAHO_VERSION)
    if not _SUPPORTED:
        return False
    fast = _FastReceive(client, sink)
    client._sock_recv = fast.sock_recv  # type: ignore[method-assign]  # noqa: SLF001
    client.loop_read = fast.loop_read  # type: ignore[method-assign]
    client._handle_on_message = fast.handle_on_message  # type: ignore[method-assign]  # noqa: SLF001
    client._handle_publish = fast.handle_publish  # type: ignore[method-assign]  # noqa: SLF001
    client._sigap_fast = fast  # type: ignore[attr-defined]  # noqa: SLF001
    return True

