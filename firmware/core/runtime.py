# The runtime shared by every role: settings, identity, boot counter, birth and
# Will, event numbering (boot, seq), dispatch of the controller's commands, and
# the supervisor that keeps a board honest for years unattended:
#
#   WiFi      joined by the board (with back-off); while it is down the MQTT
#             client is stopped, so it does not burn its back-off on a
#             network that is not there;
#   broker    MQTTClient reconnects on its own (full-jitter back-off); if the
#             broker stays unreachable for broker_reboot_s (default 900 s, as
#             ESPHome's 15 minutes) the board reboots: a wedged WiFi or TCP
#             stack is the usual cause, and a reboot is the cure;
#   watchdog  fed only while Health says every essential part is alive (the
#             supervisor loop, the MQTT task, the role task); a dead part
#             stops the feeding and the hardware watchdog reboots the board;
#   LED       one blink pattern per state: joining_wifi, joining_broker,
#             online, error (firmware/core/status_led.py);
#   reasons   why the board (re)started is kept in flash ("reset_reason":
#             broker_timeout, config, ...; else the board's reset cause:
#             watchdog, power) and reported in the birth as "reset".
#
# What only the boot needs (choosing the settings, counting the boot, building
# the MQTT client and the role) is in startup.py and settings.py, which boot()
# drops once the role is made: see forget().
#
# A role is a small class with `async run()` and `on_cmd(kind, msg)`; it never
# touches MQTT or flash directly, only this Device and the board's drivers.
# What a role may use of the Device:
#   device.emit(kind, msg) -> seq     an event, numbered and queued (QoS 1)
#   device.stamp(msg) -> seq          number an event only (a role that spools it on flash)
#   await device.send(kind, msg)      publish a numbered event now, until PUBACK
#                                     (MQTTError when the link is down or fails)
#   device.write(name, text) -> bool  a flash write that survives a full flash
#                                     (counted in device.flash_errors, logged once)
#   device.settings, .board, .id, .prefix, .boot
#   device.time()                     Unix seconds, or None while unsynced
#   device.online()                   the broker link is up
#   await device.wait_online()        until it is
#   device.health.expect(name, ms) / device.health.beat(name)
#                                     a heartbeat the watchdog then requires
#   FlashQueue / Spool                bounded queues on flash: a role imports
#                                     the one it uses (firmware.core.flashqueue,
#                                     firmware.core.spool), so a role loads only that
#   await device.close()              clean offline state + DISCONNECT
#   await device.sleep(ms)            offline state with sleep_s, DISCONNECT, then
#                                     board.deep_sleep(): does not return on hardware
import asyncio
import json
import sys

from firmware.core import clock
from firmware.core.health import Health
from firmware.core.mqtt import MQTTClient  # noqa: F401 - its type; startup.py builds it
from firmware.core.status_led import StatusLed
from protocol import wire

FW_VERSION = "0.1.0"
SETTINGS = "firmware.core.settings"  # boot-only: see forget()
STARTUP = "firmware.core.startup"  # boot-only: see forget()
# MicroPython keeps a loaded module's code in the heap until the module is
# dropped; CPython (the simulator: many virtual boards, one set of modules)
# keeps its modules. Decided once, here.
_FORGET = sys.implementation.name == "micropython"


