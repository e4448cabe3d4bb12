"""Engine set-up, migrations and the Store: every read and write of controller state.

SQLite runs in WAL mode with synchronous=NORMAL: a committed transaction survives
a kill -9 of the controller (it is in the OS page cache and the WAL); only a power
cut of the whole server could lose the last moments. PostgreSQL works with the
same code.

Checkpoints (copying the WAL back into the database file, with an fsync) run
off the event loop: the controller calls :meth:`Store.checkpoint` from a
worker thread every two seconds. SQLite's own checkpoint, which would otherwise run
inside every ~100th press's commit on the event loop (~3 ms), stays only as a
safety net at ``WAL_AUTOCHECKPOINT_PAGES``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import operator
import pathlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from controller.store.tables import (
    alerts,
    applied_events,
    audit_head,
    audit_log,
    counters,
    devices,
    metadata,
    readings,
    readings_5min,
    revoked_tokens,
    secrets,
    sensor_state,
    tickets,
    users,
)

MIGRATIONS = pathlib.Path(__file__).with_name("migrations")
GENESIS = "0" * 64
AGGREGATE_S = 300
"""Width of a downsampled readings bucket (readings_5min)."""
WAL_AUTOCHECKPOINT_PAGES = 10_000
"""SQLite checkpoints by itself only when the WAL reaches this (~40 MB); normally Store.checkpoint runs first."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> sa.Engine:
    """An engine for sqlite:///PATH or postgresql://…"""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def utc(dt: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive: they were stored as UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=UTC)


def audit_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    """Hash of one audit entry chained to the previous entry's hash."""
    body = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def _audit_body(row: Any) -> dict[str, Any]:
    at = utc(row.at)
    return {
        "id": row.id,
        "at": at.isoformat() if at else None,
        "actor": row.actor,
        "action": row.action,
        "site": row.site,
        "ticket": row.ticket,
        "counter": row.counter,
        "detail": row.detail,
    }


# Statements built once; each execution only binds parameters (the hot path
# of every press: building statements per call cost more than SQLite itself).
_INSERT_APPLIED = applied_events.insert()
_INSERT_TICKET = tickets.insert()
_UPDATE_TICKET = tickets.update().where(
    tickets.c.site == sa.bindparam("b_site"), tickets.c.ticket_id == sa.bindparam("b_ticket_id")
)
_INSERT_AUDIT = audit_log.insert()
_UPDATE_HEAD = audit_head.update().where(audit_head.c.one == 1)
_INSERT_READING = readings.insert()
_UPDATE_SENSOR = sensor_state.update().where(sensor_state.c.sensor == sa.bindparam("b_sensor"))
_INSERT_SENSOR = sensor_state.insert()


def _upsert_aggregate(insert: Any) -> Any:
    """INSERT … ON CONFLICT (sensor, bucket) DO UPDATE merging a partial bucket; same
    construct for SQLite (3.24+) and PostgreSQL."""
    t = readings_5min
    stmt = insert(t)
    x = stmt.excluded
    return stmt.on_conflict_do_update(index_elements=[t.c.sensor, t.c.bucket], set_={
        "n": t.c.n + x.n,
        "level_sum": t.c.level_sum + x.level_sum,
        "level_min": sa.case((t.c.level_min > x.level_min, x.level_min), else_=t.c.level_min),
        "level_max": sa.case((t.c.level_max < x.level_max, x.level_max), else_=t.c.level_max),
    })


