"""The audit log is hash-chained: `sigap audit verify` catches edits, deletions and reordering."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from controller.store import open_store

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path):
    """A real SQLite file with ten chained audit entries."""
    path = tmp_path / "audit.db"
    store = open_store(f"sqlite:///{path}")
    with store.transaction() as conn:
        for i in range(10):
            store.audit(conn, T0 + timedelta(seconds=i), "loket-01", "call", "blitar-mpp", f"A{i + 1:03d}", "1",
                        {"key": "next"})
    store.engine.dispose()
    return path


def verify(path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "audit", "verify", "--db", f"sqlite:///{path}"],
        capture_output=True, text=True, timeout=60,
    )


def tamper(path, *statements: str) -> None:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for s in statements:
            conn.execute(sa.text(s))
    engine.dispose()


def test_intact_log_verifies(db):
    res = verify(db)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "intact: 10 entries" in res.stdout


def test_edited_entry_is_named(db):
    tamper(db, "UPDATE audit_log SET ticket = 'A099' WHERE id = 4")
    res = verify(db)
    assert res.returncode == 1
    assert "entry 4 was edited" in res.stdout
    assert "Traceback" not in res.stderr


def test_edited_timestamp_is_caught(db):
    tamper(db, "UPDATE audit_log SET at = '2026-11-23 03:00:00.000000' WHERE id = 2")
    res = verify(db)
    assert res.returncode == 1
    assert "entry 2 was edited" in res.stdout


def test_deleted_middle_entry_is_named(db):
    tamper(db, "DELETE FROM audit_log WHERE id = 6")
    res = verify(db)
    assert res.returncode == 1
    assert "entry 6 is missing" in res.stdout


def test_deleted_last_entries_are_caught(db):
    tamper(db, "DELETE FROM audit_log WHERE id >= 9")
    res = verify(db)
    assert res.returncode == 1
    assert "entries 9..10 are missing" in res.stdout


def test_reordered_entries_are_caught(db):
    # Swap the contents of entries 3 and 7 (ids stay in sequence): the chain breaks at 3.
    tamper(
        db,
        "UPDATE audit_log SET id = -3 WHERE id = 3",
        "UPDATE audit_log SET id = 3 WHERE id = 7",
        "UPDATE audit_log SET id = 7 WHERE id = -3",
    )
    res = verify(db)
    assert res.returncode == 1
    assert "entry 3 does not follow entry 2" in res.stdout


def test_entry_rewritten_with_a_fresh_hash_breaks_the_next_link(db):
    # A forger who recomputes the edited entry's own hash still breaks entry 5's link.
    from controller.store.db import audit_hash

    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        row = conn.execute(sa.text("SELECT * FROM audit_log WHERE id = 4")).mappings().one()
        body = {"id": 4, "at": datetime.fromisoformat(row["at"]).replace(tzinfo=UTC).isoformat(), "actor": "loket-01",
                "action": "call", "site": "blitar-mpp", "ticket": "A099", "counter": "1", "detail": row["detail"]}
        conn.execute(sa.text("UPDATE audit_log SET ticket='A099', hash=:h WHERE id=4"),
                     {"h": audit_hash(row["prev_hash"], body)})
    engine.dispose()
    res = verify(db)
    assert res.returncode == 1
    assert "entry 5 does not follow entry 4" in res.stdout


def test_missing_database_is_a_one_line_error(tmp_path):
    res = verify(tmp_path / "nope.db")
    assert res.returncode == 2
    assert "no database" in res.stderr
    assert "Traceback" not in res.stderr
