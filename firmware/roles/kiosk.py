# Ticket kiosk: one button per service (+ priority), prints the controller's answer.
#
# A press is an event (boot, seq) sent at QoS 1; the answer is cmd/ticket with
# `re` == seq. The answer can be lost although the press arrived (the link
# dropped while the controller answered, and our MQTT session is clean), so a
# press with no answer is published AGAIN with the same boot and seq: the
# controller applies an event at most once and answers a repeat with the same
# ticket (CONTRACT §1). The kiosk in turn prints each seq at most once, however
# many answers come back for it.
#
# Life of a press (one entry in `waiting`):
#   sent ──answer──> printed (seq remembered in `printed`, later answers ignored)
#     │ no answer in answer_timeout_ms, or the link was replaced since the send
#     └──> sent again (same payload), at most `resends` times, then "Gangguan"
#          shown; an answer that still comes later is printed (once): the
#          controller has counted that citizen in the queue.
# Offline nothing is resent (NO_NETWORK is shown once a press has waited
# answer_timeout_ms); a press made offline waits in the runtime's outbox and
# goes out on reconnect like any event. A press sent on a connection that has
# since been replaced is sent again as soon as the new one is up.
import asyncio

from firmware.core import clock
from firmware.drivers.buttons.button import Button
from protocol import wire

REFUSAL_TEXT = {
    "quota_full": "Kuota hari ini habis",
    "closed": "Layanan sedang tutup",
    "unknown_service": "Layanan tidak dikenal",
    "unavailable": "Layanan tidak tersedia",
}
WELCOME = ("SIGAP", "Silakan pilih layanan")
TROUBLE = ("Gangguan", "Silakan hubungi petugas")
NO_NETWORK = ("Menunggu jaringan", "Mohon tunggu")

# Fields of a waiting entry (a list, mutated in place).
_SEQ = 0
_KEY = 1
_PAYLOAD = 2  # the press exactly as first published
_SENDS = 3
_DEADLINE = 4  # ticks_ms when the current send counts as unanswered
_LINK = 5  # the MQTT connection (count of connects) that carries the last send
_GAVE_UP = 6


def _part(board, name):
    """board.<name>() if the board has such a part, else None (parts are optional)."""
    fn = getattr(board, name, None)
    return fn() if fn is not None else None


