"""Receive fast path for the controller's paho client (pinned paho-mqtt 2.2.0).

paho reads each packet with three or more ``recv`` system calls (the command byte,
each byte of the remaining length, then the body), builds an MQTTMessage for each
PUBLISH and matches its topic against per-topic callbacks, which the controller never
registers; it sends each PUBACK with its own ``send``. Under a burst of readings that
is a large share of the controller's time (bench_water_ingest).

``speed_up(client)`` changes one paho client instance:

- ``loop_read`` reads the socket into a buffer, 64 KB per ``recv``, a bounded number of
  them per call (so the event loop gets its turn under a flood) and, with a ``sink``,
  takes every complete MQTT 3.1.1 PUBLISH of QoS 0 or 1 straight from that buffer:
  topic, payload, retain, qos and mid go to the sink, with no MQTTMessage and no
  per-message debug log line. A PUBACK for one of our QoS 1 publishes goes straight to
  paho's ``_do_on_publish``, as ``_handle_pubackcomp`` does once it has decoded it.
  Anything else (SUBACK, PINGRESP, CONNACK, QoS 2, MQTT 5, a malformed packet, a packet
  not yet complete, per-topic callbacks) it leaves at its place in the buffer for
  paho's own ``_packet_read``, which reads it through ``_sock_recv``; so packets are
  handled one at a time, in arrival order. The framer runs only while paho is between
  packets and, like ``_packet_read``, records when bytes last came
  (``_last_bytes_received``, what paho's keepalive checks);
- ``_sock_recv`` serves paho's small reads from that buffer;
- ``_handle_on_message`` hands a message straight to ``on_message`` while no
  per-topic callback exists (paho's own method otherwise);
- with a ``sink``, ``_handle_publish`` decodes a PUBLISH that paho read (one that
  straddled two reads) the same way.

``ack_many(client, mids)`` acknowledges many QoS 1 messages (manual-ack mode) with
one outgoing packet: their PUBACKs back to back, in order, one ``send``.

These are paho's private methods: ``speed_up`` only changes a client of the
version and the method sources it was written against (``PINNED``), and
leaves any other untouched (logged once); ``ack_many`` then acks one by one with
paho's ``ack``. tests/unit/test_paho_fast.py fails when paho's internals change.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger("sigap.bus")

CHUNK = 65536
"""Bytes asked of the socket per system call."""

PAHO_VERSION = "2.2.0"
PINNED = {
    # sha256 of inspect.getsource(mqtt.Client.<name>) for paho-mqtt 2.2.0: what this module relies on.
    "_sock_recv": "c3b9043a46dd81b79a601a321a2479154ec158c75243f4f4ad7431474efa1d62",
    "loop_read": "4fa11ca2d451dbec3f8518b7ce7578e17513c03d319139017512773b8ec1bded",
    "_loop_rc_handle": "ee5ad3b7849433a475877d815725eb15c3c11d8e27754af9d4f06472279a9258",
    "_packet_read": "bbe32d8af1e37955175d7835c8b0a16a61435dbc40e563f447f08b102c776347",
    "_check_keepalive": "162b7cd2a4d56585298c5753eb056f318d014f15827b0d1661574b4eccf79063",
    "_handle_on_message": "8ccc46fdb090aeadac6c4afea7e684dd714ca2d4b163f38271b0a30dbaa112ed",
    "_handle_publish": "1bbaa3ef0e3afc6dea0423a41e67170930c024827e2e8dbf69b5d61c304b675d",
    "_packet_handle": "ac4c129ed409db421a6f85be6fdce91ebee5bdf1048bcc67034930c2617472f5",
    "ack": "92f83b7a84a46b2194e71bce7a92616f2f1c55359e6c93e536862a62344a153a",
    "_send_puback": "bb015cefb632f9428e6b25b7529412fee3ebbc781e2f0933ac3df06f4f11d7f2",
    "_send_command_with_mid": "1a771678b66dc9e48c72d825a824a0634506f914ac2b46e7c5d00de7547fc9ff",
    "_packet_queue": "e298fa9ab31e5f79c1c6d08d303b049db9a2bcf681dcac1cd510b2fb519d3a26",
    "_packet_write": "d097b7b51bed128df99bf5e6ba0bc2f502bffbd38cbe136f9d0b1280057ef02b",
    "_handle_pubackcomp": "04d39ba283b1f3bee9aa99f5b27b112eca549f889a58a8a5720d7f7873b09428",
    "_do_on_publish": "5bbcad6f9447107a5ba9446e6dbdbdf4eedad2734533d900db907240f75b93e4",
    # paho.mqtt._packet functions: what a PUBACK gives on_publish (MQTT 3.1.1).
    "_packet.decode_puback": "d4c48976c255baa16153a3c6d88cc321cc9ab4d441e5ffbbb831a38742b88895",
    "_packet._decode_mid_reason_prop": "c001ca9750a186edfd05ac19af56f03d5e9a9cfb1870a8fc3b24e1b53ec654d5",
}

Sink = Callable[[bytes, bytes, bool, int, int], None]
"""Receives each PUBLISH: topic (raw bytes), payload, retain, qos, mid."""

_PUBACK = struct.Struct("!BBH")
"""An MQTT 3.1.1 PUBACK: command, remaining length 2, the message id (as paho's
``_send_command_with_mid`` packs it)."""
_PUBACK_COMMAND = int(mqtt.PUBACK)


def source_digest(name: str) -> str:
    """sha256 of paho's source of ``mqtt.Client.<name>`` (``paho.mqtt._packet.<f>`` for ``_packet.<f>``)."""
    owner: Any = mqtt.Client
    if name.startswith("_packet."):
        owner, name = _packet, name.removeprefix("_packet.")
    return hashlib.sha256(inspect.getsource(getattr(owner, name)).encode()).hexdigest()


