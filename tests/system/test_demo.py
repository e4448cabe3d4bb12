"""`sigap demo` as a user runs it: it starts, the queue moves, Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.harness.broker import free_port, wait_port
from tests.harness.controller import ROOT


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read()


def wait_until(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    """Poll an outside process's state until predicate() returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.25)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_runs_the_queue_live_and_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    control = free_port()
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "demo", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(tmp_path / "data"), "--sim-control", f"127.0.0.1:{control}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )
    try:
        wait_port(port, up=True, timeout=60)
        status, page = get(f"http://127.0.0.1:{port}/")
        assert status == 200 and b"Sigap" in page
        health = json.loads(get(f"http://127.0.0.1:{port}/api/health")[1])
        assert health == {"status": "ok", "broker": "connected", "db": "ok"}

        def moving():
            snap = json.loads(get(f"http://127.0.0.1:{port}/api/queues/blitar-mpp")[1])
            issued = sum(1 for s in snap["services"].values() if s["last"])
            return snap if issued >= 2 and snap["calls"] else None

        snap = wait_until(moving, 60, "tickets issued and called by the simulated boards")
        assert any(c["serving"] for c in snap["counters"].values())
        # The river sensors report too (their clocks follow the demo's scenario time).
        def sensors_reporting():
            sensors = json.loads(get(f"http://127.0.0.1:{port}/api/sensors")[1])
            return sensors if sensors and all(s["level_mm"] is not None for s in sensors) else None

        sensors = wait_until(sensors_reporting, 60, "every water sensor's first reading")
        assert all(s["online"] and s["status"] == "normal" for s in sensors)
        text = log.read_text()
        assert f"http://127.0.0.1:{port}/" in text
        # The virtual boards' control answers on its own port, printed with the other URLs.
        assert f"http://127.0.0.1:{control}/boards" in text
        boards = json.loads(get(f"http://127.0.0.1:{control}/boards")[1])
        assert {b["role"] for b in boards} >= {"kiosk", "counter", "water"}
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert "Sigap demo stopped." in text
    assert "Traceback" not in text
    wait_port(port, up=False, timeout=5)


def _demo_until_ready(tmp_path, data_dir, name: str) -> str:
    """Run the demo on a data dir until it says it is running, stop it with SIGTERM, return its output."""
    port = free_port()
    log = tmp_path / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "demo", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(data_dir)],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )
    try:
        wait_until(lambda: "Press Ctrl-C" in log.read_text(), 60, "the demo's banner")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert "Traceback" not in text
    return text


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_demo_prints_the_admin_login_on_every_start(tmp_path, monkeypatch):
    monkeypatch.delenv("SIGAP_ADMIN_PASSWORD", raising=False)
    first = _demo_until_ready(tmp_path, tmp_path / "data", "first")
    login = [line for line in first.splitlines() if line.strip().startswith("login:")]
    assert len(login) == 1 and "admin / " in login[0], first
    again = _demo_until_ready(tmp_path, tmp_path / "data", "again")
    assert any(line.strip().startswith("login:") and "admin" in line for line in again.splitlines()), again


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_runs_a_named_scenario_and_prints_its_summary_when_stopped(tmp_path):
    port = free_port()
    log = tmp_path / "demo-scenario.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "demo", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(tmp_path / "data"), "--sim-control", "off", "--scenario", "mpp-pagi"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )
    try:
        wait_until(lambda: "Press Ctrl-C" in log.read_text(), 90, "the demo's banner")
        text = log.read_text()
        assert "scenario mpp-pagi: 31 boards online, scenario time" in text
        health = json.loads(get(f"http://127.0.0.1:{port}/api/health")[1])
        assert health["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert "Scenario mpp-pagi:" in text  # the summary of what happened so far
    assert "Sigap demo stopped." in text and "Traceback" not in text
