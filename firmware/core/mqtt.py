# Small asyncio MQTT 3.1.1 client for the boards. The same file runs on
# MicroPython (ESP32) and on CPython (the simulator's virtual boards).
#
# Three layers, each testable alone (the split follows Peter Hinch's mqtt_as):
#   1. packet codec: pure functions from values to bytes and back, no I/O;
#   2. read_header() / read_packet(): one packet off an asyncio stream;
#   3. MQTTClient: one connection at a time, keepalive, QoS 1 with retransmit,
#      a bounded outbox that counts what it drops, reconnect with back-off.
#
# Only QoS 0 and 1 are spoken: a board subscribes with QoS <= 1, so the broker
# never sends it QoS 2, and at-least-once is enough because the controller
# drops duplicates by (device, boot, seq).
#
# Section numbers in [] refer to the MQTT 3.1.1 OASIS standard (2014).
import asyncio
import random
import struct

from firmware.core import clock
from firmware.core.compat import const

# Control packet types, first byte with the flags each type requires [2.2.1, 2.2.2].
CONNECT = const(0x10)
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBSCRIBE = const(0x82)
SUBACK = const(0x90)
UNSUBACK = const(0xB0)
PINGREQ = const(0xC0)
PINGRESP = const(0xD0)
DISCONNECT = const(0xE0)

# Packets without variable parts are constants: immutable, shared safely.
# Packets with variable parts are built as fresh small bytes, not in one reused
# bytearray as umqtt.simple does with a blocking socket: an asyncio transport
# may keep a reference to what write() got until the kernel takes it (CPython
# 3.12+ does), so rewriting a shared buffer could corrupt a pending packet.
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

MAX_REMAINING = const(268435455)  # largest Remaining Length, 4 bytes [2.2.3]
SUBACK_FAILURE = const(0x80)

# MicroPython has no builtin TimeoutError; asyncio's own class exists on both.
_Timeout = asyncio.TimeoutError

_DUP = const(0x08)
_RETAIN = const(0x01)
_CHUNK = const(256)  # read size when skipping an oversized packet


