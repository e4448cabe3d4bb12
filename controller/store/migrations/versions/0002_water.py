"""Water: readings history (raw and 5-minute aggregates), per-sensor state, alerts.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "readings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sensor", sa.String(32), nullable=False),
        sa.Column("ts", sa.Integer, nullable=False),
        sa.Column("level_mm", sa.Integer),
        sa.Column("dist_mm", sa.Integer),
        sa.Column("temp_c", sa.Float),
        sa.Column("batt_mv", sa.Integer),
        sa.Column("n", sa.Integer),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("late", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String(32)),
    )
    op.create_index("ix_readings_sensor_ts", "readings", ["sensor", "ts"])
    op.create_table(
        "readings_5min",
        sa.Column("sensor", sa.String(32), primary_key=True),
        sa.Column("bucket", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("level_min", sa.Integer, nullable=False),
        sa.Column("level_max", sa.Integer, nullable=False),
        sa.Column("level_sum", sa.Integer, nullable=False),
    )
    op.create_table(
        "sensor_state",
        sa.Column("sensor", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("level_mm", sa.Integer),
        sa.Column("rate_mm_h", sa.Float),
        sa.Column("ts", sa.Integer),
        sa.Column("siren_on", sa.Boolean, nullable=False),
        sa.Column("offline", sa.Boolean, nullable=False),
        sa.Column("raised", sa.Text, nullable=False),
        sa.Column("last_heard", sa.Float),
        sa.Column("last_reading", sa.Float),
    )
    op.create_table(
        "alerts",
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
    )
    op.create_index("ix_alerts_state", "alerts", ["state"])


def downgrade() -> None:
    for name in ("alerts", "sensor_state", "readings_5min", "readings"):
        op.drop_table(name)
