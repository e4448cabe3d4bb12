"""`sigap provision`: per-device MQTT credentials and the broker's password, ACL and config files.

Writes into one directory (mode 0700, every file 0600):

- `passwd`          Mosquitto password file (`user:$7$101$salt$hash`, PBKDF2-SHA512, the
                    format `mosquitto_passwd` writes): one account per board plus `controller`;
- `acl`             Mosquitto ACL: a board writes only its own state and events and reads
                    only its own commands and the controller's state; the controller reads
                    and writes everything under the prefix;
- `secrets.toml`    the boards' passwords for `sigap deploy --secrets` (`[devices.<id>]
                    mqtt_password`), plus the `[wifi]` and `[broker]` tables you fill in;
- `controller.env`  `SIGAP_BROKER=mqtt://controller:…@host:port` for `sigap controller`;
- `mosquitto.conf`  the broker settings that use them (a `conf.d` snippet).

Re-running is safe: passwords are read back from `secrets.toml` and `controller.env`
and kept; boards new in the site config get a password, boards gone from it lose
theirs; `--rotate ID|all` issues new ones. A file is rewritten only when its
content changes, always through a temporary file and a rename.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import hashlib
import hmac
import os
import secrets
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.bus import parse_broker
from controller.errors import UserError

CONTROLLER_USER = "controller"
"""The controller's broker account; no board may have this id."""

PBKDF2_ITERATIONS = 101
"""mosquitto_passwd's own count (2.0). The passwords are 192-bit random strings, so a
slower hash would add no safety, only broker CPU on every (re)connect of every board."""
SALT_BYTES = 12
PASSWORD_BYTES = 24
"""`secrets.token_urlsafe(24)`: 32 characters, 192 bits, URL- and TOML-safe."""

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
DEFAULT_BROKER_DIR = "/etc/mosquitto/sigap"
ENV_KEY = "SIGAP_BROKER"

PASSWD = "passwd"
ACL = "acl"
SECRETS = "secrets.toml"
CONTROLLER_ENV = "controller.env"
MOSQUITTO_CONF = "mosquitto.conf"
FILES = (SECRETS, CONTROLLER_ENV, PASSWD, ACL, MOSQUITTO_CONF)
"""Write order: the plain passwords first, so a run cut short converges on the next one."""

_SECRET_PASSTHROUGH = ("wifi", "broker")
"""Tables of secrets.toml that provisioning keeps as the user wrote them."""


# ---------------------------------------------------------------- Mosquitto password hashes


def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """`$7$iterations$salt$hash`: PBKDF2-HMAC-SHA512, as mosquitto_passwd writes it."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Does password match a `$7$…` (PBKDF2-SHA512) or `$6$…` (salted SHA512) Mosquitto hash?"""
    parts = encoded.split("$")
    try:
        if len(parts) == 5 and parts[:2] == ["", "7"]:
            iterations = int(parts[2])
            salt, want = base64.b64decode(parts[3], validate=True), base64.b64decode(parts[4], validate=True)
            if not 0 < iterations <= 10_000_000:
                return False
            got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(want))
            return hmac.compare_digest(got, want)
        if len(parts) == 4 and parts[:2] == ["", "6"]:
            salt, want = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
            return hmac.compare_digest(hashlib.sha512(password.encode() + salt).digest(), want)
    except ValueError:
        return False
    return False


def parse_passwd(text: str) -> dict[str, str]:
    """`user:hash` lines of a Mosquitto password file → {user: hash} (comments, blanks skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        user, _, encoded = line.partition(":")
        out[user] = encoded
    return out


def new_password() -> str:
    """A fresh random password (192 bits)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


# ---------------------------------------------------------------- file contents


def passwd_text(hashes: Mapping[str, str]) -> str:
    """The password file: controller first, then boards in id order."""
    users = sorted(hashes, key=lambda u: (u != CONTROLLER_USER, u))
    return "".join(f"{u}:{hashes[u]}\n" for u in users)


def acl_text(prefix: str, devices: Iterable[str], source: str = "the site config") -> str:
    """The ACL file: a pattern block for every board, the controller's block, one block per board."""
    base = f"{prefix}/v1"
    boards = "".join(f"user {d}\ntopic read {base}/ctl/state\n\n" for d in sorted(devices))
    return f"""\
# Sigap MQTT access control, generated by `sigap provision` from {source}.
# Do not edit: re-run `sigap provision`. Mosquitto re-reads it on SIGHUP.
#
# Every board: username = client id = device id (CONTRACT section 1). %u is the
# username the broker authenticated, so a board reaches only its own topics:
# it writes its state and events, reads its commands ...
pattern write {base}/dev/%u/state
pattern write {base}/dev/%u/evt/#
pattern read {base}/dev/%u/cmd/#

# The controller: everything under the prefix.
user {CONTROLLER_USER}
topic readwrite {base}/#

# ... and the controller's state (a pattern must name %u, so one block per board).
{boards}"""


