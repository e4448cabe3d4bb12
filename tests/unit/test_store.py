"""The Store's SQLite housekeeping: the write-ahead log is checkpointed by the controller, not inside commits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from controller.store import open_store
from controller.store.db import WAL_AUTOCHECKPOINT_PAGES

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)

pytestmark = pytest.mark.timeout(30)


def test_commits_leave_the_checkpoint_to_the_controller(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'sigap.db'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == WAL_AUTOCHECKPOINT_PAGES
        for i in range(500):
            with store.transaction() as conn:
                store.audit(conn, T0 + timedelta(seconds=i), "kiosk-01", "issue", "mpp", f"A{i + 1:03d}", None, {})
        busy, frames, copied = store.checkpoint() or (None, None, None)
        # More frames than SQLite's default threshold (1000): no commit checkpointed on its own.
        assert busy == 0 and frames is not None and frames > 1000 and copied == frames
        # Nothing new since: a second checkpoint has nothing left to copy beyond what it already did.
        assert store.checkpoint() == (0, frames, frames)
        assert store.verify_audit() == (500, None)
    finally:
        store.engine.dispose()
    # Everything is in the database file once the WAL is gone.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'sigap.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM audit_log").scalar() == 500
    finally:
        engine.dispose()


def test_event_loop_thread_keeps_one_connection_and_recovers_after_a_failed_transaction(tmp_path):
    import threading

    store = open_store(f"sqlite:///{tmp_path / 'sigap.db'}")
    try:
        with store.transaction() as first:
            store.record_applied(first, "kiosk-01", 1, 1, "press", "{}", T0)
        with store.transaction() as second:
            store.record_applied(second, "kiosk-01", 1, 2, "press", "{}", T0)
        assert second is first  # no pool checkout per transaction on the owning thread
        with pytest.raises(sa.exc.IntegrityError), store.transaction() as conn:
            store.record_applied(conn, "kiosk-01", 1, 3, "press", "{}", T0)
            store.record_applied(conn, "kiosk-01", 1, 2, "press", "{}", T0)  # applied already
        with store.transaction() as conn:  # a fresh connection; the failed one left nothing behind
            assert conn is not first
            store.record_applied(conn, "kiosk-01", 1, 3, "press", "{}", T0)
        # Other threads (sync web routes) get their own pooled connections.
        others: list[sa.Connection] = []

        def elsewhere() -> None:
            with store.transaction() as c:
                others.append(c)
                store.record_applied(c, "kiosk-01", 1, 4, "press", "{}", T0)

        t = threading.Thread(target=elsewhere)
        t.start()
        t.join(10)
        assert len(others) == 1 and others[0] is not conn
        assert [store.applied("kiosk-01", 1, s)[0] for s in range(1, 6)] == [True, True, True, True, False]
    finally:
        store.close_writer()
        store.engine.dispose()