class MQTTError(Exception):
    """An MQTT failure; .code is a CONNACK return code (int) or a short string."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


# ---------------------------------------------------------------- 1. codec


def encode_length(n):
    """The Remaining Length n as MQTT's variable-length integer: 7 bits a byte,
    least significant first, high bit = more follows; 1 to 4 bytes [2.2.3]."""
    if n < 0 or n > MAX_REMAINING:
        raise MQTTError("too_long")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_length(buf, pos=0):
    """(value, next position) of the variable-length integer at buf[pos].
    MQTTError("malformed") if it runs past 4 bytes or past the end of buf."""
    value = 0
    shift = 0
    while shift < 28:
        if pos >= len(buf):
            raise MQTTError("malformed")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise MQTTError("malformed")


def _bytes(data):
    return data.encode() if isinstance(data, str) else data


def _field(data):
    # A string or binary field: 2-byte big-endian length, then the bytes [1.5.3].
    data = _bytes(data)
    if len(data) > 65535:
        raise MQTTError("too_long")
    return struct.pack("!H", len(data)) + data


def _packet(first, body):
    return bytes((first,)) + encode_length(len(body)) + body


def _check_topic_name(topic):
    # A topic name (not a filter) is never empty and has no wildcards [4.7.3, 3.3.2.1].
    if not topic or "+" in topic or "#" in topic:
        raise MQTTError("bad_topic")


def connect_packet(client_id, keepalive=60, will=None, user=None, password=None, clean=True):
    """CONNECT [3.1]. will: (topic, payload, retain, qos) or None."""
    if keepalive < 0 or keepalive > 65535:
        raise MQTTError("bad_keepalive")
    flags = 0x02 if clean else 0x00
    payload = _field(client_id)
    if will is not None:
        topic, message, retain, qos = will
        _check_topic_name(topic)
        if qos not in (0, 1, 2):
            raise MQTTError("bad_qos")
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _field(topic) + _field(message)
    if user is not None:
        flags |= 0x80
        payload += _field(user)
        if password is not None:
            flags |= 0x40
            payload += _field(password)
    elif password is not None:
        raise MQTTError("password_without_user")  # not allowed [3.1.2.9]
    # Variable header: protocol name "MQTT", level 4 (= 3.1.1), flags, keepalive [3.1.2].
    return _packet(CONNECT, b"\x00\x04MQTT\x04" + struct.pack("!BH", flags, keepalive) + payload)


def parse_connack(body):
    """(session_present, return_code) from a CONNACK body [3.2]."""
    if len(body) != 2 or body[0] & 0xFE:
        raise MQTTError("malformed")
    return bool(body[0] & 1), body[1]


def publish_header(topic, payload_len, qos=0, retain=False, dup=False, pid=0):
    """Everything of a PUBLISH before its payload [3.3]; the caller writes the
    payload after it, so a payload is never copied into a bigger buffer."""
    _check_topic_name(topic)
    if qos not in (0, 1):
        raise MQTTError("bad_qos")
    name = _field(topic)
    first = PUBLISH | (qos << 1) | (_RETAIN if retain else 0)
    if qos:
        if pid < 1 or pid > 65535:
            raise MQTTError("bad_pid")
        if dup:
            first |= _DUP  # DUP is only ever set on QoS > 0 [3.3.1.1]
        return (
            bytes((first,))
            + encode_length(len(name) + 2 + payload_len)
            + name
            + struct.pack("!H", pid)
        )
    return bytes((first,)) + encode_length(len(name) + payload_len) + name


def publish_packet(topic, payload, qos=0, retain=False, dup=False, pid=0):
    """A whole PUBLISH packet (header + payload) as bytes."""
    payload = _bytes(payload)
    return publish_header(topic, len(payload), qos, retain, dup, pid) + payload


def parse_publish(first, body):
    """(topic, payload, qos, retain, dup, pid) from a PUBLISH's first byte and body."""
    qos = (first >> 1) & 3
    if qos == 3:
        raise MQTTError("malformed")  # [3.3.1.2]
    if len(body) < 2:
        raise MQTTError("malformed")
    end = 2 + struct.unpack_from("!H", body, 0)[0]
    if end > len(body):
        raise MQTTError("malformed")
    try:
        topic = bytes(body[2:end]).decode()
    except UnicodeError:
        raise MQTTError("malformed") from None
    pid = 0
    if qos:
        if end + 2 > len(body):
            raise MQTTError("malformed")
        pid = struct.unpack_from("!H", body, end)[0]
        end += 2
        if pid == 0:
            raise MQTTError("malformed")  # [2.3.1]
    return topic, bytes(body[end:]), qos, bool(first & _RETAIN), bool(first & _DUP), pid


def puback_packet(pid):
    """PUBACK for packet id pid [3.4]."""
    return struct.pack("!BBH", PUBACK, 2, pid)


def parse_pid(body):
    """The packet id that is the whole body of a PUBACK or UNSUBACK."""
    if len(body) != 2:
        raise MQTTError("malformed")
    return struct.unpack_from("!H", body, 0)[0]


def subscribe_packet(pid, topics):
    """SUBSCRIBE [3.8]; topics: list of (topic filter, max qos)."""
    if not topics:
        raise MQTTError("no_topics")  # a SUBSCRIBE without filters is a violation [3.8.3]
    body = struct.pack("!H", pid)
    for topic, qos in topics:
        if not topic or qos not in (0, 1, 2):
            raise MQTTError("bad_subscription")
        body += _field(topic) + bytes((qos,))
    return _packet(SUBSCRIBE, body)


def parse_suback(body):
    """(pid, [return codes]) from a SUBACK body; 0x80 means refused [3.9.3]."""
    if len(body) < 3:
        raise MQTTError("malformed")
    codes = list(body[2:])
    for code in codes:
        if code > 2 and code != SUBACK_FAILURE:
            raise MQTTError("malformed")
    return struct.unpack_from("!H", body, 0)[0], codes


