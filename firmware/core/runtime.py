# The runtime shared by every role: identity, boot counter, birth and Will,
# event numbering (boot, seq), and dispatch of the controller's commands.
#
# A role is a small class with `async run()` and `on_cmd(kind, msg)`; it never
# touches MQTT or flash directly, only this Device and the board's drivers.
import asyncio

from firmware.core import clock
from firmware.core.mqtt import MQTTClient
from protocol import wire

FW_VERSION = "0.1.0"


class Device:
    """One board's runtime: settings, boot count, MQTT link, events and commands."""

    keepalive_s = 30
    outbox_size = 32

    def __init__(self, board):
        s = board.settings
        self.board = board
        self.settings = s
        self.id = s["device_id"]
        self.role_name = s["role"]
        self.prefix = s.get("prefix", wire.DEFAULT_PREFIX)
        self.boot = self._count_boot()
        self.seq = 0
        self.started = clock.ticks_ms()
        self.role = None
        self.state_topic = wire.dev_topic(self.prefix, self.id, "state")
        self.cmd_base = wire.dev_topic(self.prefix, self.id, "cmd/")
        self.ctl_topic = wire.ctl_state_topic(self.prefix)
        will = (self.state_topic, wire.encode(wire.offline(self.boot), wire.MAX_DEVICE_PAYLOAD), True, 1)
        self.mqtt = MQTTClient(
            self.id,
            s.get("broker_host", "127.0.0.1"),
            s.get("broker_port", 1883),
            user=s.get("mqtt_user") or self.id,
            password=s.get("mqtt_password"),
            keepalive=s.get("keepalive_s", self.keepalive_s),
            will=will,
            open_connection=board.open_connection,
            outbox_size=s.get("outbox_size", self.outbox_size),
        )
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_message = self._on_message
        self.mqtt.subscribe(wire.dev_sub_topic(self.prefix, self.id), 1)
        self.mqtt.subscribe(self.ctl_topic, 1)
        self.rebirths = 0

    def _count_boot(self):
        # The boot counter lives in flash so (boot, seq) stays unique across reboots.
        raw = self.board.storage.read("boot")
        try:
            n = int(raw) + 1 if raw else 1
        except ValueError:
            n = 1
        self.board.storage.write("boot", str(n))
        return n

    def uptime_s(self):
        """Seconds since this boot."""
        return clock.ticks_diff(clock.ticks_ms(), self.started) // 1000

    def birth(self):
        """The birth state message (retained)."""
        return wire.birth(
            self.role_name, FW_VERSION, self.boot, self.board.rssi(), self.board.heap_free(), self.uptime_s()
        )

    def emit(self, kind, msg):
        """Number an event with (boot, seq) and queue it for QoS 1 delivery; returns its seq."""
        self.seq += 1
        msg["boot"] = self.boot
        msg["seq"] = self.seq
        payload = wire.encode(msg, wire.MAX_DEVICE_PAYLOAD)
        self.mqtt.publish(wire.dev_topic(self.prefix, self.id, "evt/" + kind), payload, False, 1)
        return self.seq

    async def _on_connect(self):
        await self._publish_birth()

    async def _publish_birth(self):
        payload = wire.encode(self.birth(), wire.MAX_DEVICE_PAYLOAD)
        await self.mqtt.publish_now(self.state_topic, payload, True, 1)

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
        final = (self.state_topic, wire.encode(wire.offline(self.boot), wire.MAX_DEVICE_PAYLOAD), True, 1)
        await self.mqtt.close(final)


def make_role(device):
    """Instantiate the role named in the settings (imported lazily to save RAM)."""
    name = device.role_name
    if name == "counter":
        from firmware.roles.counter import CounterRole

        return CounterRole(device)
    if name == "kiosk":
        from firmware.roles.kiosk import KioskRole

        return KioskRole(device)
    if name == "display":
        from firmware.roles.display import DisplayRole

        return DisplayRole(device)
    raise ValueError("unknown role: " + str(name))


def boot(board):
    """Build the runtime and the role for a board (nothing runs yet)."""
    device = Device(board)
    device.role = make_role(device)
    return device


async def run_device(device):
    """Network, MQTT link, role and watchdog of a booted device; runs until cancelled."""
    board = device.board
    await board.connect_network()
    link = asyncio.create_task(device.mqtt.run())
    role = asyncio.create_task(device.role.run())
    try:
        while True:
            board.feed_watchdog()
            await asyncio.sleep(1)
    finally:
        role.cancel()
        link.cancel()


async def run_board(board):
    """Boot a board and run it until cancelled (the board's main.py calls this)."""
    await run_device(boot(board))
