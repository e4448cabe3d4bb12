"""Initial schema: tickets, counters, applied events, audit log, devices.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("site", sa.String(32), nullable=False),
        sa.Column("ticket_id", sa.Integer, nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("label", sa.String(8), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("service", sa.String(4), nullable=False),
        sa.Column("prio", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("token", sa.String(64), nullable=False, unique=True),
        sa.Column("issued_at", TZ, nullable=False),
        sa.Column("order_at", TZ, nullable=False),
        sa.Column("called_at", TZ),
        sa.Column("finished_at", TZ),
        sa.Column("counter", sa.String(16)),
        sa.Column("calls", sa.Integer, nullable=False),
        sa.Column("source", sa.String(64)),
        sa.Column("rating", sa.Integer),
        sa.UniqueConstraint("site", "day", "label", name="uq_ticket_label_day"),
        sa.UniqueConstraint("site", "ticket_id", name="uq_ticket_id"),
    )
    op.create_index("ix_tickets_site_day", "tickets", ["site", "day"])
    op.create_table(
        "counters",
        sa.Column("site", sa.String(32), primary_key=True),
        sa.Column("counter", sa.String(16), primary_key=True),
        sa.Column("open", sa.Boolean, nullable=False),
        sa.Column("last_finished", sa.Integer),
    )
    op.create_table(
        "applied_events",
        sa.Column("device_id", sa.String(32), primary_key=True),
        sa.Column("boot", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("applied_at", TZ, nullable=False),
        sa.Column("answer", sa.Text),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("site", sa.String(32)),
        sa.Column("ticket", sa.String(8)),
        sa.Column("counter", sa.String(16)),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "audit_head",
        sa.Column("one", sa.Integer, primary_key=True),
        sa.Column("last_id", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("known", sa.Boolean, nullable=False),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("boot", sa.Integer),
        sa.Column("last_seen", TZ),
        sa.Column("fw", sa.String(32)),
        sa.Column("rssi", sa.Integer),
        sa.Column("heap", sa.Integer),
    )


def downgrade() -> None:
    for name in ("devices", "audit_head", "audit_log", "applied_events", "counters", "tickets"):
        op.drop_table(name)
