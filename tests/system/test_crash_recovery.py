"""SIGKILL the controller in the middle of a burst of kiosk presses, restart it, and
prove: no number issued twice, no acknowledged ticket missing, idempotency kept.

The controller runs as its own process (`sigap controller`) on a real SQLite file;
the kiosks are MQTT clients that behave as the firmware does: a press without an
answer is published again with the same (boot, seq).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa

from tests.harness.controller import SubprocessController, kiosk_site_toml

N_PER_KIOSK = 120
KIOSKS = ("kiosk-01", "kiosk-02")


class Kiosks:
    """The two kiosks' MQTT side: publish presses, collect every answer (thread-safe)."""

    def __init__(self, port: int):
        self.answers: dict[tuple[str, int], list[dict]] = {}
        self.cond = threading.Condition()
        self.clients = {}
        for k in KIOSKS:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=k, clean_session=True)
            c.on_message = self._on_message
            c.connect("127.0.0.1", port)
            c.subscribe(f"sigap/v1/dev/{k}/cmd/ticket", qos=1)
            c.loop_start()
            self.clients[k] = c

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        kiosk = msg.topic.split("/")[3]
        answer = json.loads(msg.payload)
        with self.cond:
            self.answers.setdefault((kiosk, answer["re"]), []).append(answer)
            self.cond.notify_all()

    def press(self, kiosk: str, seq: int) -> None:
        payload = json.dumps({"boot": 1, "seq": seq, "key": "A"})
        self.clients[kiosk].publish(f"sigap/v1/dev/{kiosk}/evt/press", payload, qos=1).wait_for_publish(10)

    def answered(self) -> set[tuple[str, int]]:
        with self.cond:
            return set(self.answers)

    def wait(self, predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.answers), timeout):
                raise TimeoutError(f"only {len(self.answers)} presses answered")

    def close(self) -> None:
        for c in self.clients.values():
            c.loop_stop()
            c.disconnect()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_mid_burst_loses_no_ticket_and_reuses_no_number(broker, tmp_path):
    cfg = tmp_path / "sites.toml"
    cfg.write_text(kiosk_site_toml(KIOSKS))
    db = tmp_path / "sigap.db"
    ctl = SubprocessController(cfg, db, broker.url, tmp_path / "controller.log")
    ctl.start()
    kiosks = Kiosks(broker.port)
    all_presses = [(k, s) for s in range(1, N_PER_KIOSK + 1) for k in KIOSKS]
    try:
        # The burst: publish everything without waiting for answers; kill the
        # controller once a third has been answered, while presses keep coming.
        sent = 0
        for k, s in all_presses:
            kiosks.press(k, s)
            sent += 1
            if sent == len(all_presses) // 2:
                kiosks.wait(lambda a: len(a) >= len(all_presses) // 3, 30)
                ctl.kill()
        acknowledged_before_restart = {key: list(v) for key, v in kiosks.answers.items()}
        assert acknowledged_before_restart, "the kill came before any answer: the test proves nothing"
        assert len(acknowledged_before_restart) < len(all_presses)

        ctl.start()
        # Kiosks retry what got no answer (same boot and seq), and a few that did.
        missing = [p for p in all_presses if p not in kiosks.answered()]
        for k, s in missing + list(acknowledged_before_restart)[:10]:
            kiosks.press(k, s)
        kiosks.wait(lambda a: set(all_presses) <= set(a), 60)
        kiosks.wait(lambda a: sum(len(v) for v in a.values()) >= len(all_presses) + 10, 30)
    finally:
        kiosks.close()
        ctl.stop()

    answers = kiosks.answers
    # Idempotency: every answer to one press is the same answer.
    for key, got in answers.items():
        assert all(a == got[0] for a in got), f"{key} got different answers: {got}"
    labels = [got[0]["ticket"] for got in answers.values()]
    # No number issued twice, none skipped.
    assert len(set(labels)) == len(all_presses)
    assert sorted(labels) == [f"A{i:03d}" for i in range(1, len(all_presses) + 1)]
    # Every acknowledged ticket is in the database with the token it was given.
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        rows = {r.label: r.token for r in conn.execute(sa.text("SELECT label, token FROM tickets"))}
    engine.dispose()
    assert len(rows) == len(all_presses)
    for got in answers.values():
        assert got[0]["url"].endswith("/t/" + rows[got[0]["ticket"]])
    # The audit log survived the kill intact.
    res = subprocess.run([sys.executable, "-m", "controller.cli", "audit", "verify", "--db", f"sqlite:///{db}"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in ctl.log_text()