def supported() -> bool:
    """True when the installed paho is the one this module was written against."""
    if paho.mqtt.__version__ != PAHO_VERSION:
        return False
    try:
        return all(source_digest(name) == digest for name, digest in PINNED.items())
    except (AttributeError, OSError, TypeError):
        return False


_SUPPORTED: bool | None = None


def _remaining_length(buf: bytes, i: int, end: int) -> tuple[int, int]:
    """MQTT's remaining length encoded at ``buf[i:end]`` → (length, index after it);
    (-1, 0) when it is not all there yet or longer than the 4 bytes MQTT allows."""
    n = shift = 0
    for j in range(i, min(i + 4, end)):
        b = buf[j]
        n |= (b & 127) << shift
        if b < 128:
            return n, j + 1
        shift += 7
    return -1, 0


class _FastReceive:
    """The per-client state: the receive buffer and paho's original methods."""

    reads_per_call = 16
    """Socket reads (up to 1 MB) per ``loop_read`` call: enough for the bus's batch of 1,000
    readings (fewer, larger transactions), and a bound, so a flood cannot starve the handler
    (the socket stays readable: the event loop calls again after its other work)."""

    def __init__(self, client: mqtt.Client, sink: Sink | None):
        self.client = client
        self.sink = sink
        self.sock: Any = None
        self.buf = b""
        self.pos = 0
        self.reads_left = self.reads_per_call
        self.recvs = 0
        """Socket reads so far (tests count them)."""
        self.stash: bytes | OSError | None = None
        """What the socket said (end of file b"", an error) when the framer's read found no data:
        handed to paho's ``_packet_read`` by the next ``sock_recv``, so paho reports it its way."""
        # What a MQTT 3.1.1 PUBACK gives on_publish (_decode_mid_reason_prop): "Success" and no
        # properties. paho makes new ones for each PUBACK; these are made once, as on_publish
        # (aiomqtt's) only looks at the mid.
        self.puback_reason = ReasonCode(PacketTypes.PUBACK)
        self.puback_properties = Properties(PacketTypes.PUBACK)
        self._recv = client._sock_recv  # noqa: SLF001
        self._loop_read = client.loop_read
        self._packet_read = client._packet_read  # noqa: SLF001
        self._loop_rc_handle = client._loop_rc_handle  # noqa: SLF001
        self._on_message = client._handle_on_message  # noqa: SLF001
        self._handle_publish = client._handle_publish  # noqa: SLF001
        self._filtered = client._on_message_filtered  # noqa: SLF001

    def pending(self) -> int:
        """Bytes received from the socket that paho has not read yet."""
        return len(self.buf) - self.pos if self.client._sock is self.sock else 0  # noqa: SLF001

    def _new_socket(self, sock: Any) -> None:
        """A new connection: nothing buffered belongs to it."""
        self.sock, self.buf, self.pos, self.stash = sock, b"", 0, None

    def sock_recv(self, bufsize: int) -> bytes:
        sock = self.client._sock  # noqa: SLF001
        if sock is not self.sock:
            self._new_socket(sock)
        pos = self.pos
        buf = self.buf
        if pos < len(buf):
            end = pos + bufsize
            self.pos = end if end < len(buf) else len(buf)
            return buf[pos:end]
        if type(sock) is not socket.socket:  # TLS, websockets or no socket: paho's own way
            return self._recv(bufsize)
        stash = self.stash
        if stash is not None:
            self.stash = None
            if isinstance(stash, OSError):
                raise stash
            return stash
        if self.reads_left <= 0:  # this call's read is spent: the rest when the socket is readable again
            raise BlockingIOError
        self.reads_left -= 1
        self.recvs += 1
        data = sock.recv(CHUNK)  # BlockingIOError / OSError / b"" as paho expects them
        if len(data) <= bufsize:
            self.buf, self.pos = b"", 0
            return data
        self.buf, self.pos = data, bufsize
        return data[:bufsize]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """paho's loop_read (``_packet_read`` after ``_packet_read``), with the framer taking the
        PUBLISH and PUBACK packets in between; returns when the socket has nothing more or after
        ``reads_per_call`` reads, with everything read handled (or begun by paho)."""
        c = self.client
        sock = c._sock  # noqa: SLF001
        if sock is None:
            return mqtt.MQTT_ERR_NO_CONN
        if type(sock) is not socket.socket:  # TLS, websockets: paho's own way
            return self._loop_read(max_packets)
        if sock is not self.sock:
            self._new_socket(sock)
        # The framer's sink: none for MQTT 5 or while per-topic callbacks exist (paho's path for those).
        sink = None if c._protocol == mqtt.MQTTv5 or self._filtered._root._children else self.sink  # noqa: SLF001
        self.reads_left = self.reads_per_call
        while True:
            between = c._in_packet["command"] == 0  # noqa: SLF001 - paho's state before a packet's first byte
            if self.pos >= len(self.buf):
                if self.reads_left <= 0:
                    return mqtt.MQTT_ERR_SUCCESS
                if sink is not None and between and not self._fill(sock):
                    return mqtt.MQTT_ERR_SUCCESS  # nothing to read (paho: MQTT_ERR_AGAIN)
            if sink is not None and between and self.pos < len(self.buf):
                rc = self._take(sink)
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if self.pos >= len(self.buf):
                    continue
            # What the framer leaves, paho reads: one packet (or the start of one), as paho's loop_read does.
            if c._sock is None:  # noqa: SLF001
                return mqtt.MQTT_ERR_NO_CONN
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == mqtt.MQTT_ERR_AGAIN:
                return mqtt.MQTT_ERR_SUCCESS

    def _fill(self, sock: socket.socket) -> bool:
        """One read into the (empty) buffer; False when the socket has nothing now. End of file
        or an error is kept for paho's ``_packet_read`` to find (True)."""
        self.reads_left -= 1
        self.recvs += 1
        try:
            data = sock.recv(CHUNK)
        except BlockingIOError:
            return False
        except OSError as e:
            self.stash = e
            return True
        if not data:
            self.stash = b""
            return True
        self.buf, self.pos = data, 0
        return True

    def _take(self, sink: Sink) -> mqtt.MQTTErrorCode:
        """Every complete PUBLISH of QoS 0 or 1 (to the sink) and PUBACK from the buffer position
        on, in order; stops at the first packet that is anything else or not complete."""
        c = self.client
        puback = None if c._manual_ack else c._send_puback  # noqa: SLF001
        buf = self.buf
        end = len(buf)
        pos = start = self.pos
        rc = mqtt.MQTT_ERR_SUCCESS
        try:
            while pos + 1 < end:
                header = buf[pos]
                kind = header & 0xF6  # packet type and QoS; not DUP (0x08) or RETAIN (0x01)
                if kind == 0x32:
                    qos = 1
                elif kind == 0x30:
                    qos = 0
                elif header == 0x40:  # PUBACK for one of our QoS 1 publishes: _handle_pubackcomp
                    if pos + 4 > end or buf[pos + 1] != 2:  # not all there, or malformed: paho's way
                        break
                    mid = (buf[pos + 2] << 8) | buf[pos + 3]
                    pos += 4
                    with c._out_message_mutex:  # noqa: SLF001
                        if mid in c._out_messages:  # noqa: SLF001 - only once per message
                            rc = c._do_on_publish(mid, self.puback_reason, self.puback_properties)  # noqa: SLF001
                    if rc:
                        break
                    continue
                else:
                    break
                n = buf[pos + 1]
                body = pos + 2
                if n > 127:  # two bytes of length (a reading of 128 bytes or more) inline, more in a call
                    if body >= end:
                        break
                    b = buf[body]
                    n = (n & 127) | (b & 127) << 7
                    body += 1
                    if b > 127:
                        n, body = _remaining_length(buf, pos + 1, end)
                        if n < 0:
                            break
                stop = body + n
                if stop > end or n < 2:
                    break
                topic_end = body + 2 + ((buf[body] << 8) | buf[body + 1])
                if topic_end == body + 2 or topic_end + 2 * qos > stop:  # empty topic, or cut short:
                    break  # paho's own error handling
                pos = stop
                if qos:
                    mid = (buf[topic_end] << 8) | buf[topic_end + 1]
                    sink(buf[body + 2:topic_end], buf[topic_end + 2:stop], (header & 1) == 1, 1, mid)
                    if puback is not None:
                        rc = puback(mid)
                        if rc:
                            break
                else:
                    sink(buf[body + 2:topic_end], buf[topic_end:stop], (header & 1) == 1, 0, 0)
        finally:
            self.pos = pos
        if pos != start:
            with c._msgtime_mutex:  # noqa: SLF001 - as _packet_read does after each packet
                c._last_bytes_received = mqtt.time_func()  # noqa: SLF001
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


def ack_many(client: mqtt.Client, mids: Sequence[int]) -> mqtt.MQTTErrorCode:
    """PUBACK each QoS 1 message id (manual-ack mode), in order, as one outgoing packet (one
    ``send``); on a client ``speed_up`` left alone, paho's ``ack`` for each."""
    if not mids:
        return mqtt.MQTT_ERR_SUCCESS
    if getattr(client, "_sigap_fast", None) is None or not client._manual_ack:  # noqa: SLF001
        rc = mqtt.MQTT_ERR_SUCCESS
        for mid in mids:
            rc = client.ack(mid, 1) or rc
        return rc
    pack = _PUBACK.pack
    packet = b"".join([pack(_PUBACK_COMMAND, 2, mid) for mid in mids])
    # As paho's _send_command_with_mid queues one PUBACK (mid and qos are only looked at for a PUBLISH).
    return client._packet_queue(_PUBACK_COMMAND, packet, 0, 1)  # noqa: SLF001
