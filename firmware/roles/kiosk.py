# Ticket kiosk: one button per service (+ priority), shows/prints the answer.
# This version shows the ticket on the kiosk's display; the thermal printer
# driver and the exactly-once print logic come with the printer driver.
import asyncio

from firmware.drivers.buttons.button import Button

REFUSAL_TEXT = {
    "quota_full": "Kuota hari ini habis",
    "closed": "Layanan sedang tutup",
    "unknown_service": "Layanan tidak dikenal",
    "unavailable": "Layanan tidak tersedia",
}


class KioskRole:
    """Service buttons → press events; cmd/ticket → the citizen's ticket."""

    def __init__(self, device):
        self.device = device
        board = device.board
        self.display = board.text_display("main")
        self.services = device.settings.get("services", [])
        self.buttons = []
        for code in self.services:
            pin = board.pin("svc_" + code)
            if pin is not None:
                self.buttons.append(Button(pin, code, self.on_key))
        self.prio_next = False
        if device.settings.get("prio_button", True):
            pin = board.pin("prio")
            if pin is not None:
                self.buttons.append(Button(pin, "prio", self.on_key))
        self.waiting = {}  # seq -> service code, presses awaiting an answer
        self.tickets = []  # labels handed out this boot (newest last, bounded)
        self.display.show(["SIGAP", "Silakan pilih layanan"])

    def on_key(self, key):
        """A service button (or the priority button, which marks the next press)."""
        if key == "prio":
            self.prio_next = True
            self.display.show(["PRIORITAS", "Pilih layanan"])
            return
        msg = {"key": key}
        if self.prio_next:
            msg["prio"] = True
            self.prio_next = False
        seq = self.device.emit("press", msg)
        self.waiting[seq] = key
        self.display.show(["Memproses...", key])

    def on_cmd(self, kind, msg):
        """cmd/ticket answers a press (matched by `re`); a repeat answer is ignored."""
        if kind == "show":
            self.display.show(msg["lines"], msg.get("chime", False))
            return
        if kind != "ticket":
            return
        seq = msg["re"]
        if self.waiting.pop(seq, None) is None:
            return  # answer to a press already served: never hand out twice
        if "error" in msg:
            self.display.show(["MAAF", REFUSAL_TEXT.get(msg["error"], msg["error"])])
            return
        self.tickets.append(msg["ticket"])
        if len(self.tickets) > 20:
            self.tickets.pop(0)
        self.display.show([msg["ticket"], msg.get("service", ""), "Di depan: " + str(msg.get("ahead", 0))])

    async def run(self):
        """One task per button."""
        tasks = [asyncio.create_task(b.run()) for b in self.buttons]
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            for t in tasks:
                t.cancel()
