"""HTTP control of a running virtual fleet, for people, `sigap demo` and tests.

    GET  /boards[?role=&site=]         every board: role, site, powered, online, WiFi, display, last slip, siren, level
    GET  /boards/{id}                  one board
    POST /boards/{id}/press            {"key": "svc_A"}; {"key": "transfer", "long": true}; or "hold_ms": 2500
    POST /boards/{id}/level            water: {"mm": 1200} (constant) or {"to_mm": 2800, "over_s": 600} (ramp)
    POST /boards/{id}/wifi             {"up": false} cuts the board's WiFi, {"up": true} restores it
    POST /boards/{id}/power-cycle      power off and on again (what a reset or the watchdog does)
    POST /boards/{id}/flash/fill       {"free_bytes": 0}: fill the board's flash until that much is left

Errors: 404 for an unknown board (naming close matches), 422 for a bad body, 409
for a control the board does not have (a key on a display, a level on a kiosk),
501 when this simulator lacks the feature. `/docs` has the OpenAPI page.

From a shell (`python -m simulator.control --help`)::

    python -m simulator.control list
    python -m simulator.control press kiosk-01 svc_A
    python -m simulator.control level wl-lahar-01 2800 --over 120
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import socket
import sys
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.api.serve import EmbeddedServer
from controller.api.serve import parse_hostport as _parse_hostport
from simulator.board import VirtualBoard
from simulator.fleet import Fleet

DEFAULT_LISTEN = "127.0.0.1:8001"


# -- what a board looks like from outside -------------------------------------------------


def board_keys(board: VirtualBoard) -> dict[str, str]:
    """The keys the board's firmware watches: pin name -> pin name, and the key's own
    name -> pin name (a kiosk's service "A" is wired to pin "svc_A")."""
    role = getattr(board.device, "role", None)
    keys: dict[str, str] = {}
    for button in getattr(role, "buttons", ()):
        pin = getattr(button.pin, "name", None)
        if isinstance(pin, str):
            keys[pin] = pin
            keys.setdefault(str(button.name), pin)
    return keys


def _flash_free(board: VirtualBoard) -> int | None:
    free = getattr(getattr(board.storage, "flash", None), "free", None)
    return int(free()) if callable(free) else None


def board_state(fleet: Fleet, dev_id: str) -> dict[str, Any]:
    """What a person looking at the board (and at the broker) would see."""
    b = fleet.boards[dev_id]
    device = b.device
    mqtt = getattr(device, "mqtt", None)
    display = b.displays.get("main")
    slip = b.printed[-1] if b.printed else None
    return {
        "id": dev_id,
        "role": b.settings.get("role"),
        "site": b.settings.get("site"),
        "powered": fleet.powered(dev_id),
        "online": bool(mqtt is not None and mqtt.isconnected()),
        "wifi": b.wifi,
        "display": list(display.lines) if display is not None else None,
        "keys": sorted({pin for pin in board_keys(b).values()}),
        "printed": len(b.printed),
        "last_slip": None if slip is None else {"lines": slip["lines"], "big": slip["double"], "qr": slip["qr"]},
        "siren": b.siren_on if "siren" in b.parts else None,
        "level_mm": round(b.level_mm()) if "rangefinder" in b.parts else None,
        "flash_free": _flash_free(b),
        "boot": getattr(device, "boot", None),
        "resets": list(b.resets),
    }


# -- request bodies -------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Press(_Body):
    """A finger on a key: short (press_ms), long (long_press_ms) or held hold_ms."""

    key: str = Field(min_length=1, max_length=32)
    long: bool = False
    hold_ms: int | None = Field(default=None, ge=1, le=60_000)


class Level(_Body):
    """The river under a water board: a constant level, or a ramp from the level now."""

    mm: float | None = Field(default=None, ge=0)
    to_mm: float | None = Field(default=None, ge=0)
    over_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    noise_mm: float | None = Field(default=None, ge=0, le=1000)

    @model_validator(mode="after")
    def _one_shape(self) -> Level:
        if (self.mm is None) == (self.to_mm is None):
            raise ValueError('give either "mm" (a constant level) or "to_mm" with "over_s" (a ramp)')
        if self.to_mm is not None and self.over_s is None:
            raise ValueError('a ramp needs "over_s", the seconds it takes')
        if self.mm is not None and self.over_s is not None:
            raise ValueError('"over_s" goes with "to_mm" (a ramp), not with "mm"')
        return self


class Wifi(_Body):
    up: bool


class Fill(_Body):
    free_bytes: int = Field(default=0, ge=0)


# -- the app --------------------------------------------------------------------------------


def create_app(fleet: Fleet) -> FastAPI:
    """The control API over one fleet."""
    app = FastAPI(title="Sigap simulator control", docs_url="/docs", redoc_url=None)

    def board(dev_id: str) -> VirtualBoard:
        b = fleet.boards.get(dev_id)
        if b is None:
            close = difflib.get_close_matches(dev_id, list(fleet.boards), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise HTTPException(404, f"no board {dev_id!r} in this simulator{hint}")
        return b

    def conflict(b: VirtualBoard, dev_id: str, what: str) -> HTTPException:
        return HTTPException(409, f"{dev_id} is a {b.settings.get('role')} board: {what}")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    @app.get("/boards")
    def list_boards(role: Annotated[str | None, Query()] = None,
                    site: Annotated[str | None, Query()] = None) -> list[dict[str, Any]]:
        """Every board (optionally of one role or site)."""
        return [board_state(fleet, d) for d, b in fleet.boards.items()
                if (role is None or b.settings.get("role") == role) and (site is None or b.settings.get("site") == site)]

    @app.get("/boards/{dev_id}")
    def get_board(dev_id: str) -> dict[str, Any]:
        """One board."""
        board(dev_id)
        return board_state(fleet, dev_id)

    @app.post("/boards/{dev_id}/press")
    async def press(dev_id: str, body: Press) -> dict[str, Any]:
        """Press and release a key; returns once it is back up."""
        b = board(dev_id)
        if not fleet.powered(dev_id):
            raise HTTPException(409, f"{dev_id} is powered off")
        keys = board_keys(b)
        if body.key not in keys:
            have = ", ".join(sorted(set(keys.values()))) or "none"
            raise conflict(b, dev_id, f"it has no key {body.key!r} (its keys: {have})")
        hold = body.hold_ms if body.hold_ms is not None else (b.long_press_ms if body.long else None)
        await b.press(keys[body.key], hold_ms=hold)
        return board_state(fleet, dev_id)

    @app.post("/boards/{dev_id}/level")
    def level(dev_id: str, body: Level) -> dict[str, Any]:
        """Set the river level under a water board, now or as a ramp."""
        b = board(dev_id)
        if "rangefinder" not in b.parts:
            raise conflict(b, dev_id, "it has no water-level sensor")
        target = body.mm if body.mm is not None else body.to_mm
        if target is not None and target > b.mount_mm:
            raise HTTPException(422, f"{target:g} mm is above {dev_id}'s sensor (mount_mm {b.mount_mm})")
        echo = {} if body.noise_mm is None else {"noise_mm": body.noise_mm}
        if body.mm is not None:
            b.set_level(body.mm, **echo)
        elif body.to_mm is not None and body.over_s is not None:
            start, end, span = b.level_mm(), body.to_mm, body.over_s
            b.set_level_curve(lambda t: start + (end - start) * min(1.0, t / span), **echo)
        return board_state(fleet, dev_id)

    @app.post("/boards/{dev_id}/wifi")
    def wifi(dev_id: str, body: Wifi) -> dict[str, Any]:
        """Cut or restore the board's WiFi."""
        board(dev_id).set_wifi(body.up)
        return board_state(fleet, dev_id)

    @app.post("/boards/{dev_id}/power-cycle")
    async def power_cycle(dev_id: str) -> dict[str, Any]:
        """Power the board off (no clean goodbye: the broker sends its Will) and on again."""
        b = board(dev_id)
        if not fleet.supported(dev_id):
            raise conflict(b, dev_id, "this firmware has no such role to boot")
        await fleet.reboot(dev_id)
        return board_state(fleet, dev_id)

    @app.post("/boards/{dev_id}/flash/fill")
    def fill_flash(dev_id: str, body: Fill) -> dict[str, Any]:
        """Fill the board's flash until free_bytes are left (later writes fail with ENOSPC)."""
        b = board(dev_id)
        fill = getattr(b.storage, "fill", None)
        if fill is None:
            raise HTTPException(501, "this simulator's virtual flash cannot be filled yet "
                                     "(VirtualStorage.fill comes with the flash model of the raw REPL work)")
        fill(body.free_bytes)
        return board_state(fleet, dev_id)

    return app


# -- the server -----------------------------------------------------------------------------


def parse_hostport(listen: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port) for the control server (port 0: any free one)."""
    return _parse_hostport(listen, min_port=0)


class ControlServer:
    """The control API served on HOST:PORT from the simulator's own event loop::

        async with ControlServer(fleet, "127.0.0.1:8001") as control:
            print(control.url)
    """

    def __init__(self, fleet: Fleet, listen: str = DEFAULT_LISTEN):
        self.fleet = fleet
        self.host, self.port = parse_hostport(listen)
        self._server: EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """http://HOST:PORT (the port actually bound, when 0 was asked)."""
        return f"http://{self.host}:{self.port}"

    async def start(self, timeout: float = 10.0) -> None:
        """Bind (OSError at once if the port is taken) and serve."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(create_app(self.fleet), log_level="warning", lifespan="off", access_log=False)
        self._server = server = EmbeddedServer(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="sim-control")
        async with asyncio.timeout(timeout):
            while not server.started:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError("the control server stopped while starting")
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving (open requests get a few seconds to finish)."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._server = self._task = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# -- a small client for the shell -------------------------------------------------------------


def _client_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simulator.control", description="Control a running virtual fleet.")
    p.add_argument("--url", default=f"http://{DEFAULT_LISTEN}", help="the simulator's control URL")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="every board, one line each")
    ls.add_argument("--role")
    ls.add_argument("--site")
    sub.add_parser("show", help="one board as JSON").add_argument("board")
    pr = sub.add_parser("press", help="press a key")
    pr.add_argument("board")
    pr.add_argument("key")
    pr.add_argument("--long", action="store_true", help="hold it (a long press)")
    lv = sub.add_parser("level", help="set a water board's river level")
    lv.add_argument("board")
    lv.add_argument("mm", type=float)
    lv.add_argument("--over", type=float, metavar="S", help="ramp from the level now, over S seconds")
    wf = sub.add_parser("wifi", help="cut or restore WiFi")
    wf.add_argument("board")
    wf.add_argument("state", choices=("up", "down"))
    sub.add_parser("power-cycle", help="power a board off and on").add_argument("board")
    fl = sub.add_parser("fill-flash", help="fill a board's flash")
    fl.add_argument("board")
    fl.add_argument("free_bytes", type=int, nargs="?", default=0)
    return p.parse_args(argv)


def _line(s: dict[str, Any]) -> str:
    state = "online " if s["online"] else ("offline" if s["powered"] else "off    ")
    extra = []
    if s["display"]:
        extra.append(" | ".join(s["display"]))
    if s["last_slip"]:
        extra.append("slip " + " ".join(s["last_slip"]["big"] or s["last_slip"]["lines"][:1]))
    if s["level_mm"] is not None:
        extra.append(f"level {s['level_mm']} mm")
    if s["siren"]:
        extra.append("SIREN")
    if not s["wifi"]:
        extra.append("wifi cut")
    return f"{s['id']:<20} {s['role']:<8} {state}  {'; '.join(extra)}"


def client_main(argv: list[str] | None = None) -> int:
    """`python -m simulator.control ...`: one request, the answer printed; exit 1 with the reason on an error."""
    import httpx

    a = _client_args(argv)
    base = a.url.rstrip("/")
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            if a.cmd == "list":
                params = {k: v for k, v in (("role", a.role), ("site", a.site)) if v}
                r = http.get("/boards", params=params)
            elif a.cmd == "show":
                r = http.get(f"/boards/{a.board}")
            elif a.cmd == "press":
                r = http.post(f"/boards/{a.board}/press", json={"key": a.key, "long": a.long})
            elif a.cmd == "level":
                body = {"mm": a.mm} if a.over is None else {"to_mm": a.mm, "over_s": a.over}
                r = http.post(f"/boards/{a.board}/level", json=body)
            elif a.cmd == "wifi":
                r = http.post(f"/boards/{a.board}/wifi", json={"up": a.state == "up"})
            elif a.cmd == "power-cycle":
                r = http.post(f"/boards/{a.board}/power-cycle")
            else:
                r = http.post(f"/boards/{a.board}/flash/fill", json={"free_bytes": a.free_bytes})
    except httpx.HTTPError as e:
        print(f"cannot reach the simulator at {base}: {e}", file=sys.stderr)
        return 1
    if r.status_code >= 400:
        detail = r.json().get("detail") if r.headers.get("content-type", "").startswith("application/json") else r.text
        print(f"error {r.status_code}: {detail if isinstance(detail, str) else json.dumps(detail)}", file=sys.stderr)
        return 1
    data = r.json()
    if a.cmd == "list":
        for s in data:
            print(_line(s))
    elif a.cmd == "show":
        print(json.dumps(data, indent=2))
    else:
        print(_line(data))
    return 0


if __name__ == "__main__":
    sys.exit(client_main())
