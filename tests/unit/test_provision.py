"""`sigap provision`: password hashes Mosquitto accepts, the ACL, idempotent re-runs, rotation, file modes, errors."""

from __future__ import annotations

import base64
import hashlib
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from controller.bus import parse_broker, redact_broker_url
from controller.config import parse_config
from controller.errors import UserError
from controller.provision import (
    ACL,
    CONTROLLER_ENV,
    CONTROLLER_USER,
    FILES,
    MOSQUITTO_CONF,
    PASSWD,
    SECRETS,
    acl_text,
    hash_password,
    parse_passwd,
    provision,
    verify_password,
)
from firmware.tools.deploy import load_secrets


def site(*devices: str, prefix: str = "sigap") -> str:
    lines = ["[sigap]", f'prefix = "{prefix}"', "", "[[sites]]", 'id = "mpp"', 'name = "MPP"', "",
             "[[sites.services]]", 'code = "A"', 'name = "KTP"', 'agency = "Dukcapil"', 'open = "08:00"',
             'close = "15:00"']
    for d in devices:
        lines += ["", "[[devices]]", f'id = "{d}"', 'site = "mpp"', 'role = "kiosk"', 'services = ["A"]']
    return "\n".join(lines) + "\n"


def cfg(*devices: str, prefix: str = "sigap"):
    return parse_config(site(*devices, prefix=prefix))


def pbkdf2_ok(password: str, line_hash: str) -> bool:
    """The test's own reading of `$7$iterations$salt$hash` (independent of the module's verify)."""
    empty, kind, iterations, salt, digest = line_hash.split("$")
    assert (empty, kind) == ("", "7")
    want = base64.b64decode(digest)
    return hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations), 64) == want


def passwords(out: Path) -> dict[str, str]:
    data = tomllib.loads((out / SECRETS).read_text())
    pw = {d: t["mqtt_password"] for d, t in data["devices"].items()}
    env = (out / CONTROLLER_ENV).read_text()
    url = next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("SIGAP_BROKER="))
    addr = parse_broker(url)
    assert addr.username == CONTROLLER_USER
    pw[CONTROLLER_USER] = str(addr.password)
    return pw


def snapshot(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in FILES}


# ---------------------------------------------------------------- hashes


def test_password_hash_is_mosquitto_pbkdf2_sha512_and_round_trips():
    encoded = hash_password("s3cret-Pa55")
    assert encoded.startswith("$7$101$")
    _, _, _, salt, digest = encoded.split("$")
    assert len(base64.b64decode(salt)) == 12 and len(base64.b64decode(digest)) == 64
    assert pbkdf2_ok("s3cret-Pa55", encoded)
    assert verify_password("s3cret-Pa55", encoded)
    assert not verify_password("s3cret-Pa56", encoded)
    assert not verify_password("x", "$7$notanumber$AAAA$AAAA")
    assert hash_password("x") != hash_password("x")  # a fresh salt each time


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")
def test_hash_reads_what_mosquitto_passwd_writes(tmp_path):
    f = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(f), "kiosk-01", "Abc-123_xyz"], check=True, timeout=10)
    ours = hash_password("Abc-123_xyz")
    theirs = parse_passwd(f.read_text())["kiosk-01"]
    assert theirs.split("$")[:3] == ours.split("$")[:3] == ["", "7", "101"]
    assert [len(p) for p in theirs.split("$")[3:]] == [len(p) for p in ours.split("$")[3:]]
    assert verify_password("Abc-123_xyz", theirs) and pbkdf2_ok("Abc-123_xyz", theirs)
    assert not verify_password("abc-123_xyz", theirs)


# ---------------------------------------------------------------- files


def test_every_board_and_the_controller_get_a_strong_password_in_passwd(tmp_path):
    out = tmp_path / "broker"
    res = provision(cfg("kiosk-01", "kiosk-02"), out)
    assert res.added == [CONTROLLER_USER, "kiosk-01", "kiosk-02"]
    pw = passwords(out)
    assert set(pw) == {CONTROLLER_USER, "kiosk-01", "kiosk-02"}
    assert len(set(pw.values())) == 3 and all(len(p) >= 32 for p in pw.values())
    hashes = parse_passwd((out / PASSWD).read_text())
    assert list(hashes) == [CONTROLLER_USER, "kiosk-01", "kiosk-02"]
    for user, p in pw.items():
        assert pbkdf2_ok(p, hashes[user]), user
    assert not pbkdf2_ok(pw["kiosk-01"], hashes["kiosk-02"])


def test_acl_confines_each_board_to_its_own_topics_under_the_prefix(tmp_path):
    provision(cfg("kiosk-02", "kiosk-01", prefix="blitar/sigap"), tmp_path / "o")
    acl = (tmp_path / "o" / ACL).read_text()
    rules = [line for line in acl.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "pattern write blitar/sigap/v1/dev/%u/state",
        "pattern write blitar/sigap/v1/dev/%u/evt/#",
        "pattern read blitar/sigap/v1/dev/%u/cmd/#",
        f"user {CONTROLLER_USER}",
        "topic readwrite blitar/sigap/v1/#",
        "user kiosk-01",
        "topic read blitar/sigap/v1/ctl/state",
        "user kiosk-02",
        "topic read blitar/sigap/v1/ctl/state",
    ]
    assert acl == acl_text("blitar/sigap", ["kiosk-01", "kiosk-02"])


