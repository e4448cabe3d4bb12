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
