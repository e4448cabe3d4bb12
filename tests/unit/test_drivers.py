"""The board drivers on virtual hardware that decodes what they drive (simulator/hw.py)."""

from __future__ import annotations

import asyncio

import pytest

from firmware.drivers.buttons.button import Button
from firmware.drivers.displays import font
from firmware.drivers.displays.max7219 import MAX7219
from firmware.drivers.displays.ssd1306 import SSD1306
from firmware.drivers.displays.text import MatrixText, OledText, SevenSegText
from firmware.drivers.displays.tm1637 import TM1637, encode, segments
from firmware.drivers.outputs import dfplayer
from firmware.drivers.outputs.dfplayer import DFPlayer, frame_into, number_clips
from firmware.drivers.outputs.siren import Siren
from firmware.drivers.printer.escpos import EscPos
from firmware.drivers.sensors.battery import Battery
from firmware.drivers.sensors.ds18b20 import DS18B20, crc8, decode_scratchpad
from firmware.drivers.sensors.ultrasonic import A02YYUW, JSNSR04T, A02Parser, filter_echoes
from simulator import hw

ANSWER = {
    "re": 42,
    "ticket": "A012",
    "service": "Perekaman KTP-el",
    "agency": "Dispendukcapil",
    "ahead": 5,
    "wait_min": 12,
    "at": "2026-11-23T08:15:04+07:00",
    "url": "http://sigap.local/t/Zk3q9XbA",
}

# The 5x7 capital A, drawn by hand (independent of the font table).
GLYPH_A = [
    ".###.",
    "#...#",
    "#...#",
    "#####",
    "#...#",
    "#...#",
    "#...#",
]
GLYPH_L = [
    "#....",
    "#....",
    "#....",
    "#....",
    "#....",
    "#....",
    "#####",
]


def no_delay(us: int) -> None:
    pass


# -- TM1637 -----------------------------------------------------------------------


def tm1637() -> tuple[TM1637, list[hw.Transition]]:
    log: list[hw.Transition] = []
    return TM1637(hw.RecordingPin("clk", log), hw.RecordingPin("dio", log), no_delay), log


def test_tm1637_bitbang_decodes_back_into_the_ticket_digits() -> None:
    tm, log = tm1637()
    SevenSegText(tm).show(["A012", "LOKET 3"])
    frames = hw.decode_tm1637(log)
    assert frames == [(0x40, b""), (0xC0, bytes([0x77, 0x3F, 0x06, 0x5B])), (0x8F, b"")]
    chip = hw.TM1637Model().apply(frames)
    assert chip.text() == "A012"
    assert chip.on and chip.brightness == 7


def test_tm1637_bytes_go_lsb_first_with_a_ninth_ack_clock() -> None:
    tm, log = tm1637()
    tm.brightness(2)  # one frame: start, 0x8A, stop
    rising = [i for i, (name, v) in enumerate(log) if name == "clk" and v == 1]
    dio = 1
    sampled = []
    for i, (name, v) in enumerate(log):
        if name == "dio":
            dio = v
        elif i in rising:
            sampled.append(dio)
    # 8 data clocks, the ACK clock (DIO released high), then the stop's CLK rise.
    assert sampled[:8] == [0, 1, 0, 1, 0, 0, 0, 1]  # 0x8A, LSB first
    assert len(sampled) == 10 and sampled[8] == 1


def test_tm1637_keeps_the_last_four_characters_and_lights_dots() -> None:
    tm, log = tm1637()
    tm.show_text("B1234")
    assert hw.TM1637Model().apply(hw.decode_tm1637(log)).text() == "1234"
    log.clear()
    tm.show_text("12.34")
    assert hw.TM1637Model().apply(hw.decode_tm1637(log)).text() == "12.34"
    assert encode("7", bytearray(4)) == bytearray([0, 0, 0, 0x07])


@pytest.mark.parametrize("letter", "ABCDEFGHIJLNPQRTUVY")
def test_tm1637_letters_read_back_as_themselves(letter: str) -> None:
    assert hw.segments_to_text(bytes([segments(letter)])) == letter