class Device:
    """One board's runtime: settings, boot count, MQTT link, events, commands, supervision."""

    keepalive_s = 30
    outbox_size = 32
    broker_reboot_s = 900  # ESPHome's mqtt reboot_timeout default: 15 minutes
    mqtt_backoff_max_s = 60
    tick_ms = 500  # supervisor period: LED state, broker timer, network
    loop_grace_ms = 5000  # the supervisor must tick within this, or the watchdog starves
    config_retry_s = 30  # unconfigured: read the settings again this often

    def __init__(self, board):
        from firmware.core import startup  # boot-only: boot() forgets it

        self.board = board
        self.flash_errors = 0  # flash writes that failed (OSError: full flash, worn block)
        self.seq = 0
        self.started = clock.ticks_ms()
        self.role = None
        self.rebirths = 0
        self.closing = False
        self.reboot_reason = None  # set when this runtime asked the board to reboot
        self._joined = False  # connect_network() succeeded (boards without network_up())
        self._told = 0  # health failures already logged
        self.health = Health()
        led_pin = getattr(board, "status_led", None)
        self.led = StatusLed(led_pin() if led_pin else None, getattr(board, "led_pattern", None))
        # Set by startup.setup() (what an unconfigured board keeps):
        self.settings = {}  # the validated copy in use
        self.settings_source = None  # "file", "good" (the fallback) or None (unconfigured)
        self.cfg_errors = []  # what was wrong with the settings
        self.cfg_reported = []  # the same as the birth's "cfg_err"
        self.configured = False
        self.boot = 0  # this boot's number (kept in flash)
        self.reset_reason = "power"  # why this boot happened
        self.id = ""
        self.role_name = ""
        self.prefix = wire.DEFAULT_PREFIX
        self.state_topic = self.cmd_base = self.ctl_topic = ""
        self.mqtt = None  # type: MQTTClient | None
        startup.setup(self)
        self._good_saved = self.settings_source != "file"  # only a file that worked is kept as "good"
        mqtt = self.mqtt
        if mqtt is not None:
            mqtt.on_connect = self._on_connect
            mqtt.on_disconnect = self._on_link_down
            mqtt.on_message = self._on_message
            mqtt.subscribe(wire.dev_sub_topic(self.prefix, self.id), 1)
            mqtt.subscribe(self.ctl_topic, 1)

    # -- flash: boot counter, reset reason, last good settings -----------------

    def _save_good_settings(self):
        # After the first broker connection with settings.json: it works, keep it.
        # Once per boot: the settings module is loaded for it and forgotten again.
        from firmware.core import settings as config

        self._good_saved = True
        try:
            if not config.same_settings(self.board.storage.read(config.SETTINGS_GOOD), self.settings):
                self.write(config.SETTINGS_GOOD, json.dumps(self.settings))
        except Exception:  # a settings copy that does not encode must not take the link down
            pass
        forget(SETTINGS)

    def write(self, name, text):
        """storage.write(name, text); False (counted, logged the first time) when flash refuses.

        A full flash (OSError 28, ENOSPC) or a worn block must not stop a
        board: it goes on without what it could not keep, and says so in its
        birth ("flash_err")."""
        try:
            self.board.storage.write(name, text)
            return True
        except OSError as e:
            self.flash_errors += 1
            if self.flash_errors == 1:
                self.log("flash write failed (" + name + "): " + str(e))
            return False

    # -- what a role uses --------------------------------------------------------

    def uptime_s(self):
        """Seconds since this boot."""
        return clock.ticks_diff(clock.ticks_ms(), self.started) // 1000

    def time(self):
        """Unix seconds from the board's synced clock, or None while unsynced."""
        t = getattr(self.board, "time", None)
        return t() if t is not None else None

    def online(self):
        """True while the broker link is up."""
        return self.mqtt is not None and self.mqtt.isconnected()

    def birth(self):
        """The birth state message (retained); "reset" and "cfg_err" are extra fields."""
        extra = {"reset": self.reset_reason}  # type: dict
        if self.flash_errors:
            extra["flash_err"] = self.flash_errors
        fields = getattr(self.role, "birth_fields", None)
        if fields is not None:
            extra.update(fields())  # e.g. a water board's unsent and lost readings
        if self.cfg_reported:
            extra["cfg_err"] = self.cfg_reported
        return wire.birth(
            self.role_name, FW_VERSION, self.boot, self.board.rssi(), self.board.heap_free(), self.uptime_s(), **extra
        )

    def stamp(self, msg):
        """Number an event with this boot's (boot, seq); returns its seq."""
        self.seq += 1
        msg["boot"] = self.boot
        msg["seq"] = self.seq
        return self.seq

    def emit(self, kind, msg):
        """Number an event with (boot, seq) and queue it for QoS 1 delivery; returns its seq."""
        mqtt = self.mqtt
        if mqtt is None:
            raise ValueError("unconfigured board: no events")
        self.stamp(msg)
        payload = wire.encode(msg, wire.MAX_DEVICE_PAYLOAD)
        mqtt.publish(wire.dev_topic(self.prefix, self.id, "evt/" + kind), payload, False, 1)
        return self.seq

    async def wait_online(self):
        """Return once the broker link is up."""
        if self.mqtt is None:
            raise ValueError("unconfigured board: no link")
        await self.mqtt.wait_connected()

    async def send(self, kind, msg):
        """Publish an already numbered event now and wait for its PUBACK.

        For events a role keeps on flash until delivered (the water board's
        readings keep their original boot and seq across reboots). Raises
        MQTTError when the link is down or fails before the PUBACK."""
        mqtt = self.mqtt
        if mqtt is None:
            raise ValueError("unconfigured board: no events")
        payload = wire.encode(msg, wire.MAX_DEVICE_PAYLOAD)
        await mqtt.publish_now(wire.dev_topic(self.prefix, self.id, "evt/" + kind), payload, False, 1)

    # -- MQTT callbacks ------------------------------------------------------------

    async def _on_connect(self):
        await self._publish_birth()
        self.led.set("online")
        if not self._good_saved:
            self._save_good_settings()

    def _on_link_down(self):
        if not self.closing:
            self.led.set("joining_broker" if self._network_up() else "joining_wifi")

    async def _publish_birth(self):
        mqtt = self.mqtt
        if mqtt is None:
            return
        payload = wire.encode(self.birth(), wire.MAX_DEVICE_PAYLOAD)
        await mqtt.publish_now(self.state_topic, payload, True, 1)

    async def _rebirth(self):
        try:
            await self._publish_birth()
            self.rebirths += 1
        except Exception:  # the link dropped; the next connect sends a birth anyway
            pass

    def _on_message(self, topic, payload, retained):
        try:
            msg = wire.decode(payload, wire.MAX_CONTROLLER_PAYLOAD)
        except wire.ProtocolError:
            return
        if topic == self.ctl_topic:
            # A (re)started controller: announce ourselves again so it learns us at once.
            if msg.get("online") is True and not retained:
                asyncio.create_task(self._rebirth())
            return
        if not topic.startswith(self.cmd_base):
            return
        kind = topic[len(self.cmd_base):]
        try:
            msg = wire.validate(kind, msg)
        except wire.ProtocolError:
            return
        if self.role is not None:
            if retained and msg.get("chime"):
                msg["chime"] = False  # a rebooted board shows the call but does not ring again
            self.role.on_cmd(kind, msg)

    async def close(self):
        """Clean shutdown: publish the offline state, then DISCONNECT (no Will fires)."""
        await self._close(wire.offline(self.boot))

    async def _close(self, state):
        self.closing = True
        if self.mqtt is None:
            return
        final = (self.state_topic, wire.encode(state, wire.MAX_DEVICE_PAYLOAD), True, 1)
        await self.mqtt.close(final)

    async def sleep(self, ms):
        """Deep sleep for ms: offline state {"online": false, "boot", "sleep_s"}
        (retained; sleep_s rounded up), clean DISCONNECT (no Will), then
        board.deep_sleep(ms).

        RAM is lost; the board boots again when it wakes (reset cause
        "deepsleep"). On hardware this does not return; a virtual board
        returns and the Fleet ends this boot."""
        await self._close(wire.offline(self.boot, (ms + 999) // 1000))
        self.log("deep sleep " + str(ms) + " ms")
        self.board.deep_sleep(ms)

    # -- supervision ---------------------------------------------------------------

    def _network_up(self):
        up = getattr(self.board, "network_up", None)
        return up() if up is not None else self._joined

    def log(self, text):
        """One line for the serial console (the simulator's log on a virtual board)."""
        log = getattr(self.board, "log", None)
        if log is not None:
            log(text)
        else:
            print("sigap:", text)

    def reboot(self, reason):
        """Reboot the board, keeping reason in flash for the next birth."""
        self.reboot_reason = reason
        self.log("rebooting: " + reason)
        self.board.reset(reason)  # machine.reset() on hardware: does not return

    async def _join(self):
        # The board's connect_network() retries with back-off until the network is up.
        try:
            if await self.board.connect_network():
                self._joined = True
        except Exception:  # the next tick starts another join
            pass

    async def feed(self):
        """Feed the watchdog every tick while Health says every essential part is alive.

        The first failure is printed (serial console), then the watchdog does the rest."""
        board = self.board
        while True:
            if self.health.ok():
                board.feed_watchdog()
            elif self.health.failures and self._told != self.health.failures:
                self._told = self.health.failures
                self.log("not feeding the watchdog: " + str(self.health.failing) + " is not alive")
            await clock.sleep_ms(self.tick_ms)

    async def run(self):
        """Network, MQTT link, role, LED, clock and watchdog; runs until cancelled."""
        mqtt = self.mqtt
        if mqtt is None:  # not configured: the settings module runs the board meanwhile
            from firmware.core import settings as config

            await config.run_unconfigured(self)
            return
        board = self.board
        health = self.health
        health.expect("loop", self.loop_grace_ms)
        tasks = []
        role = None
        if self.role is not None:
            # The role starts before the network: a water board's siren must work without it.
            role = asyncio.create_task(self.role.run())
            tasks.append(role)
            health.watch("role", role)
        tasks.append(asyncio.create_task(self.led.run()))
        keep_time = getattr(board, "keep_time", None)
        if keep_time is not None:
            tasks.append(asyncio.create_task(keep_time()))
        tasks.append(asyncio.create_task(self.feed()))
        reboot_ms = self.settings.get("broker_reboot_s", self.broker_reboot_s) * 1000
        link = None  # mqtt.run() while the network is up
        stopping = None  # a link cancelled because the network went down
        join = None
        last_ok = clock.ticks_ms()
        try:
            while True:
                health.beat("loop")
                now = clock.ticks_ms()
                if self.closing:
                    # A clean shutdown (deep sleep) ends the link on purpose.
                    health.watch("link", None)
                else:
                    up = self._network_up()
                    if up and (join is None or join.done()):
                        join = None
                        if link is None and (stopping is None or stopping.done()):
                            stopping = None
                            link = asyncio.create_task(mqtt.run())
                            health.watch("link", link)
                    elif not up:
                        if link is not None:
                            # No WiFi: stop the client instead of letting it back off
                            # against a network that is not there.
                            link.cancel()
                            stopping = link
                            link = None
                            health.watch("link", None)
                        if join is None:
                            join = asyncio.create_task(self._join())
                    if not up:
                        self.led.set("joining_wifi")
                    elif mqtt.isconnected():
                        self.led.set("online")
                    else:
                        self.led.set("joining_broker")
                    if mqtt.isconnected():
                        last_ok = now
                    elif reboot_ms and clock.ticks_diff(now, last_ok) >= reboot_ms:
                        self.reboot("broker_timeout")
                        return  # a virtual board returns from reset(): this boot is over
                await clock.sleep_ms(self.tick_ms)
        finally:
            alive = [t for t in (link, stopping, join) if t is not None] + tasks
            for t in alive:
                t.cancel()
            # Let them finish their own clean-up (the MQTT client closes its
            # socket) before this boot is over: nothing of it outlives the board.
            await asyncio.gather(*alive, return_exceptions=True)


def forget(name):
    """Drop a module only the boot needs from sys.modules (and from its package),
    so the GC frees its code once nothing else holds it; a later import loads it
    again. On MicroPython only (see _FORGET). Its interned names stay: MicroPython
    never frees those."""
    if not _FORGET:
        return
    sys.modules.pop(name, None)
    dot = name.rfind(".")
    parent = sys.modules.get(name[:dot])
    if parent is not None and hasattr(parent, name[dot + 1 :]):
        delattr(parent, name[dot + 1 :])


def boot(board):
    """Build the runtime and the role for a board (nothing runs yet).

    With unusable settings the Device is unconfigured (device.configured is
    False, no role, no MQTT client); run_device() then shows the error."""
    device = Device(board)
    if device.configured:
        from firmware.core import startup

        device.role = startup.make_role(device)
        # The boot is over: the code that chose the settings, counted the boot
        # and built the client and the role (~4.5 KB) can go. An unconfigured
        # board keeps the settings module: it validates the file again and again.
        forget(STARTUP)
        forget(SETTINGS)
    return device


async def run_device(device):
    """Network, MQTT link, role and watchdog of a booted device; runs until cancelled."""
    await device.run()


async def run_board(board):
    """Boot a board and run it until cancelled (the board's main.py calls this)."""
    await run_device(boot(board))