def split_packet(buf, pos=0):
    """(first byte, body, next position) of the whole packet at buf[pos]."""
    if pos >= len(buf):
        raise MQTTError("malformed")
    first = buf[pos]
    n, start = decode_length(buf, pos + 1)
    if start + n > len(buf):
        raise MQTTError("malformed")
    return first, bytes(buf[start : start + n]), start + n


# ---------------------------------------------------------------- 2. stream


async def read_header(reader):
    """(first byte, remaining length) of the next packet on an asyncio stream.
    Raises EOFError (IncompleteReadError on CPython) when the peer closes."""
    head = await reader.readexactly(2)  # the shortest packet is 2 bytes
    byte = head[1]
    value = byte & 0x7F
    shift = 7
    while byte & 0x80:
        if shift >= 28:
            raise MQTTError("malformed")
        byte = (await reader.readexactly(1))[0]
        value |= (byte & 0x7F) << shift
        shift += 7
    return head[0], value


async def read_packet(reader, max_size=MAX_REMAINING):
    """(first byte, body) of the next packet; MQTTError("too_large") over max_size."""
    first, n = await read_header(reader)
    if n > max_size:
        raise MQTTError("too_large")
    return first, (await reader.readexactly(n)) if n else b""


# ---------------------------------------------------------------- 3. client

# An acknowledgement waiter is a 2-list [Event, result]; result stays None
# while pending, becomes True (PUBACK), a list of codes (SUBACK) or False
# (the link went down before the answer came).


