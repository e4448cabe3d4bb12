"""Revoked session tokens (web logout).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(64), primary_key=True),
        sa.Column("exp", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("revoked_tokens")