def test_tm1637_blinks_on_a_chime_and_ends_lit() -> None:
    tm, log = tm1637()
    disp = SevenSegText(tm)
    disp.show(["A013"], chime=True)  # no event loop here: step() drives the frames
    states = []
    while disp.step():
        states.append(hw.TM1637Model().apply(hw.decode_tm1637(log)).on)
    assert states == [False, True] * disp.blink_times
    assert hw.TM1637Model().apply(hw.decode_tm1637(log)).text() == "A013"


async def test_display_animation_runs_as_its_own_short_task() -> None:
    tm, log = tm1637()
    disp = SevenSegText(tm)
    disp.blink_ms = 1
    disp.show(["A014"], chime=True)
    task = disp.task
    assert task is not None
    await asyncio.wait_for(task, 5)
    assert disp.task is None and disp.blinks_left == 0
    assert hw.TM1637Model().apply(hw.decode_tm1637(log)).on


# -- MAX7219 ------------------------------------------------------------------------


def test_max7219_init_writes_every_module_register() -> None:
    chain = hw.MAX7219Chain(4)
    MAX7219(chain.spi, chain.cs, 4, intensity=5)
    for m in chain.modules:
        assert (m.decode_mode, m.scan_limit, m.intensity) == (0, 7, 5)
        assert not m.shutdown and not m.test
    assert chain.ignored == 0
    assert all(set(row) == {"."} for row in chain.rows())


def test_max7219_text_a_lights_the_font_glyph() -> None:
    chain = hw.MAX7219Chain(4)
    MatrixText(MAX7219(chain.spi, chain.cs, 4)).show(["A"])
    rows = chain.rows()
    x = (32 - 5) // 2  # centred
    assert [r[x : x + 5] for r in rows[:7]] == GLYPH_A
    lit = sum(r.count("#") for r in rows)
    assert lit == sum(r.count("#") for r in GLYPH_A)


def test_max7219_first_word_shifted_lands_in_the_leftmost_module() -> None:
    chain = hw.MAX7219Chain(3)
    mx = MAX7219(chain.spi, chain.cs, 3)
    mx.pixel(0, 0)
    mx.pixel(23, 7)
    mx.flush()
    assert chain.modules[0].digits[0] == 0x80
    assert chain.modules[2].digits[7] == 0x01
    assert chain.rows()[0].startswith("#.") and chain.rows()[7].endswith(".#")


def test_max7219_scrolls_text_wider_than_the_chain_one_column_per_step() -> None:
    chain = hw.MAX7219Chain(4)
    disp = MatrixText(MAX7219(chain.spi, chain.cs, 4))
    disp.show(["A012 LOKET 3", "B004 LOKET 1"])
    assert disp.scrolling
    for _ in range(20):
        disp.step()
    before = chain.rows()
    disp.step()
    after = chain.rows()
    assert any("#" in r for r in before)
    assert [r[1:] for r in before] == [r[:-1] for r in after]


def test_max7219_blinks_with_shutdown_mode() -> None:
    chain = hw.MAX7219Chain(2)
    disp = MatrixText(MAX7219(chain.spi, chain.cs, 2))
    disp.show(["A1"], chime=True)
    lit = chain.rows()
    disp.step()
    assert all(m.shutdown for m in chain.modules) and "#" not in "".join(chain.rows())
    disp.step()
    assert chain.rows() == lit


# -- SSD1306 ------------------------------------------------------------------------


def test_ssd1306_init_turns_the_panel_on_with_charge_pump() -> None:
    i2c = hw.VirtualI2C()
    oled = i2c.attach(0x3C, hw.SSD1306Model())
    SSD1306(i2c)
    assert oled.on and oled.charge_pump and oled.mux == 63 and oled.addressing == 0
    assert oled.seg_remap and oled.com_scan_dec
    bus = hw.VirtualI2C()
    small = bus.attach(0x3C, hw.SSD1306Model(128, 32))
    SSD1306(bus, 128, 32)
    assert small.mux == 31


