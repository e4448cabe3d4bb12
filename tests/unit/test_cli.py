"""The `sigap` command line: every command has --help; user errors are one line, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from controller.config import DEMO_CONFIG

COMMANDS = ["demo", "controller", "simulate", "deploy", "provision", "check", "audit"]


def sigap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    res = sigap(command, "--help")
    assert res.returncode == 0
    assert "usage: sigap " + command in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["controller", "--config", "/nonexistent/sites.toml"], "no such file"),
        (["controller", "--config", str(DEMO_CONFIG), "--broker", "http://x"], "mqtt://host:port"),
        (["controller", "--config", str(DEMO_CONFIG), "--listen", "nonsense"], "HOST:PORT"),
        (["controller", "--config", str(DEMO_CONFIG), "--listen", "127.0.0.1:99999"], "HOST:PORT"),
        (["demo", "--listen", "127.0.0.1:0"], "HOST:PORT"),
        (["controller", "--config", str(DEMO_CONFIG), "--db", "postgresql://nobody@127.0.0.1:1/x"],
         "cannot open the database"),
        (["demo", "--broker", "ftp://x"], "mqtt://host:port"),
        (["simulate", "--config", str(DEMO_CONFIG), "--broker", "nonsense://"], "mqtt://host:port"),
        (["audit", "verify"], "--db URL or --config FILE"),
        (["demo", "--scenario", "nosuch"], "no such scenario file (bundled: "),
        (["simulate", "--config", str(DEMO_CONFIG), "--broker", "mqtt://127.0.0.1:1", "--scenario", "nosuch"],
         "no such scenario file (bundled: "),
    ],
)
def test_user_errors_are_one_clear_line_without_traceback(args, message):
    res = sigap(*args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("command", ["controller", "demo"])
def test_listen_port_in_use_is_one_line_before_anything_starts(command, tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        db = tmp_path / "sigap.db"
        if command == "controller":
            args = ["controller", "--config", str(DEMO_CONFIG), "--broker", "mqtt://127.0.0.1:1",
                    "--db", f"sqlite:///{db}", "--listen", listen]
        else:
            args = ["demo", "--data-dir", str(tmp_path), "--listen", listen]
            db = tmp_path / "sigap-demo.db"
        res = sigap(*args)
    assert res.returncode == 2, res.stderr
    assert f"cannot listen on {listen}" in res.stderr
    assert "Traceback" not in res.stderr
    assert "password" not in res.stdout  # no admin created in a database nobody will use
    assert not db.exists()
