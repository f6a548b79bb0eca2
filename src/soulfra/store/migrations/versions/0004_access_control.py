"""Access control: API tokens, the audit log's hash chain (with who, from where, which request, the outcome), the
signed chain heads, and per-instance protocol rules. Rows already in the audit log are chained in their order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from soulfra.store.audit_chain import GENESIS, canonical_detail, row_hash

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)
Json = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=True))
        batch.add_column(sa.Column("source", sa.String(128), nullable=True))
        batch.add_column(sa.Column("request_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("outcome", sa.String(64), nullable=False, server_default="ok"))
        batch.add_column(sa.Column("instances", Json, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("row_hash", sa.String(64), nullable=False, server_default=""))
    op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("last_id", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_chain"),
    )
    op.create_table(
        "audit_heads",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False, autoincrement=True),
        sa.Column("row_id", sa.BigInteger, nullable=False),
        sa.Column("row_hash", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("signed_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_heads"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("instances", Json, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_table(
        "instance_rules",
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("rules", Json, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("instance_id", name="pk_instance_rules"),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name="fk_instance_rules_instance_id_instances", ondelete="CASCADE"
        ),
    )
    _chain_existing_rows()


def _chain_existing_rows() -> None:
    """Number the rows already logged 1, 2, 3... in their order and chain them, so the log verifies from its start."""
    conn = op.get_bind()
    log = sa.table(
        "audit_log", sa.column("id"), sa.column("timestamp", Timestamp), sa.column("actor"), sa.column("action"),
        sa.column("instance_id"), sa.column("detail", sa.JSON), sa.column("prev_hash"), sa.column("row_hash"),
    )  # fmt: skip
    rows = conn.execute(sa.select(log).order_by(log.c.id)).all()
    previous = GENESIS
    for place, row in enumerate(rows, start=1):
        detail = canonical_detail(dict(row.detail))
        digest = row_hash(
            id=place, timestamp=row.timestamp, actor=row.actor, role=None, source=None, request_id=None,
            action=row.action, instance_id=row.instance_id, instances=[], outcome="ok", detail=detail,
            prev_hash=previous,
        )  # fmt: skip
        conn.execute(
            log.update().where(log.c.id == row.id).values(id=place, detail=detail, prev_hash=previous, row_hash=digest)
        )
        previous = digest
    chain = sa.table("audit_chain", sa.column("id"), sa.column("last_id"), sa.column("last_hash"))
    conn.execute(chain.insert().values(id=1, last_id=len(rows), last_hash=previous))


def downgrade() -> None:
    op.drop_table("instance_rules")
    op.drop_table("api_tokens")
    op.drop_table("audit_heads")
    op.drop_table("audit_chain")
    with op.batch_alter_table("audit_log") as batch:
        for column in ("row_hash", "prev_hash", "instances", "outcome", "request_id", "source", "role"):
            batch.drop_column(column)