def test_ssd1306_text_lands_in_gddram() -> None:
    i2c = hw.VirtualI2C()
    oled = i2c.attach(0x3C, hw.SSD1306Model())
    OledText(SSD1306(i2c)).show(["A012", "LOKET 3"])
    # First line twice as large: the A is 10x14 pixels at the top left.
    big_a = [r for r in oled.rows(0, 0, 10, 14)]
    assert big_a[::2] == ["".join(c * 2 for c in row) for row in GLYPH_A]
    # Second line at y = 16 (page 2), normal size: its L is five GDDRAM bytes.
    assert oled.rows(0, 16, 5, 7) == GLYPH_L
    assert bytes(oled.gddram[2 * 128 : 2 * 128 + 5]) == bytes([0x7F, 0x40, 0x40, 0x40, 0x40])


def test_ssd1306_blinks_in_inverse_video() -> None:
    i2c = hw.VirtualI2C()
    oled = i2c.attach(0x3C, hw.SSD1306Model())
    disp = OledText(SSD1306(i2c))
    disp.show(["A012"], chime=True)
    disp.step()
    assert oled.inverted
    while disp.step():
        pass
    assert not oled.inverted and oled.on


def test_ssd1306_missing_at_its_address_raises_like_a_nack() -> None:
    with pytest.raises(OSError):
        SSD1306(hw.VirtualI2C())


# -- ESC/POS --------------------------------------------------------------------------


def print_ticket(answer: dict) -> dict:
    uart = hw.VirtualUART()
    EscPos(uart).print_ticket(answer)
    return hw.decode_escpos(bytes(uart.tx))


def test_escpos_stream_decodes_into_the_ticket_text_and_qr() -> None:
    paper = print_ticket(ANSWER)
    lines = paper["lines"]
    assert lines[0] == "MAL PELAYANAN PUBLIK"
    assert paper["double"] == ["A012"] and "A012" in paper["bold"]
    for expected in (
        "Perekaman KTP-el",
        "Dispendukcapil",
        "23 Nov 2026 08:15 WIB",
        "Di depan Anda: 5 orang",
        "Perkiraan tunggu: 12 menit",
    ):
        assert expected in lines
    assert paper["qr"] == ANSWER["url"]
    assert [p for _, p in paper["qr_printed"]] == [ANSWER["url"]]
    assert (paper["qr_model"], paper["qr_ec"]) == (2, "M")
    assert paper["cuts"] == 1 and paper["inits"] == 1 and paper["unknown"] == []
    assert all(len(line) <= 32 for line in lines)


def test_escpos_ticket_number_is_centred_big_and_bold() -> None:
    paper = print_ticket(ANSWER)
    (number,) = [s for s in paper["styled"] if s["text"] == "A012"]
    assert (number["bold"], number["width"], number["height"], number["align"]) == (True, 2, 2, 1)
    (service,) = [s for s in paper["styled"] if s["text"] == "Perekaman KTP-el"]
    assert (service["bold"], service["width"]) == (False, 1)


def test_escpos_transliterates_and_wraps_long_names() -> None:
    uart = hw.VirtualUART()
    answer = dict(ANSWER, service="Pengesahan Akta — “Catatan Sipil” Café Ñusantara Kabupaten")
    EscPos(uart).print_ticket(answer)
    assert max(uart.tx) < 0x80
    lines = hw.decode_escpos(bytes(uart.tx))["lines"]
    assert "Pengesahan Akta - \"Catatan" in lines
    assert 'Sipil" Cafe Nusantara Kabupaten' in lines


def test_escpos_notice_prints_a_refusal() -> None:
    uart = hw.VirtualUART()
    EscPos(uart).print_notice("MAAF", ["Kuota hari ini habis"])
    paper = hw.decode_escpos(bytes(uart.tx))
    assert "MAAF" in paper["bold"] and "Kuota hari ini habis" in paper["lines"]
    assert paper["qr"] is None and paper["cuts"] == 1


# -- ultrasonic rangers ---------------------------------------------------------------


def jsn(echo: hw.VirtualEcho) -> JSNSR04T:
    ranger = JSNSR04T(hw.RecordingPin("trig", level=0), hw.RecordingPin("echo"), echo, no_delay)
    ranger.gap_ms = 0
    return ranger


@pytest.mark.parametrize("temp_c", [20.0, 35.0, 5.0])
async def test_echo_time_is_compensated_for_air_temperature(temp_c: float) -> None:
    echo = hw.VirtualEcho(2000, temp_c=temp_c)
    mm, n = await jsn(echo).measure(temp_c=temp_c)
    assert n == 5 and mm is not None and abs(mm - 2000) <= 5