class KioskRole:
    """Service buttons -> press events; cmd/ticket -> one printed ticket per press."""

    answer_timeout_ms = 8000  # wait this long for an answer, then send the press again
    resends = 2  # extra sends of an unanswered press, then TROUBLE
    tick_ms = 250  # how often unanswered presses are looked at
    max_waiting = 8  # presses awaiting an answer; the oldest is dropped beyond (counted)
    printed_size = 16  # recent seqs printed: a repeat answer for one never prints
    prio_ms = 15000  # a priority mark not followed by a service press expires
    idle_ms = 20000  # after a ticket, the display returns to WELCOME

    def __init__(self, device):
        self.device = device
        board = device.board
        self.display = board.text_display("main")
        self.printer = _part(board, "printer")
        self.services = device.settings.get("services", [])
        self.topic = wire.dev_topic(device.prefix, device.id, "evt/press")
        self.buttons = []
        for code in self.services:
            pin = board.pin("svc_" + code)
            if pin is not None:
                self.buttons.append(Button(pin, code, self.on_key))
        self.prio_at = None  # ticks_ms of the priority press, or None
        if device.settings.get("prio_button", True):
            pin = board.pin("prio")
            if pin is not None:
                self.buttons.append(Button(pin, "prio", self.on_key))
        self.waiting = []  # entries, oldest first (fields above)
        self.printed = []  # seqs answered and printed/shown, oldest first (bounded)
        self.shown_at = None  # ticks_ms an answer was shown (for idle_ms)
        self.offline_shown = False
        # Counters for the birth message / debugging.
        self.resent = 0
        self.gave_up = 0
        self.dropped = 0  # presses pushed out of `waiting` unanswered
        self.repeats = 0  # answers for a seq already printed
        self.strays = 0  # answers matching no press of ours
        self.print_errors = 0
        self.display.show(WELCOME)

    # --- buttons --------------------------------------------------------------
    def on_key(self, key):
        """A service button (or the priority button, which marks the next press)."""
        now = clock.ticks_ms()
        if key == "prio":
            self.prio_at = now
            self.display.show(["PRIORITAS", "Pilih layanan"])
            return
        msg = {"key": key}
        if self.prio_at is not None and clock.ticks_diff(now, self.prio_at) < self.prio_ms:
            msg["prio"] = True
        self.prio_at = None
        seq = self.device.emit("press", msg)  # adds boot and seq to msg
        payload = wire.encode(msg, wire.MAX_DEVICE_PAYLOAD)  # the same bytes emit() sent
        if len(self.waiting) >= self.max_waiting:
            self.waiting.pop(0)
            self.dropped += 1
        deadline = clock.ticks_add(now, self.answer_timeout_ms)
        # Made offline, the press waits in the outbox for the NEXT connection.
        link = self._link() + (0 if self.device.mqtt.isconnected() else 1)
        self.waiting.append([seq, key, payload, 1, deadline, link, False])
        self.shown_at = None
        self.display.show(["Memproses...", key])

    # --- answers --------------------------------------------------------------
    def on_cmd(self, kind, msg):
        """cmd/ticket answers a press (matched by `re`); cmd/show is shown as sent."""
        if kind == "show":
            self.display.show(msg["lines"], msg.get("chime", False))
            return
        if kind != "ticket":
            return
        seq = msg["re"]
        if seq in self.printed:
            self.repeats += 1  # a QoS 1 duplicate or the answer to a resend
            return
        entry = None
        for e in self.waiting:
            if e[_SEQ] == seq:
                entry = e
                break
        if entry is None:
            self.strays += 1  # e.g. an answer to a press of the previous boot
            return
        self.waiting.remove(entry)
        self.printed.append(seq)
        if len(self.printed) > self.printed_size:
            self.printed.pop(0)
        self.hand_out(msg)

    def hand_out(self, msg):
        """Print and show one answer (called once per seq)."""
        self.shown_at = clock.ticks_ms()
        error = msg.get("error")
        if error is not None:
            reason = REFUSAL_TEXT.get(error, error)
            self._print("notice", ("MAAF", [reason]))
            self.display.show(["MAAF", reason])
            return
        self._print("ticket", msg)
        self.display.show([msg["ticket"], msg.get("service", ""), "Di depan: " + str(msg.get("ahead", 0))])

    def _print(self, what, arg):
        p = self.printer
        if p is None:
            return
        try:
            if what == "ticket":
                p.print_ticket(arg)
            else:
                p.print_notice(arg[0], arg[1])
        except Exception:  # UART trouble must not stop the kiosk; the display still shows it
            self.print_errors += 1

    # --- unanswered presses ---------------------------------------------------
    def _link(self):
        return self.device.mqtt.stats["connects"]

    def check(self):
        """Send again or give up on unanswered presses (called every tick_ms)."""
        now = clock.ticks_ms()
        if not self.device.mqtt.isconnected():
            # Nothing to send on: presses go out (again) on reconnect. Tell the
            # citizen once when one has waited longer than an answer should take.
            if not self.offline_shown:
                for e in self.waiting:
                    if not e[_GAVE_UP] and clock.ticks_diff(now, e[_DEADLINE]) >= 0:
                        self.offline_shown = True
                        self.display.show(NO_NETWORK)
                        break
            return
        self.offline_shown = False
        link = self._link()
        for e in self.waiting:
            if e[_GAVE_UP]:
                continue
            # A new connection since the last send: the answer may have been lost
            # with the old one (clean session), so send again at once.
            if e[_LINK] == link and clock.ticks_diff(now, e[_DEADLINE]) < 0:
                continue
            if e[_SENDS] > self.resends:
                e[_GAVE_UP] = True
                self.gave_up += 1
                self.shown_at = now
                self.display.show(TROUBLE)
                continue
            self.resend(e, now)
        self._idle(now)

    def _idle(self, now):
        if self.shown_at is not None and clock.ticks_diff(now, self.shown_at) >= self.idle_ms:
            self.shown_at = None
            for e in self.waiting:
                if not e[_GAVE_UP]:
                    return  # someone is still waiting for "Memproses..." to end
            self.display.show(WELCOME)

    def resend(self, e, now):
        """Publish the same press again (same boot and seq: the controller answers
        it with the same ticket, never a second one)."""
        e[_SENDS] += 1
        e[_LINK] = self._link()
        e[_DEADLINE] = clock.ticks_add(now, self.answer_timeout_ms)
        self.resent += 1
        self.device.mqtt.publish(self.topic, e[_PAYLOAD], False, 1)

    async def run(self):
        """One task per button; this one watches unanswered presses."""
        tasks = [asyncio.create_task(b.run()) for b in self.buttons]
        try:
            while True:
                await clock.sleep_ms(self.tick_ms)
                self.check()
        finally:
            for t in tasks:
                t.cancel()
