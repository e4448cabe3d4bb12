# What only a boot needs, apart from the runtime so that a running board can
# drop it: runtime.boot() forgets this module (and settings.py) once the role
# is made, and the GC frees their code (~4.5 KB of heap on MicroPython).
#
#   setup(device)      called by the Device's constructor: the settings are
#                      chosen (settings.py: the file, else the last good copy,
#                      else unconfigured), the boot counted, the reset reason
#                      taken, and for a configured board its identity, topics
#                      and MQTT client (with its Will) built;
#   make_role(device)  the role named in the settings, imported only here.
#
# The Device (firmware/core/runtime.py) wires the client's callbacks and
# subscriptions to itself after setup().
import random

from firmware.core import settings as config
from firmware.core.mqtt import MQTTClient
from protocol import wire

RESET_FILE = "reset_reason"  # in board.storage: why the next boot happens
BOOT_FILE = "boot"


def setup(device):
    """Settings, boot count, reset reason, identity and MQTT client of a new Device."""
    board = device.board
    good = board.storage.read(config.SETTINGS_GOOD)
    s, errors, source = config.choose_settings(board.settings, good)
    device.settings_source = source
    device.cfg_errors = errors
    device.cfg_reported = config.reported(errors)
    device.configured = s is not None
    device.boot = count_boot(device)
    device.reset_reason = take_reset_reason(device)
    if s is None:
        return  # unconfigured: the Device's defaults stay
    use = getattr(board, "use_settings", None)
    if use is not None:
        use(s)  # the ESP32 board takes its WiFi and pins from the copy in use
    device.settings = s
    device.id = s["device_id"]
    device.role_name = s["role"]
    device.prefix = s["prefix"]
    device.state_topic = wire.dev_topic(device.prefix, device.id, "state")
    device.cmd_base = wire.dev_topic(device.prefix, device.id, "cmd/")
    device.ctl_topic = wire.ctl_state_topic(device.prefix)
    will = (device.state_topic, wire.encode(wire.offline(device.boot), wire.MAX_DEVICE_PAYLOAD), True, 1)
    device.mqtt = MQTTClient(
        device.id,
        s["broker_host"],
        s["broker_port"],
        user=s.get("mqtt_user") or device.id,
        password=s.get("mqtt_password"),
        keepalive=s.get("keepalive_s", device.keepalive_s),
        will=will,
        open_connection=board.open_connection,
        outbox_size=s.get("outbox_size", device.outbox_size),
        backoff_max_ms=s.get("mqtt_backoff_max_s", device.mqtt_backoff_max_s) * 1000,
    )


def count_boot(device):
    """This boot's number: the one kept in flash plus one, written back."""
    # The boot counter lives in flash so (boot, seq) stays unique across reboots.
    raw = device.board.storage.read(BOOT_FILE)
    try:
        n = int(raw) + 1 if raw else 1
    except ValueError:
        n = 1
    if not device.write(BOOT_FILE, str(n)):
        # A full flash: the next boot would read the same old count and
        # reuse n, and the controller would drop its events as duplicates
        # of this boot's. A random step above the last kept count makes
        # such a clash unlikely (1 in 65536) while it stays above every
        # boot the flash remembers. Reported as flash_err in the birth.
        n += random.getrandbits(16)
    return n


def take_reset_reason(device):
    """Why this boot happened, for the birth's "reset"."""
    # A reason the firmware wrote before it rebooted wins; it is cleared at
    # once, so the reason describes this boot only (a power cut before the
    # next birth makes the next boot a "power" boot, which it is). Without
    # one, the board's reset cause register says watchdog / power.
    raw = device.board.storage.read(RESET_FILE)
    if raw:
        device.write(RESET_FILE, "")
        return raw.strip()[:24]
    cause = getattr(device.board, "reset_cause", None)
    return cause() if cause is not None else "power"


def make_role(device):
    """Instantiate the role named in the settings (imported here, so only its code loads)."""
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
    if name == "water":
        from firmware.roles.water import WaterRole

        return WaterRole(device)
    raise ValueError("unknown role: " + str(name))
