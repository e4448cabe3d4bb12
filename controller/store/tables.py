"""The database schema (SQLAlchemy Core). Changes go through an Alembic migration."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Every ticket ever issued. (site, day, label) is unique: a number is never reused
# within a site's local day, even across controller restarts.
tickets = sa.Table(
    "tickets",
    metadata,
    sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("site", sa.String(32), nullable=False),
    sa.Column("ticket_id", sa.Integer, nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("label", sa.String(8), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("service", sa.String(4), nullable=False),
    sa.Column("prio", sa.Boolean, nullable=False, default=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("token", sa.String(64), nullable=False, unique=True),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("order_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("called_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("counter", sa.String(16)),
    sa.Column("calls", sa.Integer, nullable=False, default=0),
    sa.Column("source", sa.String(64)),
    sa.Column("rating", sa.Integer),
    sa.UniqueConstraint("site", "day", "label", name="uq_ticket_label_day"),
    sa.UniqueConstraint("site", "ticket_id", name="uq_ticket_id"),
)

# Per-counter state that is not derivable from tickets (open/paused, last finished).
counters = sa.Table(
    "counters",
    metadata,
    sa.Column("site", sa.String(32), primary_key=True),
    sa.Column("counter", sa.String(16), primary_key=True),
    sa.Column("open", sa.Boolean, nullable=False, default=True),
    sa.Column("last_finished", sa.Integer),
)

# Exactly-once memory: each (device, boot, seq) applied at most once, with its answer.
applied_events = sa.Table(
    "applied_events",
    metadata,
    sa.Column("device_id", sa.String(32), primary_key=True),
    sa.Column("boot", sa.Integer, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("answer", sa.Text),
)

# Append-only, hash-chained audit log.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("site", sa.String(32)),
    sa.Column("ticket", sa.String(8)),
    sa.Column("counter", sa.String(16)),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# The chain's head (last id and hash), updated in the same transaction as each
# append: removing entries from the end of the log is then detectable too.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("one", sa.Integer, primary_key=True),
    sa.Column("last_id", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# Every board the controller has heard from, known or not.
devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("known", sa.Boolean, nullable=False),
    sa.Column("online", sa.Boolean, nullable=False, default=False),
    sa.Column("boot", sa.Integer),
    sa.Column("last_seen", sa.DateTime(timezone=True)),
    sa.Column("fw", sa.String(32)),
    sa.Column("rssi", sa.Integer),
    sa.Column("heap", sa.Integer),
)

# Water readings kept as history: accepted ones, late ones (a board's backlog) and
# suspect ones (held back by a spike filter, `reason` says which). `ts` is Unix
# seconds of the reading (the board's clock, or the arrival time when unsynced).
readings = sa.Table(
    "readings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sensor", sa.String(32), nullable=False),
    sa.Column("ts", sa.Integer, nullable=False),
    sa.Column("level_mm", sa.Integer),
    sa.Column("dist_mm", sa.Integer),
    sa.Column("temp_c", sa.Float),
    sa.Column("batt_mv", sa.Integer),
    sa.Column("n", sa.Integer),
    sa.Column("accepted", sa.Boolean, nullable=False),
    sa.Column("late", sa.Boolean, nullable=False, default=False),
    sa.Column("reason", sa.String(32)),
    sa.Index("ix_readings_sensor_ts", "sensor", "ts"),
)

# Accepted readings downsampled per sensor and 5-minute bucket (kept longer than
# raw readings); `bucket` is the bucket's start in Unix seconds, mean = level_sum / n.
readings_5min = sa.Table(
    "readings_5min",
    metadata,
    sa.Column("sensor", sa.String(32), primary_key=True),
    sa.Column("bucket", sa.Integer, primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("level_min", sa.Integer, nullable=False),
    sa.Column("level_max", sa.Integer, nullable=False),
    sa.Column("level_sum", sa.Integer, nullable=False),
)

# What each water sensor shows now, enough to resume after a restart.
sensor_state = sa.Table(
    "sensor_state",
    metadata,
    sa.Column("sensor", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("level_mm", sa.Integer),
    sa.Column("rate_mm_h", sa.Float),
    sa.Column("ts", sa.Integer),
    sa.Column("siren_on", sa.Boolean, nullable=False, default=False),
    sa.Column("offline", sa.Boolean, nullable=False, default=False),
    sa.Column("raised", sa.Text, nullable=False, default="{}"),
    sa.Column("last_heard", sa.Float),
    sa.Column("last_reading", sa.Float),
)

# Alert episodes (controller.domain.alerts.Alert); times are Unix seconds.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("sensor", sa.String(32), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("opened", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Column("acked_by", sa.String(64)),
    sa.Column("acked_at", sa.Float),
    sa.Column("note", sa.Text),
    sa.Column("resolved_at", sa.Float),
    sa.Column("resolved_by", sa.String(64)),
    sa.Index("ix_alerts_state", "state"),
)

# People who log in to the web UI and API (CONTRACT §4); pw_hash is
# "pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>".
users = sa.Table(
    "users",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("pw_hash", sa.String(256), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)

# Installation secrets kept in the database (e.g. the key that signs API tokens).
secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

# Sessions and API tokens ended before their expiry (web logout): their `jti`
# claim, and their expiry, after which the row can go.
revoked_tokens = sa.Table(
    "revoked_tokens",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("exp", sa.Integer, nullable=False),
)

# Outgoing webhooks: a durable outbox written in the same transaction as the
# alert change, delivered (and retried) by a background task.
webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("url", sa.String(512), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.String(200)),
)