async def test_ignoring_temperature_on_a_hot_day_is_centimetres_off() -> None:
    mm, _ = await jsn(hw.VirtualEcho(2000, temp_c=35.0)).measure(temp_c=20.0)
    assert mm is not None and 2000 - mm > 40  # faster sound: reads too near


async def test_median_of_5_removes_a_single_spike() -> None:
    echo = hw.VirtualEcho(2000)
    echo.script = [2003, 1998, 650, 2001, 1999]  # a rain drop at 65 cm
    mm, n = await jsn(echo).measure(temp_c=20.0)
    assert mm is not None and abs(mm - 2000) <= 2 and n == 4


async def test_all_echoes_dropped_gives_none_with_n_zero() -> None:
    echo = hw.VirtualEcho(2000)
    echo.script = [-2, -1, -2, -2, -1]
    ranger = jsn(echo)
    assert await ranger.measure(temp_c=20.0) == (None, 0)
    assert ranger.timeouts == 5


async def test_echoes_in_the_blind_zone_or_beyond_range_are_invalid() -> None:
    echo = hw.VirtualEcho(2000)
    echo.script = [120, 180, 6000, 1500, -2]  # ring-down, ring-down, too far, one good, lost
    assert await jsn(echo).measure(temp_c=20.0) == (None, 1)  # below min_valid


async def test_water_inside_the_virtual_blind_zone_gives_no_valid_echo() -> None:
    # The river has risen to 15 cm below the sensor face: only the ring-down comes back.
    echo = hw.VirtualEcho(150, seed=3)
    seen = [echo(None, 1, 30000) * (hw.speed_of_sound(20.0) / 1000) / 2 for _ in range(50)]
    assert all(0.4 * echo.dead_zone_mm - 1 <= mm <= 0.95 * echo.dead_zone_mm + 1 for mm in seen)
    assert sum(1 for mm in seen if abs(mm - 150) < 5) < 10  # the water's own distance is not what comes back
    assert await jsn(echo).measure(temp_c=20.0) == (None, 0)
    echo.distance_mm = echo.dead_zone_mm + 50  # just outside it: measured again
    mm, n = await jsn(echo).measure(temp_c=20.0)
    assert n == 5 and mm is not None and abs(mm - 300) <= 2


async def test_noisy_echoes_with_drops_and_spikes_stay_within_two_centimetres() -> None:
    # Spikes twice as often as FloodNet saw (1 in 100), 5 % lost echoes.
    ranger = jsn(hw.VirtualEcho(1500, noise_mm=4, drop_rate=0.05, spike_rate=0.02, seed=7))
    results = [await ranger.measure(temp_c=20.0) for _ in range(500)]
    good = [mm for mm, _ in results if mm is not None]
    assert len(good) >= 495
    assert all(abs(mm - 1500) <= 20 for mm in good)


def test_filter_rejects_outliers_against_the_median_absolute_deviation() -> None:
    vals: list = [1000, 1010, 990, 1005, 1400, 995, None]
    assert filter_echoes(vals, 7, 250, 4500, [0] * 7) == (1000, 5)


def test_filter_gives_up_when_spikes_are_as_many_as_good_echoes() -> None:
    vals: list = [1500, 1502, 420, 880, None]
    assert filter_echoes(vals, 5, 250, 4500, [0] * 5) == (None, 0)


def test_a02yyuw_frames_with_a_bad_checksum_are_skipped() -> None:
    parser = A02Parser()
    stream = (
        hw.a02yyuw_frame(1234)
        + hw.a02yyuw_frame(1500, corrupt=True)
        + b"\x13\xff"  # noise, including a false header
        + hw.a02yyuw_frame(511)  # L = 0xFF: must not confuse the resync
        + hw.a02yyuw_frame(1240)
    )
    got = [mm for b in stream if (mm := parser.feed(b)) is not None]
    assert got == [1234, 511, 1240]
    assert parser.bad >= 1


async def test_a02yyuw_measures_a_burst_from_the_uart_stream() -> None:
    stream = hw.A02YYUWStream(1800)
    stream.script = [hw.a02yyuw_frame(1800, corrupt=True)] * 3 + [b"\xff\x07"]
    sensor = A02YYUW(hw.VirtualUART(stream))
    sensor.gap_ms = sensor.poll_ms = 0
    assert await sensor.measure() == (1800, 5)