class _Bulk:
    """One INSERT or UPDATE run for many rows with the driver's own executemany.

    SQLAlchemy's executemany converts every row's parameters in Python and costs
    more per row than SQLite itself; here each column's bind processor (e.g.
    datetimes as text on SQLite) is looked up once and applied directly. The
    statement is compiled once per dialect; works with any paramstyle.
    """

    def __init__(self, stmt: Any, keys: list[str]):
        self.stmt = stmt
        self.keys = keys
        self._compiled: dict[str, tuple[str, list[str], list[Any], bool]] = {}

    def _for(self, dialect: sa.Dialect) -> tuple[str, list[str], list[Any], bool]:
        c = self._compiled.get(dialect.name)
        if c is None:
            compiled = self.stmt.compile(dialect=dialect, column_keys=self.keys)
            names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
            procs = [compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
            c = self._compiled[dialect.name] = (str(compiled), names, procs, bool(compiled.positional))
        return c

    def run(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """Execute for every row (each a dict with at least the statement's parameter names)."""
        if not rows:
            return
        sql, names, procs, positional = self._for(conn.dialect)
        if positional:
            # One itemgetter per row, then the few columns with a bind processor (datetimes,
            # booleans on SQLite) converted in place: no generator per row.
            get = operator.itemgetter(*names)
            conv = [(i, p) for i, p in enumerate(procs) if p is not None]
            if len(names) == 1:
                params: list[Any] = [(get(r),) for r in rows]
            else:
                params = list(map(get, rows))
            if conv:
                for k, t in enumerate(params):
                    row = list(t)
                    for i, p in conv:
                        if row[i] is not None:
                            row[i] = p(row[i])
                    params[k] = tuple(row)
        else:
            pairs = list(zip(names, procs, strict=True))
            params = [{n: r[n] if p is None or r[n] is None else p(r[n]) for n, p in pairs} for r in rows]
        conn.exec_driver_sql(sql, params)


_BULK_APPLIED = _Bulk(applied_events.insert(), ["device_id", "boot", "seq", "kind", "applied_at", "answer"])
_BULK_READING = _Bulk(readings.insert(), ["sensor", "ts", "level_mm", "dist_mm", "temp_c", "batt_mv", "n", "accepted",
                                          "late", "reason"])
_SENSOR_COLS = ["status", "level_mm", "rate_mm_h", "ts", "siren_on", "offline", "raised", "last_heard", "last_reading"]
_BULK_SENSOR_UPDATE = _Bulk(
    sensor_state.update().where(sensor_state.c.sensor == sa.bindparam("b_sensor"))
    .values({c: sa.bindparam(c) for c in _SENSOR_COLS}), ["b_sensor", *_SENSOR_COLS])
_AGGREGATE_KEYS = ["sensor", "bucket", "n", "level_sum", "level_min", "level_max"]
_UPSERT_AGGREGATE = {"sqlite": _Bulk(_upsert_aggregate(sqlite_insert), _AGGREGATE_KEYS),
                     "postgresql": _Bulk(_upsert_aggregate(pg_insert), _AGGREGATE_KEYS)}
_UPDATE_ALERT = alerts.update().where(alerts.c.id == sa.bindparam("b_id"))
_INSERT_ALERT = alerts.insert()


class Store:
    """The controller's only door to the database."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._audit_head: tuple[int, str] | None = None
        # The thread that made the Store (the controller's event loop) keeps one
        # connection for its transactions instead of a pool checkout and check-in
        # per press; other threads (sync web routes) use the pool as before.
        self._owner = threading.get_ident()
        self._writer: sa.Connection | None = None

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One atomic unit of work: commit on success, roll back on error."""
        if threading.get_ident() != self._owner:
            with self.engine.begin() as pooled:
                yield pooled
            return
        if self._writer is None:
            self._writer = self.engine.connect()
        conn = self._writer
        try:
            with conn.begin():
                yield conn
        except BaseException:
            # Whatever went wrong (a lost server connection too), the next transaction starts afresh.
            self.close_writer()
            raise

    def close_writer(self) -> None:
        """Give the event loop's own connection back (before the engine is disposed)."""
        conn, self._writer = self._writer, None
        if conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.close()

    def checkpoint(self) -> tuple[int, int, int] | None:
        """SQLite: copy committed WAL pages into the database file, without waiting for or
        blocking a writer (PASSIVE); (busy, WAL frames, frames copied). None on other databases.

        Blocking I/O: call it from a worker thread, not the event loop.
        """
        if self.engine.dialect.name != "sqlite":
            return None
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").first()
            conn.commit()
        return (int(row[0]), int(row[1]), int(row[2])) if row is not None else None

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except sa.exc.SQLAlchemyError:
            return False

    # -- exactly once -----------------------------------------------------------
    def applied(self, device_id: str, boot: int, seq: int) -> tuple[bool, str | None]:
        """Whether this event identity was applied already, and its stored answer."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(applied_events.c.answer).where(
                    applied_events.c.device_id == device_id,
                    applied_events.c.boot == boot,
                    applied_events.c.seq == seq,
                )
            ).first()
        return (row is not None, row.answer if row is not None else None)

    def record_applied(
        self, conn: sa.Connection, device_id: str, boot: int, seq: int, kind: str, answer: str | None, at: datetime
    ) -> None:
        """Remember an applied event (in the caller's transaction)."""
        conn.execute(
            _INSERT_APPLIED,
            {"device_id": device_id, "boot": boot, "seq": seq, "kind": kind, "applied_at": at, "answer": answer},
        )

    # -- tickets and counters -----------------------------------------------------
    def save_tickets(self, conn: sa.Connection, rows: list[dict[str, Any]], new: bool = False) -> None:
        """Insert (new=True: freshly issued) or update ticket rows keyed by (site, ticket_id)."""
        for row in rows:
            if new:
                conn.execute(_INSERT_TICKET, row)
                continue
            res = conn.execute(_UPDATE_TICKET, {"b_site": row["site"], "b_ticket_id": row["ticket_id"], **row})
            if res.rowcount == 0:
                conn.execute(_INSERT_TICKET, row)

    def load_tickets(self, site: str, since_day: str) -> list[dict[str, Any]]:
        """Ticket rows of a site from a local day on (and any still called), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(tickets)
                .where(tickets.c.site == site, sa.or_(tickets.c.day >= since_day, tickets.c.status == "called"))
                .order_by(tickets.c.ticket_id)
            ).mappings()
            out = []
            for r in rows:
                d = dict(r)
                for k in ("issued_at", "order_at", "called_at", "finished_at"):
                    d[k] = utc(d[k])
                out.append(d)
        return out

    def max_ticket_id(self, site: str) -> int:
        """Highest ticket id ever issued at a site (0 when none)."""
        with self.engine.connect() as conn:
            v = conn.execute(sa.select(sa.func.max(tickets.c.ticket_id)).where(tickets.c.site == site)).scalar()
        return int(v or 0)

    def save_counter(self, conn: sa.Connection, site: str, counter: str, open_: bool, last_finished: int | None) -> None:
        """Insert or update one counter's state."""
        res = conn.execute(
            counters.update()
            .where(counters.c.site == site, counters.c.counter == counter)
            .values(open=open_, last_finished=last_finished)
        )
        if res.rowcount == 0:
            conn.execute(counters.insert().values(site=site, counter=counter, open=open_, last_finished=last_finished))

    def load_counters(self, site: str) -> dict[str, dict[str, Any]]:
        """Counter states of a site."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(counters).where(counters.c.site == site)).mappings()
            return {r["counter"]: dict(r) for r in rows}

    # -- audit log ------------------------------------------------------------------
    def _head(self, conn: sa.Connection) -> tuple[int, str]:
        if self._audit_head is None:
            row = conn.execute(sa.select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)).first()
            self._audit_head = (row.id, row.hash) if row else (0, GENESIS)
        return self._audit_head

    def audit(
        self,
        conn: sa.Connection,
        at: datetime,
        actor: str,
        action: str,
        site: str | None = None,
        ticket: str | None = None,
        counter: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one hash-chained entry (in the caller's transaction)."""
        last_id, prev = self._head(conn)
        entry_id = last_id + 1
        body = {
            "id": entry_id,
            "at": at.astimezone(UTC).isoformat(),
            "actor": actor,
            "action": action,
            "site": site,
            "ticket": ticket,
            "counter": counter,
            "detail": json.dumps(detail or {}, sort_keys=True, separators=(",", ":")),
        }
        h = audit_hash(prev, body)
        conn.execute(
            _INSERT_AUDIT,
            {
                "id": entry_id,
                "at": at.astimezone(UTC),
                "actor": actor,
                "action": action,
                "site": site,
                "ticket": ticket,
                "counter": counter,
                "detail": body["detail"],
                "prev_hash": prev,
                "hash": h,
            },
        )
        res = conn.execute(_UPDATE_HEAD, {"last_id": entry_id, "hash": h})
        if res.rowcount == 0:
            conn.execute(audit_head.insert().values(one=1, last_id=entry_id, hash=h))
        self._audit_head = (entry_id, h)

    def forget_cached_head(self) -> None:
        """After a rolled-back transaction the cached chain head may be ahead of the database."""
        self._audit_head = None

    def verify_audit(self) -> tuple[int, str | None]:
        """Walk the chain: (entries checked, None) when intact, else the first broken entry named."""
        prev = GENESIS
        expected_id = 1
        n = 0
        with self.engine.connect() as conn:
            for row in conn.execute(sa.select(audit_log).order_by(audit_log.c.id)):
                n += 1
                if row.id != expected_id:
                    return n, f"entry {expected_id} is missing (next entry found is {row.id})"
                if row.prev_hash != prev:
                    return n, f"entry {row.id} does not follow entry {row.id - 1} (entries removed or reordered)"
                if audit_hash(prev, _audit_body(row)) != row.hash:
                    return n, f"entry {row.id} was edited (its hash does not match its content)"
                prev = row.hash
                expected_id += 1
            head = conn.execute(sa.select(audit_head.c.last_id, audit_head.c.hash)).first()
        if head is not None and (head.last_id != expected_id - 1 or head.hash != prev):
            if head.last_id > expected_id - 1:
                return n, f"entries {expected_id}..{head.last_id} are missing from the end of the log"
            return n, f"entry {head.last_id} does not match the recorded head of the chain"
        if head is None and n > 0:
            return n, "the record of the chain's head is missing"
        return n, None

    # -- devices -----------------------------------------------------------------------
    def save_device(self, id: str, **values: Any) -> None:
        """Insert or update what is known of a board."""
        with self.transaction() as conn:
            res = conn.execute(devices.update().where(devices.c.id == id).values(**values))
            if res.rowcount == 0:
                values.setdefault("online", False)
                values.setdefault("known", False)
                conn.execute(devices.insert().values(id=id, **values))

    def load_devices(self) -> list[dict[str, Any]]:
        """Every board ever heard from."""
        with self.engine.connect() as conn:
            out = []
            for r in conn.execute(sa.select(devices).order_by(devices.c.id)).mappings():
                d = dict(r)
                d["last_seen"] = utc(d["last_seen"])
                out.append(d)
            return out

    # -- water ---------------------------------------------------------------------------
    def save_reading(self, conn: sa.Connection, row: dict[str, Any]) -> None:
        """Append one reading to the history (in the caller's transaction)."""
        conn.execute(_INSERT_READING, row)

    def add_to_aggregate(self, conn: sa.Connection, sensor: str, ts: int, level_mm: int) -> None:
        """Count an accepted reading into its 5-minute bucket (in the caller's transaction)."""
        bucket = ts - ts % AGGREGATE_S
        t = readings_5min
        res = conn.execute(
            t.update()
            .where(t.c.sensor == sensor, t.c.bucket == bucket)
            .values(
                n=t.c.n + 1,
                level_sum=t.c.level_sum + level_mm,
                level_min=sa.case((t.c.level_min > level_mm, level_mm), else_=t.c.level_min),
                level_max=sa.case((t.c.level_max < level_mm, level_mm), else_=t.c.level_max),
            )
        )
        if res.rowcount == 0:
            conn.execute(t.insert().values(sensor=sensor, bucket=bucket, n=1, level_min=level_mm,
                                           level_max=level_mm, level_sum=level_mm))

    def load_aggregates(self, sensor: str, since: int, until: int) -> list[dict[str, Any]]:
        """5-minute buckets of a sensor starting within since..until, oldest first."""
        t = readings_5min
        q = (sa.select(t).where(t.c.sensor == sensor, t.c.bucket >= since - since % AGGREGATE_S, t.c.bucket <= until)
             .order_by(t.c.bucket))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def settle_held_reading(self, conn: sa.Connection, sensor: str, ts: int, accepted: bool) -> None:
        """The verdict on a reading held as a possible spike: a real step is accepted after all."""
        conn.execute(
            readings.update()
            .where(readings.c.sensor == sensor, readings.c.ts == ts, readings.c.reason == "suspect_spike")
            .values(accepted=accepted)
        )

    def load_readings(self, sensor: str, since: int, until: int, accepted_only: bool = True,
                      limit: int | None = None) -> list[dict[str, Any]]:
        """Readings of a sensor with since <= ts <= until, oldest first."""
        q = sa.select(readings).where(readings.c.sensor == sensor, readings.c.ts >= since, readings.c.ts <= until)
        if accepted_only:
            q = q.where(readings.c.accepted.is_(True))
        q = q.order_by(readings.c.ts, readings.c.id)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings()]

    def save_sensor_state(self, conn: sa.Connection, row: dict[str, Any]) -> None:
        """Insert or update one sensor's current state."""
        res = conn.execute(_UPDATE_SENSOR, {"b_sensor": row["sensor"], **row})
        if res.rowcount == 0:
            conn.execute(_INSERT_SENSOR, row)

    # -- water, a batch at a time (group commit) ---------------------------------------------
    def record_applied_many(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """Remember many applied events at once (in the caller's transaction); each row as
        record_applied's arguments: device_id, boot, seq, kind, applied_at, answer."""
        _BULK_APPLIED.run(conn, rows)

    def recent_applied(self, device_ids: list[str], per_device: int) -> list[tuple[str, int, int]]:
        """Identities of each device's newest applied events (at most per_device each, oldest
        first), read backwards along the primary key: no scan of the whole table."""
        t = applied_events
        q = (sa.select(t.c.boot, t.c.seq).where(t.c.device_id == sa.bindparam("dev"))
             .order_by(t.c.boot.desc(), t.c.seq.desc()).limit(per_device))
        out: list[tuple[str, int, int]] = []
        with self.engine.connect() as conn:
            for dev in device_ids:
                out.extend(reversed([(dev, r.boot, r.seq) for r in conn.execute(q, {"dev": dev})]))
        return out

    def save_readings(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """Append many readings to the history (in the caller's transaction)."""
        _BULK_READING.run(conn, rows)

    def add_to_aggregates(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """Merge partial 5-minute buckets (sensor, bucket, n, level_sum, level_min, level_max)
        into readings_5min (in the caller's transaction): one upsert for them all."""
        if not rows:
            return
        t = readings_5min
        name = conn.dialect.name
        if name not in ("sqlite", "postgresql"):
            for r in rows:
                res = conn.execute(
                    t.update().where(t.c.sensor == r["sensor"], t.c.bucket == r["bucket"]).values(
                        n=t.c.n + r["n"], level_sum=t.c.level_sum + r["level_sum"],
                        level_min=sa.case((t.c.level_min > r["level_min"], r["level_min"]), else_=t.c.level_min),
                        level_max=sa.case((t.c.level_max < r["level_max"], r["level_max"]), else_=t.c.level_max),
                    ))
                if res.rowcount == 0:
                    conn.execute(t.insert().values(**r))
            return
        _UPSERT_AGGREGATE[name].run(conn, rows)

    def save_sensor_states_many(self, conn: sa.Connection, update: list[dict[str, Any]],
                                insert: list[dict[str, Any]]) -> None:
        """Many sensors' current state: rows known to exist are updated, the others inserted."""
        _BULK_SENSOR_UPDATE.run(conn, [{"b_sensor": r["sensor"], **r} for r in update])
        if insert:
            conn.execute(_INSERT_SENSOR, insert)

    def load_sensor_states(self) -> dict[str, dict[str, Any]]:
        """Every stored sensor state by sensor id."""
        with self.engine.connect() as conn:
            return {r["sensor"]: dict(r) for r in conn.execute(sa.select(sensor_state)).mappings()}

    def save_alert(self, conn: sa.Connection, row: dict[str, Any]) -> None:
        """Insert or update one alert row (keyed by its id)."""
        res = conn.execute(_UPDATE_ALERT, {"b_id": row["id"], **row})
        if res.rowcount == 0:
            conn.execute(_INSERT_ALERT, row)

    def load_alerts(self, keep_resolved: int = 1000) -> list[dict[str, Any]]:
        """Every active alert and the newest resolved ones, by id."""
        with self.engine.connect() as conn:
            active = conn.execute(sa.select(alerts).where(alerts.c.state != "resolved")).mappings().all()
            done = conn.execute(
                sa.select(alerts).where(alerts.c.state == "resolved").order_by(alerts.c.id.desc()).limit(keep_resolved)
            ).mappings().all()
        return sorted((dict(r) for r in [*active, *done]), key=lambda r: r["id"])

    def max_alert_id(self) -> int:
        """Highest alert id ever stored (0 when none)."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(alerts.c.id))).scalar() or 0)

    # -- users and secrets -------------------------------------------------------------------
    def secret(self, name: str, make: Any) -> str:
        """The named secret; created with make() (and kept) when absent."""
        with self.transaction() as conn:
            v = conn.execute(sa.select(secrets.c.value).where(secrets.c.name == name)).scalar()
            if v is None:
                v = make()
                conn.execute(secrets.insert().values(name=name, value=v))
        return str(v)

    def user(self, username: str) -> dict[str, Any] | None:
        """One user's row, or None."""
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(users).where(users.c.username == username)).mappings().first()
        return dict(r) if r else None

    def revoke_token(self, jti: str, exp: int, now: int) -> None:
        """Remember a token ended before its expiry; forget those past theirs."""
        with self.transaction() as conn:
            conn.execute(sa.delete(revoked_tokens).where(revoked_tokens.c.exp < now))
            if conn.execute(sa.select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == jti)).first() is None:
                conn.execute(revoked_tokens.insert().values(jti=jti, exp=exp))

    def token_revoked(self, jti: str) -> bool:
        """True when a token with this `jti` was revoked."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == jti)).first() is not None

    def count_users(self) -> int:
        """How many users exist."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar() or 0)

    def save_user(self, username: str, pw_hash: str, role: str, created: datetime) -> None:
        """Insert or replace a user."""
        with self.transaction() as conn:
            res = conn.execute(users.update().where(users.c.username == username).values(pw_hash=pw_hash, role=role))
            if res.rowcount == 0:
                conn.execute(users.insert().values(username=username, pw_hash=pw_hash, role=role, created=created))


def verify_main(db_url: str) -> int:
    """`sigap audit verify`: 0 when the chain is intact, 1 naming the first broken entry."""
    store = Store(make_engine(db_url))
    try:
        n, problem = store.verify_audit()
    except sa.exc.SQLAlchemyError as e:
        print(f"audit verify: cannot read the audit log: {str(e).splitlines()[0]}")
        return 2
    finally:
        store.engine.dispose()
    if problem:
        print(f"audit log BROKEN after {n} entries checked: {problem}")
        return 1
    print(f"audit log intact: {n} entries, hash chain verified")
    return 0


def default_db_url(config_path: str | pathlib.Path) -> str:
    """sqlite file beside the config: sites.toml → sites.db"""
    p = pathlib.Path(config_path).resolve()
    return f"sqlite:///{p.with_suffix('.db')}"


def open_store(url: str) -> Store:
    """Engine + migrations + Store, ready to use."""
    engine = make_engine(url)
    migrate(engine)
    return Store(engine)


__all__ = ["Store", "open_store", "default_db_url", "metadata"]