def _toml_str(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _toml_str(str(value))


def secrets_text(
    passwords: Mapping[str, str],
    kept: Mapping[str, Mapping[str, Any]],
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """secrets.toml for `sigap deploy`: [wifi], [broker] as kept, one [devices.<id>] per board."""
    lines = [
        "# Sigap board secrets, for `sigap deploy --secrets THIS_FILE`. Never commit this file.",
        "# Generated by `sigap provision`: it keeps [wifi] and [broker] as you fill them in,",
        "# and each board's mqtt_password (its MQTT username is its device id).",
        "",
    ]
    for table in _SECRET_PASSTHROUGH:
        values = kept.get(table)
        if values:
            lines.append(f"[{table}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        elif table == "wifi":
            lines += ["# [wifi]", '# ssid = "…"', '# password = "…"']
        else:
            lines += ["# [broker]", '# host = "192.168.1.10"   # the broker as the boards reach it', "# port = 1883"]
        lines.append("")
    for dev_id in sorted(passwords):
        lines.append(f"[devices.{dev_id}]")
        lines.append(f"mqtt_password = {_toml_str(passwords[dev_id])}")
        for k, v in (extra or {}).get(dev_id, {}).items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def controller_env_text(url: str) -> str:
    """controller.env: SIGAP_BROKER with the controller's credentials (systemd EnvironmentFile)."""
    return (
        "# Sigap controller: the broker with the controller's MQTT account. Never commit this file.\n"
        "# Generated by `sigap provision`. systemd: EnvironmentFile=/path/to/controller.env;\n"
        "# a shell: set -a; . ./controller.env; set +a. `sigap controller` reads SIGAP_BROKER\n"
        "# when --broker is not given (a password on the command line shows in `ps`).\n"
        f"{ENV_KEY}={url}\n"
    )


def mosquitto_conf_text(broker_dir: str, port: int = 1883) -> str:
    """A Mosquitto 2.0 `conf.d` snippet: authenticated clients only, our passwd and acl."""
    d = broker_dir.rstrip("/") or "/"
    return f"""\
# Sigap: a secured Mosquitto (2.0), generated by `sigap provision`.
# Install on the broker host (Debian, as root; mosquitto reads these files as user mosquitto):
#   install -d -o root -g mosquitto -m 0750 {d}
#   install -o root -g mosquitto -m 0640 passwd acl {d}/
#   install -m 0644 mosquitto.conf /etc/mosquitto/conf.d/sigap.conf
#   systemctl restart mosquitto
# After a later `sigap provision` (new board, rotated password) copy passwd and acl
# again and `systemctl reload mosquitto`: SIGHUP re-reads both and drops the live
# connections of rotated or removed accounts; the other boards stay connected.
# Debian's /etc/mosquitto/mosquitto.conf already sets persistence_location and
# log_dest: do not repeat them here (mosquitto refuses a duplicate).

listener {port}
allow_anonymous false
password_file {d}/passwd
acl_file {d}/acl
# The client id is the username (CONTRACT section 1), whatever the client sends:
# a board's credentials can never take over another board's session.
# So one account is one connection: do not log in as `controller` from a
# debugging tool while the controller runs (the two would throw each other out).
use_username_as_clientid true
max_connections -1
# Without TCP_NODELAY every QoS 1 round trip waits ~40 ms (Nagle + delayed ACK).
set_tcp_nodelay true
# The controller's persistent session keeps the boards' events while it restarts.
persistence true
autosave_interval 60
max_queued_messages 100000
# QoS 1 messages in flight to one client before the broker waits for its PUBACKs
# (default 20). The controller acknowledges a batch of readings once it is
# committed: a window of 20 would cap each batch at 20 readings.
max_inflight_messages 1000

# TLS: the passwords above cross the network in clear text on port {port}. On a
# network that others share, add a TLS listener and close the plain one
# (ESP32 MicroPython speaks TLS; check the heap on a kiosk first):
#   listener 8883
#   certfile /etc/mosquitto/certs/broker.crt
#   keyfile  /etc/mosquitto/certs/broker.key
#   tls_version tlsv1.2
# and keep `listener {port} 127.0.0.1` for the controller on the same host.
"""


# ---------------------------------------------------------------- reading what exists


@dataclass
class Existing:
    """What a previous run left in the output directory."""

    passwords: dict[str, str] = field(default_factory=dict)
    """Plain passwords per account (boards from secrets.toml, the controller from controller.env)."""
    hashes: dict[str, str] = field(default_factory=dict)
    """passwd lines per account."""
    kept_tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    """[wifi] and [broker] of secrets.toml."""
    device_extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Other keys of each [devices.<id>] table (per-board WiFi)."""
    broker_url: str | None = None
    """SIGAP_BROKER of controller.env, without credentials."""


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None


def read_existing(out: Path) -> Existing:
    """Read the files of an earlier run; a damaged file is an error, never a reason to rotate."""
    ex = Existing()
    text = _read(out / SECRETS)
    if text is not None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{out / SECRETS}: TOML syntax error: {e} (fix or remove it)") from None
        for table in _SECRET_PASSTHROUGH:
            value = data.get(table)
            if value is None:
                continue
            if not isinstance(value, dict) or not all(
                isinstance(v, str | int) for v in value.values()
            ):
                raise UserError(f"{out / SECRETS}: [{table}] must be a table of strings and numbers")
            ex.kept_tables[table] = dict(value)
        unknown = sorted(set(data) - {*_SECRET_PASSTHROUGH, "devices"})
        if unknown:
            # Never drop what someone wrote by hand: sigap deploy would refuse it anyway.
            raise UserError(f"{out / SECRETS}: unknown table [{unknown[0]}] (known: wifi, broker, devices)")
        devices = data.get("devices", {})
        if not isinstance(devices, dict):
            raise UserError(f"{out / SECRETS}: devices must be a table of [devices.<id>] tables")
        for dev_id, table in devices.items():
            if not isinstance(table, dict):
                raise UserError(f"{out / SECRETS}: devices.{dev_id} must be a table")
            pw = table.get("mqtt_password")
            if isinstance(pw, str) and pw:
                ex.passwords[dev_id] = pw
            extra = {k: v for k, v in table.items() if k != "mqtt_password" and isinstance(v, str | int)}
            if extra:
                ex.device_extra[dev_id] = extra
    text = _read(out / CONTROLLER_ENV)
    if text is not None:
        for n, line in enumerate(text.splitlines(), 1):
            key, eq, value = line.strip().partition("=")
            if key.strip() != ENV_KEY or not eq:
                continue
            try:
                addr = parse_broker(value.strip().strip("\"'"))
            except ValueError:
                raise UserError(
                    f"{out / CONTROLLER_ENV}:{n}: {ENV_KEY} is not an mqtt:// URL (fix or remove it)"
                ) from None
            ex.broker_url = f"mqtt://{addr.host}:{addr.port}"
            if addr.username == CONTROLLER_USER and addr.password:
                ex.passwords[CONTROLLER_USER] = addr.password
    text = _read(out / PASSWD)
    if text is not None:
        ex.hashes = parse_passwd(text)
    return ex


# ---------------------------------------------------------------- provisioning


@dataclass
class Result:
    """What a run did."""

    out: Path
    devices: list[str]
    passwords: dict[str, str]
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rotated: list[str] = field(default_factory=list)
    reissued: list[str] = field(default_factory=list)
    """Accounts whose old password was not known any more (not in secrets.toml / controller.env)."""
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _host_port(url: str) -> str:
    addr = parse_broker(url)
    host = f"[{addr.host}]" if ":" in addr.host else addr.host
    return f"{host}:{addr.port}"


def provision(
    cfg: Any,
    out: Path,
    *,
    rotate: Iterable[str] = (),
    broker: str | None = None,
    broker_dir: str = DEFAULT_BROKER_DIR,
    source: str = "the site config",
) -> Result:
    """Bring the output directory in line with the site config; returns what changed."""
    devices = [d.id for d in cfg.devices]
    for i, dev_id in enumerate(devices):
        if dev_id == CONTROLLER_USER:
            raise UserError(
                f"{source}: devices[{i}].id: \"{CONTROLLER_USER}\" is the controller's broker account; "
                "give the board another id"
            )
    accounts = [CONTROLLER_USER, *devices]
    rotate_set = set(rotate)
    if "all" in rotate_set:
        rotate_set = set(accounts)
    unknown = sorted(rotate_set - set(accounts))
    if unknown:
        close = difflib.get_close_matches(unknown[0], accounts, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"--rotate {unknown[0]}: no such device in {source}{hint}")

    _prepare_dir(out)
    ex = read_existing(out)
    res = Result(out, devices, {})
    known_before = set(ex.hashes) | set(ex.passwords)
    hashes: dict[str, str] = {}
    for user in accounts:
        old = ex.passwords.get(user)
        if user in rotate_set:
            pw = new_password()
            res.rotated.append(user)
        elif old is not None:
            pw = old
        else:
            pw = new_password()
            (res.reissued if user in known_before else res.added).append(user)
        res.passwords[user] = pw
        old_hash = ex.hashes.get(user)
        # Keep the line when it still matches: an unchanged run leaves the file unchanged.
        hashes[user] = old_hash if old_hash and verify_password(pw, old_hash) else hash_password(pw)
    res.removed = sorted(known_before - set(accounts))

    broker_url = broker or ex.broker_url or DEFAULT_BROKER
    ctl_url = f"mqtt://{CONTROLLER_USER}:{res.passwords[CONTROLLER_USER]}@{_host_port(broker_url)}"
    contents = {
        SECRETS: secrets_text(
            {d: res.passwords[d] for d in devices},
            ex.kept_tables,
            {d: v for d, v in ex.device_extra.items() if d in devices},
        ),
        CONTROLLER_ENV: controller_env_text(ctl_url),
        PASSWD: passwd_text(hashes),
        ACL: acl_text(cfg.sigap.prefix, devices, Path(source).name),
        MOSQUITTO_CONF: mosquitto_conf_text(broker_dir, parse_broker(broker_url).port),
    }
    for name in FILES:
        if _write_if_changed(out / name, contents[name]):
            res.written.append(name)
        else:
            res.unchanged.append(name)
    if "wifi" not in ex.kept_tables or "broker" not in ex.kept_tables:
        res.notes.append(
            f"fill in [wifi] and [broker] in {out / SECRETS} before `sigap deploy` (they are kept on re-runs)"
        )
    return res


def _prepare_dir(out: Path) -> None:
    try:
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out}: exists and is not a directory")
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        if out.stat().st_mode & 0o077:
            out.chmod(0o700)
    except OSError as e:
        raise UserError(f"cannot use --out {out}: {e.strerror or e}") from None


def _write_if_changed(path: Path, text: str) -> bool:
    """Write atomically with mode 0600 unless the content is already there; True if written."""
    data = text.encode()
    try:
        if path.is_file() and path.read_bytes() == data:
            if path.stat().st_mode & 0o777 != 0o600:
                path.chmod(0o600)
            return False
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    return True


# ---------------------------------------------------------------- command


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:10])
    return shown + (f", … ({len(items)} in all)" if len(items) > 10 else "")


def summary(res: Result, show: bool = False) -> list[str]:
    """The lines `sigap provision` prints; passwords only with show."""
    n = len(res.devices)
    lines = [f"{n} device{'s' if n != 1 else ''} + {CONTROLLER_USER} in {res.out}"]
    for label, items in (
        ("new", res.added),
        ("rotated", res.rotated),
        ("reissued", res.reissued),
        ("removed", res.removed),
    ):
        if items:
            lines.append(f"  {label + ':':11}{_names(items)}")
    if res.reissued:
        lines.append("  (reissued: the old password was no longer in secrets.toml / controller.env)")
    if res.written:
        lines.append(f"  {'written:':11}{', '.join(res.written)} (mode 0600)")
    if res.unchanged:
        lines.append(f"  {'unchanged:':11}{', '.join(res.unchanged)}")
    if not res.written:
        lines.append("  nothing changed")
    elif PASSWD in res.written or ACL in res.written:
        lines.append(f"next: copy passwd and acl to the broker and reload it (see {MOSQUITTO_CONF})")
    changed_boards = [d for d in res.added + res.rotated + res.reissued if d != CONTROLLER_USER]
    if changed_boards:
        lines.append(f"next: sigap deploy --secrets {res.out / SECRETS} --device ID, for {_names(changed_boards)}")
    if CONTROLLER_USER in res.added + res.rotated + res.reissued:
        lines.append(f"next: restart the controller with {res.out / CONTROLLER_ENV}")
    lines += [f"note: {note}" for note in res.notes]
    if show:
        lines.append("passwords (username  password):")
        for user in [CONTROLLER_USER, *sorted(res.devices)]:
            lines.append(f"  {user}  {res.passwords[user]}")
    return lines


def provision_main(args: argparse.Namespace) -> int:
    """`sigap provision`"""
    from controller.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise UserError(f"{args.config} is not a valid site config:\n  " + "\n  ".join(e.errors)) from None
    if args.broker:
        try:
            addr = parse_broker(args.broker)
        except ValueError as e:
            raise UserError(f"--broker: {e}") from None
        if addr.username or addr.password:
            raise UserError("--broker: give only mqtt://host:port; the credentials are provisioned")
    res = provision(
        cfg,
        Path(args.out),
        rotate=args.rotate or (),
        broker=args.broker,
        broker_dir=args.broker_dir,
        source=str(args.config),
    )
    print("\n".join(summary(res, show=args.show)))
    return 0
