"""The first schema: instances with lineage, agents, snapshots, dictionaries, ritual logs, inputs, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("seed", sa.String(20), nullable=False),
        sa.Column("genesis_hash", sa.String(80), nullable=False),
        sa.Column("world", Json, nullable=False),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("fork_tick", sa.BigInteger, nullable=True),
        sa.Column("merge_parent_id", sa.String(64), nullable=True),
        sa.Column("head_tick", sa.BigInteger, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
        sa.ForeignKeyConstraint(["parent_id"], ["instances.id"], name="fk_instances_parent_id_instances"),
        sa.ForeignKeyConstraint(["merge_parent_id"], ["instances.id"], name="fk_instances_merge_parent_id_instances"),
    )
    op.create_index("ix_instances_seed", "instances", ["seed"])
    op.create_table(
        "agents",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("agent_type", sa.String(32), nullable=False),
        sa.Column("personality", Json, nullable=False),
        sa.Column("state", Json, nullable=False),
        sa.Column("tick", sa.BigInteger, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", "instance_id", name="pk_agents"),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name="fk_agents_instance_id_instances", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("timestamp", Timestamp, nullable=False),
        sa.Column("tick", sa.BigInteger, nullable=False),
        sa.Column("state_hash", sa.String(80), nullable=False),
        sa.Column("format_version", sa.Integer, nullable=False),
        sa.Column("codec", sa.String(16), nullable=False),
        sa.Column("dictionary_id", sa.BigInteger, nullable=True),
        sa.Column("base_id", BigId, nullable=True),
        sa.Column("raw_size", sa.BigInteger, nullable=False),
        sa.Column("stored_size", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name="fk_snapshots_instance_id_instances", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["base_id"], ["snapshots.id"], name="fk_snapshots_base_id_snapshots"),
        sa.UniqueConstraint("instance_id", "tick", name="uq_snapshots_instance_id_tick"),
    )
    op.create_index("ix_snapshots_instance_id_state_hash", "snapshots", ["instance_id", "state_hash"])
    op.create_table(
        "compression_dictionaries",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("dict_id", sa.BigInteger, nullable=False),
        sa.Column("codec", sa.String(16), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_compression_dictionaries"),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name="fk_compression_dictionaries_instance_id_instances",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("instance_id", "dict_id", name="uq_compression_dictionaries_instance_id_dict_id"),
    )
    op.create_table(
        "ritual_logs",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("ritual_data", Json, nullable=False),
        sa.Column("timestamp", Timestamp, nullable=False),
        sa.Column("tick", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ritual_logs"),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name="fk_ritual_logs_instance_id_instances", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_ritual_logs_instance_id_tick", "ritual_logs", ["instance_id", "tick"])
    op.create_table(
        "inputs",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("tick", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("body", Json, nullable=False),
        sa.Column("accepted_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inputs"),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name="fk_inputs_instance_id_instances", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("instance_id", "seq", name="uq_inputs_instance_id_seq"),
    )
    op.create_index("ix_inputs_instance_id_tick", "inputs", ["instance_id", "tick"])
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, nullable=False, autoincrement=True),
        sa.Column("timestamp", Timestamp, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=True),
        sa.Column("detail", Json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_instance_id", "audit_log", ["instance_id"])


def downgrade() -> None:
    for table in ("audit_log", "inputs", "ritual_logs", "compression_dictionaries", "snapshots", "agents", "instances"):
        op.drop_table(table)