def test_mosquitto_conf_refuses_anonymous_and_names_the_files(tmp_path):
    provision(cfg("kiosk-01"), tmp_path / "o", broker_dir="/etc/mosquitto/sigap", broker="mqtt://10.0.0.5:1884")
    conf = [line for line in (tmp_path / "o" / MOSQUITTO_CONF).read_text().splitlines()
            if line and not line.startswith("#")]
    for want in ("listener 1884", "allow_anonymous false", "password_file /etc/mosquitto/sigap/passwd",
                 "acl_file /etc/mosquitto/sigap/acl", "max_connections -1", "persistence true",
                 "use_username_as_clientid true"):
        assert want in conf
    assert "TLS" in (tmp_path / "o" / MOSQUITTO_CONF).read_text()
    assert "@10.0.0.5:1884\n" in (tmp_path / "o" / CONTROLLER_ENV).read_text()


def test_deploy_reads_each_boards_password_from_the_secrets_file(tmp_path):
    out = tmp_path / "o"
    provision(cfg("kiosk-01", "kiosk-02"), out)
    pw = passwords(out)
    assert load_secrets(out / SECRETS, "kiosk-01") == {"mqtt_password": pw["kiosk-01"]}
    assert load_secrets(out / SECRETS, "kiosk-02") == {"mqtt_password": pw["kiosk-02"]}


def test_wifi_and_broker_tables_filled_in_by_hand_are_kept(tmp_path):
    out = tmp_path / "o"
    provision(cfg("kiosk-01"), out)
    text = (out / SECRETS).read_text()
    (out / SECRETS).write_text(
        text + '[wifi]\nssid = "MPP \\"staff\\""\npassword = "wifi-pw"\n\n[broker]\nhost = "192.168.1.10"\nport = 1883\n'
    )
    before = passwords(out)
    res = provision(cfg("kiosk-01"), out)
    assert res.written == [SECRETS] and res.notes == []
    assert passwords(out) == before
    got = load_secrets(out / SECRETS, "kiosk-01")
    assert got == {"wifi_ssid": 'MPP "staff"', "wifi_password": "wifi-pw", "broker_host": "192.168.1.10",
                   "broker_port": 1883, "mqtt_password": before["kiosk-01"]}


# ---------------------------------------------------------------- re-runs


def test_rerun_keeps_every_password_and_rewrites_nothing(tmp_path):
    out = tmp_path / "o"
    provision(cfg("kiosk-01", "kiosk-02"), out)
    first = snapshot(out)
    res = provision(cfg("kiosk-01", "kiosk-02"), out)
    assert res.written == [] and res.added == res.removed == res.rotated == res.reissued == []
    assert snapshot(out) == first


def test_rerun_adds_new_boards_and_removes_boards_gone_from_the_config(tmp_path):
    out = tmp_path / "o"
    provision(cfg("kiosk-01", "kiosk-02"), out)
    before = passwords(out)
    res = provision(cfg("kiosk-01", "kiosk-03"), out)
    assert (res.added, res.removed) == (["kiosk-03"], ["kiosk-02"])
    after = passwords(out)
    assert set(after) == {CONTROLLER_USER, "kiosk-01", "kiosk-03"}
    assert after["kiosk-01"] == before["kiosk-01"] and after[CONTROLLER_USER] == before[CONTROLLER_USER]
    hashes = parse_passwd((out / PASSWD).read_text())
    assert set(hashes) == set(after)
    assert pbkdf2_ok(after["kiosk-03"], hashes["kiosk-03"])


def test_rotate_one_board_changes_only_its_password(tmp_path):
    out = tmp_path / "o"
    provision(cfg("kiosk-01", "kiosk-02"), out)
    before = passwords(out)
    res = provision(cfg("kiosk-01", "kiosk-02"), out, rotate=["kiosk-02"])
    assert res.rotated == ["kiosk-02"] and PASSWD in res.written
    after = passwords(out)
    assert after["kiosk-02"] != before["kiosk-02"]
    assert {k: v for k, v in after.items() if k != "kiosk-02"} == {k: v for k, v in before.items() if k != "kiosk-02"}
    hashes = parse_passwd((out / PASSWD).read_text())
    assert pbkdf2_ok(after["kiosk-02"], hashes["kiosk-02"]) and not pbkdf2_ok(before["kiosk-02"], hashes["kiosk-02"])


def test_rotate_all_changes_every_password_including_the_controllers(tmp_path):
    out = tmp_path / "o"
    provision(cfg("kiosk-01", "kiosk-02"), out)
    before = passwords(out)
    res = provision(cfg("kiosk-01", "kiosk-02"), out, rotate=["all"])
    assert sorted(res.rotated) == sorted(before)
    after = passwords(out)
    assert all(after[u] != before[u] for u in before)