# -- DS18B20, battery --------------------------------------------------------------------


def test_ds18b20_crc_matches_the_maxim_application_note_example() -> None:
    # Maxim AN27 example ROM code: family 02, serial 00000001B81C, CRC A2.
    assert crc8(bytes([0x02, 0x1C, 0xB8, 0x01, 0x00, 0x00, 0x00])) == 0xA2


@pytest.mark.parametrize("temp_c", [23.5, -10.125, 0.0625, 125.0, -55.0])
def test_ds18b20_scratchpad_decodes_to_celsius(temp_c: float) -> None:
    assert decode_scratchpad(hw.ds18b20_scratchpad(temp_c)) == temp_c


def test_ds18b20_untrustworthy_scratchpads_are_none() -> None:
    good = bytearray(hw.ds18b20_scratchpad(28.5))
    bad_crc = bytearray(good)
    bad_crc[0] ^= 0x10
    assert decode_scratchpad(bad_crc) is None
    assert decode_scratchpad(bytes(9)) is None  # bus stuck low: CRC of zeros is zero
    assert decode_scratchpad(b"\xff" * 9) is None  # no probe: bus floats high
    assert decode_scratchpad(hw.ds18b20_scratchpad(85.0)) is None  # power-on value
    assert decode_scratchpad(good[:8]) is None
    # At 9-bit resolution the three low bits are undefined: 0.5 °C steps.
    assert decode_scratchpad(hw.ds18b20_scratchpad(21.4375, resolution=9)) == 21.0


async def test_ds18b20_read_c_waits_and_returns_none_on_failure() -> None:
    probe = hw.VirtualDS18X20(28.5)
    sensor = DS18B20(sensor=probe)
    sensor.conversion_ms = 0
    assert await sensor.read_c() == 28.5
    probe.corrupt = True
    assert await sensor.read_c() is None
    probe.temp_c = None
    assert await sensor.read_c() is None
    assert sensor.failures == 2 and probe.conversions == 2
    assert await DS18B20().read_c() is None  # no 1-Wire on this platform


def test_battery_is_averaged_and_scaled_by_the_divider() -> None:
    adc = hw.VirtualADC(1975.0, noise_mv=15, seed=3)
    batt = Battery(adc, ratio=2.0)
    assert abs(batt.read_mv() - 3950) <= 20
    assert adc.reads == batt.samples


# -- outputs --------------------------------------------------------------------------------


def test_siren_drives_an_active_low_relay() -> None:
    pin = hw.RecordingPin("relay", level=0)
    siren = Siren(pin, active=0)
    assert pin.level == 1 and not siren.is_on
    siren.on()
    siren.on()
    assert pin.level == 0 and siren.is_on and siren.switches == 1
    siren.off()
    assert pin.level == 1 and pin.log == [("relay", 1), ("relay", 0), ("relay", 1)]


def test_dfplayer_checksum_matches_the_manuals_frame() -> None:
    # Manual example, "specify track 1": 7E FF 06 03 00 00 01 FE F7 EF.
    assert bytes(frame_into(bytearray(10), 0x03, 1)) == bytes.fromhex("7EFF06030000 01FEF7EF")


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "nol"),
        (7, "7"),
        (10, "sepuluh"),
        (11, "sebelas"),
        (12, "2 belas"),
        (40, "4 puluh"),
        (99, "9 puluh 9"),
        (100, "seratus"),
        (105, "seratus 5"),
        (250, "2 ratus 5 puluh"),
        (1000, "seribu"),
        (2011, "2 ribu sebelas"),
    ],
)
def test_dfplayer_says_numbers_in_indonesian(n: int, words: str) -> None:
    names = {
        dfplayer.SEPULUH: "sepuluh", dfplayer.SEBELAS: "sebelas", dfplayer.BELAS: "belas",
        dfplayer.PULUH: "puluh", dfplayer.SERATUS: "seratus", dfplayer.RATUS: "ratus",
        dfplayer.SERIBU: "seribu", dfplayer.RIBU: "ribu", dfplayer.NOL: "nol",
    }  # fmt: skip
    assert " ".join(names.get(t, str(t)) for t in number_clips(n, [])) == words


