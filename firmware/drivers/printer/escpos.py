# ESC/POS thermal ticket printer, 58 mm paper (font A: 32 characters a line),
# on any object with write(bytes): a machine.UART or a virtual one.
#
# Command references: Epson "ESC/POS Application Programming Guide" and the
# ESC/POS command reference (the cheap 58 mm printers sold in Indonesia,
# Xprinter/Zjiang/EPPOS, implement this subset):
#   ESC @        initialize printer
#   ESC t n      select character code table (0 = PC437)
#   ESC E n      emphasized (bold) on/off
#   GS ! n       character size: high nibble width-1, low nibble height-1
#   ESC a n      justification 0 left, 1 centre, 2 right
#   ESC d n      print and feed n lines
#   GS V 66 n    feed n dots and (partial) cut; printers without a cutter ignore it
#   GS ( k       2D code (QR): cn = 49, then fn:
#     65 select model (n1 = 50: model 2), 67 module size (dots, 1..16),
#     69 error correction (48 L, 49 M, 50 Q, 51 H),
#     80 store data (pL pH = data length + 3), 81 print the stored symbol.
# The printer draws the QR itself (native command), so the board never
# rasterises a symbol.

from firmware.core.compat import const

_ESC = const(0x1B)
_GS = const(0x1D)
_LF = const(0x0A)
_QR_CN = const(49)
_QR_EC_M = const(49)

WIDTH = const(32)  # characters per line, font A on 58 mm paper

# Transliteration of the non-ASCII letters a name or an address may carry
# (the printer's code page cannot be trusted to match anything but ASCII).
_FROM = "àáâãäåāèéêëēìíîïīòóôõöøōùúûüūýÿñçÀÁÂÃÄÅĀÈÉÊËĒÌÍÎÏĪÒÓÔÕÖØŌÙÚÛÜŪÝÑÇ‘’‚“”„–—−·"
_TO = "aaaaaaaeeeeeiiiiiooooooouuuuuyyncAAAAAAAEEEEEIIIIIOOOOOOOUUUUUYNC'''\"\"\"---."


def ascii_text(s):
    """`s` with every character printable on any code page: accents dropped,
    typographic quotes/dashes made plain, anything else '?'."""
    for ch in s:
        if ord(ch) >= 0x80 or ord(ch) < 0x20:
            break
    else:
        return s  # the common case: nothing to do, nothing allocated
    out = []
    for ch in s:
        c = ord(ch)
        if 0x20 <= c < 0x7F:
            out.append(ch)
        elif c < 0x20:
            out.append(" ")
        elif ch == "…":
            out.append("...")
        elif ch == "ß":
            out.append("ss")
        else:
            i = _FROM.find(ch)
            out.append(_TO[i] if i >= 0 else "?")
    return "".join(out)


def wrap(text, width=WIDTH):
    """Split `text` into lines of at most `width` characters, at spaces when possible."""
    lines = []
    text = text.strip()
    while len(text) > width:
        cut = text.rfind(" ", 0, width + 1)
        if cut <= 0:
            cut = width
        lines.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text or not lines:
        lines.append(text)
    return lines


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des")


def local_time(at):
    """ "2026-11-23T08:15:04+07:00" -> "23 Nov 2026 08:15 WIB" (Indonesian time
    zones by offset); anything unparseable is printed as given."""
    try:
        year = at[0:4]
        month = _MONTHS[int(at[5:7]) - 1]
        day = at[8:10]
        hm = at[11:16]
        if at[4] != "-" or at[13] != ":" or not day.isdigit():
            return ascii_text(at)
    except (ValueError, IndexError):
        return ascii_text(at)
    zone = {"+07:00": " WIB", "+08:00": " WITA", "+09:00": " WIT"}.get(at[-6:], "")
    return day + " " + month + " " + year + " " + hm + zone