class MQTTClient:
    """Reconnecting MQTT 3.1.1 client: clean sessions, QoS 0/1, bounded outbox."""

    max_packet = 8192  # incoming packets above this are skipped (acked) and counted
    max_retransmits = 3  # per message and connection; then the link is declared dead
    stable_ms = 10000  # a link that lived this long resets the back-off

    def __init__(
        self,
        client_id,
        host,
        port=1883,
        user=None,
        password=None,
        keepalive=60,
        will=None,
        open_connection=None,
        outbox_size=32,
        backoff_min_ms=500,
        backoff_max_ms=60000,
        ack_timeout_ms=5000,
        connect_timeout_ms=10000,
    ):
        if password is not None and user is None:
            raise ValueError("password needs a user name")
        if will is not None:
            _check_topic_name(will[0])
            will = (will[0], _bytes(will[1]), will[2], will[3])
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.will = will
        self._open = open_connection  # resolved at connect: some ports have no sockets
        self.outbox_size = max(1, outbox_size)
        self.backoff_min_ms = max(1, backoff_min_ms)
        self.backoff_max_ms = max(self.backoff_min_ms, backoff_max_ms)
        self.ack_timeout_ms = ack_timeout_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.on_message = None  # sync (topic: str, payload: bytes, retained: bool)
        self.on_connect = None  # async (): after CONNACK and SUBACK, before the outbox drains
        self.on_disconnect = None  # sync ()
        self.last_error = None  # why the last connection failed or ended
        self.stats = {
            "connects": 0,
            "connect_failures": 0,
            "disconnects": 0,
            "dropped": 0,  # outbox overflow: the oldest message was discarded
            "retransmits": 0,  # PUBLISH resent with DUP on the same connection
            "sent": 0,  # PUBLISH written (QoS 0) or acknowledged (QoS 1)
            "received": 0,  # PUBLISH from the broker
            "pings": 0,
            "link_timeouts": 0,  # nothing heard for 1.5 x keepalive
            "malformed": 0,  # broken packet from the broker: link closed
            "unexpected": 0,  # packet type a client never gets: ignored
            "oversized": 0,  # packet above max_packet: skipped
            "handler_errors": 0,  # on_message / on_connect / on_disconnect raised
        }
        self._subs = {}  # topic filter -> qos, sent on every connect
        self._outbox = []  # [topic, payload, retain, qos, sent_before]; head may be in flight
        self._inflight = 0  # publish_now() calls under way
        self._acks = {}  # pid -> waiter
        self._pid = 0
        self._reader = None
        self._writer = None
        self._rtask = None  # reads packets
        self._dtask = None  # drains the outbox
        self._sub_task = None  # late subscribe() while connected
        self._up = False  # a CONNACK was accepted on the current link
        self._closing = False
        self._running = False
        self._connected = asyncio.Event()
        self._down = asyncio.Event()  # the current link is finished
        self._stop = asyncio.Event()  # close() was called
        self._done = asyncio.Event()  # run() has returned
        self._outbox_ev = asyncio.Event()
        self._wlock = asyncio.Lock()  # one packet at a time on the stream
        # Set again by _connect() before they are read; ticks, never plain ints.
        self._last_rx = self._last_tx = self._last_ping = clock.ticks_ms()

    # -- application API ----------------------------------------------------

    def subscribe(self, topic, qos=1):
        """Register a subscription; it is (re)sent on every connect."""
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        self._subs[topic] = qos
        if self.isconnected():
            self._sub_task = asyncio.create_task(self._subscribe_late(topic, qos))

    def publish(self, topic, payload, retain=False, qos=1):
        """Queue a message; never blocks. When the outbox is full the oldest
        message is dropped (counted in stats["dropped"]) and False returned."""
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        _check_topic_name(topic)
        ok = True
        if len(self._outbox) >= self.outbox_size:
            self._outbox.pop(0)
            self.stats["dropped"] += 1
            ok = False
        self._outbox.append([topic, _bytes(payload), retain, qos, False])
        self._outbox_ev.set()
        return ok

    async def publish_now(self, topic, payload, retain=False, qos=1):
        """Send at once on the current link (QoS 1: until PUBACK, retransmitting
        with DUP); MQTTError if not connected or the link fails meanwhile."""
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if not self.isconnected():
            raise MQTTError("not_connected")
        self._inflight += 1
        try:
            await self._deliver(topic, _bytes(payload), retain, qos, None, self.max_retransmits)
        except MQTTError as e:
            if e.code == "ack_timeout":
                self._link_down(e)
            raise
        finally:
            self._inflight -= 1

    def isconnected(self):
        """True between an accepted CONNACK (and SUBACK) and the loss of the link."""
        return self._connected.is_set()

    async def wait_connected(self):
        """Return once the client is connected."""
        await self._connected.wait()

    def pending(self):
        """Messages not yet acknowledged: the outbox plus publish_now() in flight."""
        return len(self._outbox) + self._inflight

    def backoff_ms(self, attempt):
        """Reconnect delay after `attempt` failures in a row: "full jitter", a
        random value in [0, min(max, min * 2**attempt)], so boards that lost the
        same broker do not all come back in the same instant."""
        cap = self.backoff_min_ms << min(attempt, 20)
        if cap > self.backoff_max_ms:
            cap = self.backoff_max_ms
        # 10 random bits keep the product a small int on MicroPython (< 2**30).
        return cap * random.getrandbits(10) // 1023

    async def run(self):
        """Connect, serve, reconnect with back-off, until close()."""
        if self._running:
            raise MQTTError("already_running")
        self._running = True
        self._done.clear()
        attempt = 0
        try:
            while not self._closing:
                try:
                    await self._connect()
                except Exception as e:  # OSError, EOFError, MQTTError, TimeoutError
                    await self._teardown()
                    self.last_error = e
                    self.stats["connect_failures"] += 1
                    if not self._closing:
                        await self._backoff(attempt)
                        attempt += 1
                    continue
                up_since = clock.ticks_ms()
                if self._closing:  # close() came while we were connecting
                    await self._disconnect_now()
                else:
                    await self._serve()
                await self._teardown()
                if not self._closing:
                    # Back-off restarts from its minimum after a link that held;
                    # one dropped at once (say two boards sharing a client id
                    # take each other's session) keeps escalating instead.
                    if clock.ticks_diff(clock.ticks_ms(), up_since) >= self.stable_ms:
                        attempt = 0
                    await self._backoff(attempt)
                    attempt += 1
        finally:
            self._running = False
            await self._teardown()
            self._done.set()

    async def close(self, final=None):
        """Stop for good: publish `final` (topic, payload, retain, qos) if
        connected, then DISCONNECT cleanly so the broker drops the Will; run()
        returns. Do not call it from on_connect (run() waits for that)."""
        self._closing = True
        self._stop.set()
        if self.isconnected():
            if final is not None:
                topic, payload, retain, qos = final
                try:
                    # One attempt only: close must not hang on a dying link.
                    await self._deliver(topic, _bytes(payload), retain, qos, None, 0)
                except MQTTError:
                    pass
            await self._disconnect_now()
        if self._running:
            limit = (self.connect_timeout_ms + self.ack_timeout_ms) / 1000 + 1
            try:
                await asyncio.wait_for(self._done.wait(), limit)
            except _Timeout:
                pass

    # -- one connection -----------------------------------------------------

    async def _connect(self):
        self._down.clear()
        await asyncio.wait_for(self._handshake(), self.connect_timeout_ms / 1000)
        now = clock.ticks_ms()
        self._last_rx = self._last_tx = self._last_ping = now
        self._rtask = asyncio.create_task(self._read_loop(self._reader))
        if self._subs:
            await self._subscribe(list(self._subs.items()))
        if self._closing:
            return
        self._up = True
        self._connected.set()
        self.stats["connects"] += 1
        cb = self.on_connect
        if cb is not None:
            try:
                await cb()
            except MQTTError:
                pass  # the link failed under it; _serve() notices
            except Exception:
                self.stats["handler_errors"] += 1
        self._dtask = asyncio.create_task(self._drain_outbox())

    async def _handshake(self):
        opener = self._open or asyncio.open_connection
        self._reader, self._writer = await opener(self.host, self.port)
        await self._send(
            connect_packet(self.client_id, self.keepalive, self.will, self.user, self.password)
        )
        first, n = await read_header(self._reader)
        if first != CONNACK or n != 2:
            raise MQTTError("no_connack")
        code = parse_connack(await self._reader.readexactly(2))[1]
        if code:
            raise MQTTError(code)

    async def _serve(self):
        # Supervise the link until it goes down: PINGREQ when idle for half the
        # keepalive, and a link silent for 1.5 x keepalive is dead (the broker
        # applies the same 1.5 factor to us [3.1.2.10]). Between checks it sleeps
        # until the first moment either could be due, not on a fixed tick: traffic
        # meanwhile only moves those moments later, and an idle board wakes about
        # twice per keepalive instead of every second (a real board sleeps more; a
        # simulator runs thousands of boards).
        ka = self.keepalive * 1000
        half = ka // 2
        while not self._down.is_set():
            wait = 1000
            if ka:
                now = clock.ticks_ms()
                rx = clock.ticks_diff(now, self._last_rx)
                tx = clock.ticks_diff(now, self._last_tx)
                dead_in = ka * 3 // 2 - rx
                ping_in = max(half - clock.ticks_diff(now, self._last_ping), half - (rx if rx > tx else tx))
                wait = dead_in if dead_in < ping_in else ping_in
                if wait < 50:
                    wait = 50
            try:
                await asyncio.wait_for(self._down.wait(), wait / 1000)
            except _Timeout:
                pass
            if self._down.is_set() or not ka:
                continue
            now = clock.ticks_ms()
            if clock.ticks_diff(now, self._last_rx) > ka * 3 // 2:
                self.stats["link_timeouts"] += 1
                self._link_down("keepalive_timeout")
                break
            if clock.ticks_diff(now, self._last_ping) >= half and (
                clock.ticks_diff(now, self._last_tx) >= half
                or clock.ticks_diff(now, self._last_rx) >= half
            ):
                self._last_ping = now
                try:
                    await asyncio.wait_for(self._send(PINGREQ_PACKET), max(half, 1000) / 1000)
                    self.stats["pings"] += 1
                except Exception:  # MQTTError, or timeout: a stuck send is a dead link
                    self._link_down("ping_failed")
                    break

    async def _disconnect_now(self):
        try:
            await self._send(DISCONNECT_PACKET)
        except MQTTError:
            pass
        # No await between the DISCONNECT and this: nothing can follow it [3.14.4].
        self._link_down(None)

    def _link_down(self, reason):
        # Mark the current link finished and fail every waiter; run() cleans up.
        if self._down.is_set():
            return
        if reason is not None:
            self.last_error = reason
        self._down.set()
        self._connected.clear()
        for waiter in self._acks.values():
            if waiter[1] is None:
                waiter[1] = False
                waiter[0].set()

    async def _teardown(self):
        self._link_down(None)
        # Cancel the link's tasks before closing the socket: MicroPython must not
        # close a socket that a task still polls.
        for task in (self._rtask, self._dtask, self._sub_task):
            if task is not None:
                task.cancel()
        self._rtask = self._dtask = self._sub_task = None
        writer = self._writer
        self._reader = self._writer = None
        if writer is not None:
            try:
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 1)
            except Exception:
                pass
        if self._up:
            self._up = False
            self.stats["disconnects"] += 1
            cb = self.on_disconnect
            if cb is not None:
                try:
                    cb()
                except Exception:
                    self.stats["handler_errors"] += 1

    async def _backoff(self, attempt):
        try:
            await asyncio.wait_for(self._stop.wait(), self.backoff_ms(attempt) / 1000)
        except _Timeout:
            pass

    async def _send(self, data, payload=None):
        # Write one packet (header, then payload) and wait until the stream took it.
        async with self._wlock:
            writer = self._writer
            if writer is None or self._down.is_set():
                raise MQTTError("not_connected")
            try:
                writer.write(data)
                if payload:
                    writer.write(payload)
                self._last_tx = clock.ticks_ms()
                await writer.drain()
            except Exception as e:  # OSError, ConnectionResetError, ...
                self._link_down(e)
                raise MQTTError("send_failed") from None

    def _new_pid(self):
        # Packet ids run 1..65535 and wrap, never 0 [2.3.1], skipping ids in use.
        pid = self._pid
        while True:
            pid = pid + 1 if pid < 65535 else 1
            if pid not in self._acks:
                self._pid = pid
                return pid

    async def _await_ack(self, waiter):
        try:
            await asyncio.wait_for(waiter[0].wait(), self.ack_timeout_ms / 1000)
        except _Timeout:
            pass
        return waiter[1]

    async def _deliver(self, topic, payload, retain, qos, entry, retries):
        # Send one PUBLISH; for QoS 1 wait for its PUBACK, resending with DUP
        # up to `retries` times; MQTTError("ack_timeout") when they run out.
        if qos == 0:
            await self._send(publish_header(topic, len(payload), 0, retain), payload)
            self.stats["sent"] += 1
            return
        pid = self._new_pid()
        waiter = [asyncio.Event(), None]
        self._acks[pid] = waiter
        dup = entry is not None and entry[4]  # sent on an earlier link
        try:
            while True:
                header = publish_header(topic, len(payload), 1, retain, dup, pid)
                if entry is not None:
                    entry[4] = True
                await self._send(header, payload)
                result = await self._await_ack(waiter)
                if result is True:
                    self.stats["sent"] += 1
                    return
                if result is False:
                    raise MQTTError("disconnected")
                if retries <= 0:
                    raise MQTTError("ack_timeout")
                retries -= 1
                dup = True
                self.stats["retransmits"] += 1
        finally:
            self._acks.pop(pid, None)

    async def _subscribe(self, topics):
        pid = self._new_pid()
        waiter = [asyncio.Event(), None]
        self._acks[pid] = waiter
        try:
            await self._send(subscribe_packet(pid, topics))
            codes = await self._await_ack(waiter)
        finally:
            self._acks.pop(pid, None)
        if codes is None:
            raise MQTTError("suback_timeout")
        if codes is False or codes is True:
            raise MQTTError("disconnected")
        if len(codes) != len(topics) or SUBACK_FAILURE in codes:
            raise MQTTError("suback_refused")

    async def _subscribe_late(self, topic, qos):
        try:
            await self._subscribe([(topic, qos)])
        except MQTTError:
            pass  # the next connect subscribes again

    async def _drain_outbox(self):
        # In order, one message in flight: the head leaves only on its PUBACK.
        box = self._outbox
        try:
            while True:
                if not box:
                    self._outbox_ev.clear()
                    await self._outbox_ev.wait()
                    continue
                entry = box[0]
                await self._deliver(
                    entry[0], entry[1], entry[2], entry[3], entry, self.max_retransmits
                )
                if box and box[0] is entry:  # unless the overflow dropped it meanwhile
                    box.pop(0)
        except MQTTError as e:
            if e.code == "ack_timeout":
                self._link_down(e)
        except Exception as e:
            self._link_down(e)

    async def _read_loop(self, reader):
        try:
            while True:
                first, n = await read_header(reader)
                self._last_rx = clock.ticks_ms()
                if n > self.max_packet:
                    await self._skip(reader, first, n)
                    continue
                body = (await reader.readexactly(n)) if n else b""
                self._last_rx = clock.ticks_ms()
                await self._dispatch(first, body)
        except MQTTError as e:
            if e.code == "malformed":
                self.stats["malformed"] += 1
            self._link_down(e)
        except Exception as e:  # EOFError, OSError: the link is gone
            self._link_down(e)

    async def _dispatch(self, first, body):
        kind = first & 0xF0
        if kind == PUBLISH:
            topic, payload, qos, retain, _dup, pid = parse_publish(first, body)
            if qos == 2:
                self.stats["unexpected"] += 1  # never subscribed with QoS 2
                return
            self.stats["received"] += 1
            cb = self.on_message
            if cb is not None:
                try:
                    cb(topic, payload, retain)
                except Exception:
                    self.stats["handler_errors"] += 1
            if qos == 1:
                # Acknowledged after the handler ran: at-least-once.
                await self._send(puback_packet(pid))
            return
        if kind not in (PUBACK, SUBACK, PINGRESP, UNSUBACK):
            # CONNACK again, PUBREC/PUBREL/PUBCOMP (QoS 2), client-only or
            # reserved types: not for us, and not worth a reconnect.
            self.stats["unexpected"] += 1
            return
        if first & 0x0F:
            raise MQTTError("malformed")  # these types have flags 0000 [2.2.2]
        if kind == PUBACK:
            self._answer(parse_pid(body), True)
        elif kind == SUBACK:
            pid, codes = parse_suback(body)
            self._answer(pid, codes)
        elif kind == PINGRESP:
            if body:
                raise MQTTError("malformed")
        else:
            parse_pid(body)  # UNSUBACK: we never unsubscribe, but it is well-formed

    def _answer(self, pid, result):
        waiter = self._acks.get(pid)
        if waiter is not None and waiter[1] is None:
            waiter[1] = result
            waiter[0].set()

    async def _skip(self, reader, first, n):
        # Read past a packet too big for this board's RAM; a QoS 1 PUBLISH is
        # still acknowledged, or the broker would send it again forever.
        self.stats["oversized"] += 1
        pid = 0
        if first & 0xF0 == PUBLISH and (first >> 1) & 3 == 1:
            tlen = struct.unpack("!H", await reader.readexactly(2))[0]
            if tlen + 4 > n:
                raise MQTTError("malformed")
            await self._discard(reader, tlen)
            pid = struct.unpack("!H", await reader.readexactly(2))[0]
            n -= tlen + 4
        await self._discard(reader, n)
        if pid:
            await self._send(puback_packet(pid))

    async def _discard(self, reader, n):
        while n > 0:
            k = n if n < _CHUNK else _CHUNK
            await reader.readexactly(k)
            n -= k
            self._last_rx = clock.ticks_ms()