async def test_dfplayer_plays_a_queued_call_clip_by_clip() -> None:
    uart = hw.VirtualUART()
    player = DFPlayer(uart)
    player.clip_ms = 0
    assert player.say_call("A012", 3)
    task = asyncio.create_task(player.run())
    try:
        while player.queue:
            await asyncio.sleep(0.001)
    finally:
        task.cancel()
    frames = [bytes(uart.tx[i : i + 10]) for i in range(10, len(uart.tx), 10)]  # after volume
    played = [(f[5], f[6]) for f in frames if f[3] == 0x0F]
    assert played == [(1, 1), (1, 2), (2, 1), (3, 2), (3, dfplayer.BELAS), (1, 3), (3, 3)]
    assert all(f[0] == 0x7E and f[9] == 0xEF for f in frames)


def test_dfplayer_queue_is_bounded_and_counts_dropped_calls() -> None:
    player = DFPlayer(hw.VirtualUART())
    while player.say_call("B123", 12):
        pass
    assert player.dropped == 1 and len(player.queue) <= player.max_clips


# -- buttons ------------------------------------------------------------------------------


async def wait_until(cond, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)


def fast_button(pin: hw.RecordingPin, events: list, long: bool = True) -> Button:
    b = Button(
        pin,
        "next",
        lambda name: events.append(("press", name)),
        on_long=(lambda name: events.append(("long", name))) if long else None,
    )
    b.poll_ms = 1
    b.debounce_ms = 2
    b.long_press_ms = 80
    return b


async def test_button_long_press_calls_on_long_while_held_and_not_on_press() -> None:
    pin = hw.RecordingPin("btn")
    events: list = []
    b = fast_button(pin, events)
    task = asyncio.create_task(b.run())
    try:
        pin.value(0)
        await wait_until(lambda: events)
        assert b.held and events == [("long", "next")]
        pin.value(1)
        await wait_until(lambda: not b.held)
        assert events == [("long", "next")] and (b.presses, b.long_presses) == (0, 1)
    finally:
        task.cancel()


async def test_button_short_press_with_on_long_fires_on_release() -> None:
    pin = hw.RecordingPin("btn")
    events: list = []
    b = fast_button(pin, events)
    b.long_press_ms = 10_000
    task = asyncio.create_task(b.run())
    try:
        pin.value(0)
        await wait_until(lambda: b.held)
        assert events == []
        pin.value(1)
        await wait_until(lambda: events)
        assert events == [("press", "next")] and b.presses == 1
    finally:
        task.cancel()


async def test_button_without_on_long_fires_on_press_as_before() -> None:
    pin = hw.RecordingPin("btn")
    events: list = []
    b = fast_button(pin, events, long=False)
    task = asyncio.create_task(b.run())
    try:
        pin.value(0)
        await wait_until(lambda: events)
        assert b.held and events == [("press", "next")]
    finally:
        task.cancel()


async def test_idle_button_waits_for_the_pins_edge_instead_of_polling() -> None:
    from simulator.board import VirtualPin

    class CountingPin(VirtualPin):
        reads = 0

        def value(self, v: int | None = None) -> int:
            if v is None:
                self.reads += 1
            return super().value(v)

    pin = CountingPin("next")
    events: list = []
    b = fast_button(pin, events, long=False)
    task = asyncio.create_task(b.run())
    try:
        await wait_until(lambda: pin._edge is not None)  # asleep on the edge
        idle_reads = pin.reads
        await asyncio.sleep(0.05)  # 50 poll periods of 1 ms
        assert pin.reads == idle_reads
        pin.value(0)
        await wait_until(lambda: events)
        assert events == [("press", "next")]
        pin.value(1)
        await wait_until(lambda: not b.held)
    finally:
        task.cancel()


def test_font_covers_digits_and_capitals() -> None:
    for ch in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        i = font.glyph_index(ch)
        assert any(font.GLYPHS[i : i + font.WIDTH]), ch
    assert font.glyph_index("a") == font.glyph_index("A")
    assert font.glyph_index("é") == font.glyph_index("?")