class EscPos:
    """An ESC/POS printer on `uart` (anything with write(bytes))."""

    qr_module = 6  # dots per QR module: ~35 mm wide symbol for a 60-char URL
    header = "MAL PELAYANAN PUBLIK"
    footer = "Terima kasih atas kunjungan Anda"

    def __init__(self, uart, width=WIDTH):
        self.uart = uart
        self.width = width
        self.cmd = bytearray(9)  # every fixed-length command is built in here
        # Views of its first n bytes, made once: a slice per command would
        # allocate two objects each time (a ticket sends ~25 commands).
        mv = memoryview(self.cmd)
        self._views = tuple(mv[:n] for n in range(10))
        self.tickets = 0

    def _send(self, n):
        self.uart.write(self._views[n])

    def _c2(self, a, b):
        self.cmd[0] = a
        self.cmd[1] = b
        self._send(2)

    def _c3(self, a, b, c):
        self.cmd[0] = a
        self.cmd[1] = b
        self.cmd[2] = c
        self._send(3)

    # --- commands ---------------------------------------------------------------
    def init(self):
        """ESC @ then ESC t 0: reset modes, PC437 (ASCII is all we send)."""
        self._c2(_ESC, 0x40)
        self._c3(_ESC, 0x74, 0)

    def bold(self, on):
        self._c3(_ESC, 0x45, 1 if on else 0)

    def size(self, w=1, h=1):
        """GS ! n: w, h in 1..8 times the normal size."""
        self._c3(_GS, 0x21, ((w - 1) << 4) | (h - 1))

    def align(self, n):
        """0 left, 1 centre, 2 right."""
        self._c3(_ESC, 0x61, n)

    def feed(self, n=1):
        self._c3(_ESC, 0x64, n)

    def cut(self, feed_dots=48):
        """GS V 66 n: feed to the cutter and cut (function B)."""
        c = self.cmd
        c[0] = _GS
        c[1] = 0x56
        c[2] = 66
        c[3] = feed_dots
        self._send(4)

    def text(self, s):
        """Print `s` and end the line (transliterated to ASCII)."""
        self.uart.write(ascii_text(s).encode())
        self.uart.write(b"\n")

    def _qr_fn(self, fn, arg):
        # GS ( k pL pH cn fn arg : the 3-parameter functions (pL = 3, pH = 0).
        c = self.cmd
        c[0] = _GS
        c[1] = 0x28
        c[2] = 0x6B
        c[3] = 3
        c[4] = 0
        c[5] = _QR_CN
        c[6] = fn
        c[7] = arg
        self._send(8)

    def qr(self, data, module=None, ec=_QR_EC_M):
        """Print `data` as a QR code with the printer's native 2D-code command."""
        data = ascii_text(data).encode()
        c = self.cmd
        # fn 65: model 2 (GS ( k 04 00 31 41 32 00).
        c[0] = _GS
        c[1] = 0x28
        c[2] = 0x6B
        c[3] = 4
        c[4] = 0
        c[5] = _QR_CN
        c[6] = 65
        c[7] = 50
        c[8] = 0
        self._send(9)
        self._qr_fn(67, module or self.qr_module)  # module size in dots
        self._qr_fn(69, ec)  # error correction level M: 15 % of the symbol
        # fn 80: store the data; pL pH count the data plus cn, fn, m.
        n = len(data) + 3
        c[3] = n & 0xFF
        c[4] = n >> 8
        c[6] = 80
        c[7] = 48
        self._send(8)
        self.uart.write(data)
        self._qr_fn(81, 48)  # fn 81: print the stored symbol

    # --- what the kiosk prints ----------------------------------------------------
    def print_ticket(self, answer):
        """Print a queue ticket from a kiosk answer (CONTRACT §1)."""
        w = self.width
        self.init()
        self.align(1)
        self.bold(True)
        self.text(self.header)
        self.bold(False)
        self.text("-" * w)
        self.text("Nomor Antrean")
        self.size(2, 2)
        self.bold(True)
        self.text(answer.get("ticket", "?"))
        self.bold(False)
        self.size(1, 1)
        for key in ("service", "agency"):
            value = answer.get(key)
            if value:
                for line in wrap(ascii_text(value), w):
                    self.text(line)
        at = answer.get("at")
        if at:
            self.text(local_time(at))
        self.text("-" * w)
        self.align(0)
        if "ahead" in answer:
            self.text("Di depan Anda: " + str(answer["ahead"]) + " orang")
        if "wait_min" in answer:
            self.text("Perkiraan tunggu: " + str(answer["wait_min"]) + " menit")
        url = answer.get("url")
        if url:
            self.align(1)
            self.feed(1)
            self.qr(url)
            self.text("Pindai untuk cek antrean")
        self.align(1)
        self.text(self.footer)
        self.feed(2)
        self.cut()
        self.tickets += 1

    def print_notice(self, title, lines=()):
        """A short slip: bold title and wrapped lines (e.g. a refusal's reason)."""
        self.init()
        self.align(1)
        self.bold(True)
        self.text(self.header)
        self.text(title)
        self.bold(False)
        for line in lines:
            for part in wrap(ascii_text(line), self.width):
                self.text(part)
        self.feed(2)
        self.cut()
