"""The puppet master: an instance's status (active, frozen, abandoned branch) and links between instances.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="active"))
    op.create_table(
        "instance_links",
        sa.Column("a", sa.String(64), nullable=False),
        sa.Column("b", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("a", "b", name="pk_instance_links"),
        sa.ForeignKeyConstraint(["a"], ["instances.id"], name="fk_instance_links_a_instances", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["b"], ["instances.id"], name="fk_instance_links_b_instances", ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("instance_links")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("status")