def test_a_lost_secrets_file_reissues_passwords_and_says_so(tmp_path):
    out = tmp_path / "o"
    provision(cfg("kiosk-01"), out)
    (out / SECRETS).unlink()
    res = provision(cfg("kiosk-01"), out)
    assert res.reissued == ["kiosk-01"] and res.added == []
    assert pbkdf2_ok(passwords(out)["kiosk-01"], parse_passwd((out / PASSWD).read_text())["kiosk-01"])


def test_a_damaged_secrets_file_is_an_error_not_a_mass_rotation(tmp_path):
    out = tmp_path / "o"
    provision(cfg("kiosk-01"), out)
    before = snapshot(out)
    (out / SECRETS).write_text("[devices.kiosk-01\nmqtt_password = 'x'\n")
    with pytest.raises(UserError, match=r"secrets.toml: TOML syntax error.*line 1"):
        provision(cfg("kiosk-01"), out)
    assert (out / PASSWD).read_bytes() == before[PASSWD]


def test_a_table_provisioning_does_not_know_is_an_error_not_silently_dropped(tmp_path):
    out = tmp_path / "o"
    provision(cfg("kiosk-01"), out)
    (out / SECRETS).write_text((out / SECRETS).read_text() + '\n[ota]\nurl = "x"\n')
    with pytest.raises(UserError, match=r"unknown table \[ota\]"):
        provision(cfg("kiosk-01"), out)


# ---------------------------------------------------------------- permissions, errors


def test_directory_is_0700_and_every_file_0600_even_after_someone_loosened_them(tmp_path):
    out = tmp_path / "o"
    provision(cfg("kiosk-01"), out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for name in FILES:
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    out.chmod(0o755)
    (out / PASSWD).chmod(0o644)
    provision(cfg("kiosk-01"), out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / PASSWD).stat().st_mode) == 0o600
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_board_may_not_take_the_controllers_account(tmp_path):
    with pytest.raises(UserError, match=r'devices\[1\]\.id: "controller" is the controller'):
        provision(cfg("kiosk-01", "controller"), tmp_path / "o")


def test_rotate_names_an_unknown_device(tmp_path):
    with pytest.raises(UserError, match="--rotate kiosk-1: no such device.*did you mean kiosk-01"):
        provision(cfg("kiosk-01"), tmp_path / "o", rotate=["kiosk-1"])


def test_broker_url_credentials_are_parsed_and_never_shown():
    addr = parse_broker("mqtt://controller:p%40ss@broker.lan:1884")
    assert (addr.host, addr.port, addr.username, addr.password) == ("broker.lan", 1884, "controller", "p@ss")
    assert "p%40ss" not in repr(addr) and "p@ss" not in repr(addr)
    assert redact_broker_url("mqtt://controller:secret@h:1883") == "mqtt://controller:***@h:1883"
    assert redact_broker_url("mqtt://h:1883") == "mqtt://h:1883"
    with pytest.raises(ValueError) as e:
        parse_broker("http://controller:secret@h")
    assert "secret" not in str(e.value)


# ---------------------------------------------------------------- the command


def sigap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], capture_output=True, text=True, timeout=60)


def test_command_prints_a_summary_and_no_password_unless_asked(tmp_path):
    conf = tmp_path / "sites.toml"
    conf.write_text(site("kiosk-01", "kiosk-02"))
    out = tmp_path / "o"
    res = sigap("provision", "--config", str(conf), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert f"2 devices + controller in {out}" in res.stdout
    assert "written:   secrets.toml, controller.env, passwd, acl, mosquitto.conf" in res.stdout
    pw = passwords(out)
    assert not any(p in res.stdout + res.stderr for p in pw.values())
    again = sigap("provision", "--config", str(conf), "--out", str(out), "--show")
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert f"kiosk-02  {pw['kiosk-02']}" in again.stdout and f"controller  {pw[CONTROLLER_USER]}" in again.stdout


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("bad-config", [], "sites.toml:"),
        ("", ["--out", "{tmp}/afile/o"], "cannot use --out"),
        ("", ["--rotate", "nope"], "--rotate nope: no such device"),
        ("", ["--broker", "mqtt://u:hunter2@h:1883"], "give only mqtt://host:port"),
        ("", ["--broker", "http://h"], "mqtt://host:port"),
    ],
)
def test_command_errors_are_one_line_without_traceback(tmp_path, setup, args, message):
    conf = tmp_path / "sites.toml"
    conf.write_text(site("kiosk-01") + ('\n[[devices]]\nid = "Kiosk 2"\nsite = "mpp"\nrole = "kiosk"\n'
                                        if setup == "bad-config" else ""))
    (tmp_path / "afile").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "o")]
    res = sigap("provision", "--config", str(conf), *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr and "hunter2" not in res.stderr
    if setup == "bad-config":
        assert "devices[1].id" in res.stderr
