"""The lease log: every epoch of every writer lease (who held it from when), and how and when it ended, so that a
cluster's history shows no instance ever ran in two places at once. The epochs held as it is made are its first rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "lease_log",
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("owner", sa.String(40), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("acquired_at", Timestamp, nullable=False),
        sa.Column("ended", sa.String(16), nullable=True),
        sa.Column("ended_at", Timestamp, nullable=True),
        sa.Column("last_tick", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("key", "epoch", name="pk_lease_log"),
    )
    # A lease held now is logged from here on: its end is recorded when it is released or taken over.
    names = ("key", "epoch", "owner", "pid", "host", "acquired_at")
    leases = sa.table("instance_leases", *(sa.column(name) for name in names))
    log = sa.table("lease_log", *(sa.column(name) for name in names))
    held = sa.select(*(leases.c[name] for name in names)).where(leases.c.owner.is_not(None))
    op.execute(log.insert().from_select(list(names), held))


def downgrade() -> None:
    op.drop_table("lease_log")
