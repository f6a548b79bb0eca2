"""The storage schema, as SQLAlchemy Core tables: the same on SQLite and PostgreSQL (JSONB there).

The seed's tables keep their names and columns (``agents``, ``snapshots``, ``ritual_logs``), extended with what a
deterministic world needs: ticks, state hashes, codecs, sizes and lineage. Migrations in ``migrations/`` build
exactly this; a test compares the two.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("seed", sa.String(20), nullable=False),  # decimal text: seeds span 0..2**64-1
    sa.Column("genesis_hash", sa.String(80), nullable=False),
    sa.Column("world", Json, nullable=False),  # how the world was made: spec name, loop length, agent count
    sa.Column("parent_id", sa.String(64), sa.ForeignKey("instances.id"), nullable=True),
    sa.Column("fork_tick", sa.BigInteger, nullable=True),
    sa.Column("merge_parent_id", sa.String(64), sa.ForeignKey("instances.id"), nullable=True),
    sa.Column("head_tick", sa.BigInteger, nullable=False),  # the last group-committed tick
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),  # active, frozen or abandoned
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Index(None, "seed"),
)

# Cross-instance communication: agents of two linked instances may whisper and post to each other (a < b).
instance_links = sa.Table(
    "instance_links",
    metadata,
    sa.Column("a", sa.String(64), sa.ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("b", sa.String(64), sa.ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("created_at", Timestamp, nullable=False),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("instance_id", sa.String(64), sa.ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("agent_type", sa.String(32), nullable=False),
    sa.Column("personality", Json, nullable=False),
    sa.Column("state", Json, nullable=False),
    sa.Column("tick", sa.BigInteger, nullable=False),  # the tick ``state`` describes
    sa.Column("created_at", Timestamp, nullable=False),
)

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("instance_id", sa.String(64), sa.ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("timestamp", Timestamp, nullable=False),
    sa.Column("tick", sa.BigInteger, nullable=False),
    sa.Column("state_hash", sa.String(80), nullable=False),
    sa.Column("format_version", sa.Integer, nullable=False),
    sa.Column("codec", sa.String(16), nullable=False),
    sa.Column("dictionary_id", sa.BigInteger, nullable=True),  # a trained dictionary (compression_dictionaries)
    sa.Column("base_id", BigId, sa.ForeignKey("snapshots.id"), nullable=True),  # a keyframe this one is a delta of
    sa.Column("raw_size", sa.BigInteger, nullable=False),
    sa.Column("stored_size", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("instance_id", "tick"),
    sa.Index(None, "instance_id", "state_hash"),
)

compression_dictionaries = sa.Table(
    "compression_dictionaries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("instance_id", sa.String(64), sa.ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
    sa.Column("dict_id", sa.BigInteger, nullable=False),
    sa.Column("codec", sa.String(16), nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("instance_id", "dict_id"),
)

ritual_logs = sa.Table(
    "ritual_logs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("instance_id", sa.String(64), sa.ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
    sa.Column("ritual_data", Json, nullable=False),  # the event, as ``event_to_json`` gives it
    sa.Column("timestamp", Timestamp, nullable=False),
    sa.Column("tick", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Index(None, "instance_id", "tick"),
)

inputs = sa.Table(
    "inputs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("instance_id", sa.String(64), sa.ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),  # 1, 2, 3... per instance: the order inputs apply in
    sa.Column("tick", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("body", Json, nullable=False),  # as ``input_to_json`` gives it
    sa.Column("accepted_at", Timestamp, nullable=False),
    sa.UniqueConstraint("instance_id", "seq"),
    sa.Index(None, "instance_id", "tick"),
)

# Every change, accepted or refused, by whom. Rows form a hash chain (``soulfra.store.audit_chain``): ``id`` is the
# row's place in it (1, 2, 3... with no gaps), ``row_hash`` commits to the row and to ``prev_hash``, the hash of the
# row before. ``audit_chain`` holds the chain's head, updated in the same transaction as each row it adds: the lock
# that makes appends one at a time across processes.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("timestamp", Timestamp, nullable=False),
    sa.Column("actor", sa.String(100), nullable=False),  # the identity: a token's name, or a process's own name
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("instance_id", sa.String(64), nullable=True),
    sa.Column("detail", Json, nullable=False),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("source", sa.String(128), nullable=True),  # the client's address, or the process that acted
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("outcome", sa.String(64), nullable=False, server_default="ok"),  # ok, or the refusal's error code
    sa.Column("instances", Json, nullable=False, server_default="[]"),  # every instance the change touched
    sa.Column("prev_hash", sa.String(64), nullable=False, server_default=""),
    sa.Column("row_hash", sa.String(64), nullable=False, server_default=""),
    sa.Index(None, "instance_id"),
)

audit_chain = sa.Table(
    "audit_chain",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1: one chain per database
    sa.Column("last_id", sa.BigInteger, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
)

# The chain's head as the installation key signed it, now and then (the latest is also kept outside the database).
audit_heads = sa.Table(
    "audit_heads",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("row_id", sa.BigInteger, nullable=False),
    sa.Column("row_hash", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("signature", sa.String(128), nullable=False),  # Ed25519, hex
    sa.Column("signed_at", Timestamp, nullable=False),
)

# API tokens: only each one's SHA-256 is kept. A revoked token keeps its row (the audit log names it) until a new
# token takes its name.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("instances", Json, nullable=True),  # the instances it may see; NULL: all of them
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=True),
    sa.Column("revoked_at", Timestamp, nullable=True),
    sa.Column("created_by", sa.String(100), nullable=False),
)

# Dashboard sessions, shared by every API process: the SHA-256 of the session id (the cookie's value is never
# stored, as a token is not) and the hash of the token it signed in with (``api_tokens.token_hash``, not a foreign
# key: a token's row may be replaced, its sessions end when it is revoked). The CSRF token is derived from the
# session id (``soulfra.security.sessions``), so nothing of it is stored either. ``expires_at`` is the absolute end;
# ``last_seen_at`` (moved on at most once a minute) gives the idle one.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("last_seen_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Index(None, "token_hash"),
    sa.Index(None, "expires_at"),
    sa.Index(None, "last_seen_at"),
)

# The protocol rules an admin set for one instance (``RuleSet.to_json``); an instance without a row has the defaults.
instance_rules = sa.Table(
    "instance_rules",
    metadata,
    sa.Column("instance_id", sa.String(64), sa.ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("rules", Json, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

# One writer per instance: the lease of each instance (or of the server, key ``:puppet-master``) names its holder.
# ``epoch`` grows with every takeover; each write of the holder checks it, so a writer that lost the lease cannot
# commit. ``owner`` is the holder's liveness token (a lock that dies with it); NULL once released.
instance_leases = sa.Table(
    "instance_leases",
    metadata,
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("owner", sa.String(40), nullable=True),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("acquired_at", Timestamp, nullable=False),
)

# The lease log: one row per epoch of every writer lease, added in the transaction that takes the epoch and ended once,
# in the transaction that releases it (``released``) or takes it over (``taken_over``, its holder's liveness lock gone).
# ``last_tick`` is the instance's committed head when the epoch ended. Rows are never deleted or changed otherwise.
lease_log = sa.Table(
    "lease_log",
    metadata,
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("epoch", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("owner", sa.String(40), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("acquired_at", Timestamp, nullable=False),
    sa.Column("ended", sa.String(16), nullable=True),
    sa.Column("ended_at", Timestamp, nullable=True),
    sa.Column("last_tick", sa.BigInteger, nullable=True),
)
