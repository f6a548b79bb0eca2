"""The access-control ports on every backend: the audit log as a hash chain (one at a time across stores, filtered
reads, signed heads), API tokens by name and hash, and per-instance protocol rules; and the migration that chains
the rows an older database already holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from soulfra.errors import ConflictError, NotFoundError
from soulfra.security.audit_verify import verify_chain
from soulfra.store import SqlStore, Store, make_engine
from soulfra.store.audit_chain import GENESIS, canonical_detail, row_hash
from soulfra.store.ports import SignedHead, TokenRecord

from .support import make_record


def _chain_ok(store: Store) -> bool:
    previous = GENESIS
    for place, entry in enumerate(store.audit.read(), start=1):
        if entry.id != place or entry.prev_hash != previous or row_hash(**entry.hash_fields()) != entry.row_hash:
            return False
        previous = entry.row_hash
    return store.audit.head() == ((place, previous) if previous != GENESIS else (0, GENESIS))


# -- the audit chain -------------------------------------------------------------------------------------------


def test_rows_are_numbered_and_chained_with_every_field(store: Store) -> None:
    assert store.audit.head() == (0, GENESIS)
    first = store.audit.append(actor="cli", action="instance.create", instance_id="a", detail={"agents": 3})
    second = store.audit.append(
        actor="alice", role="operator", source="127.0.0.1", request_id="r-1", action="api.whisper", instance_id="a",
        instances=["b", "a", "b"], outcome="forbidden", detail={"text": "hi", "big": 1e300, "zero": -0.0},
    )  # fmt: skip
    assert (first.id, first.prev_hash) == (1, GENESIS)
    assert (second.id, second.prev_hash) == (2, first.row_hash)
    assert second.instances == ("a", "b")
    assert store.audit.head() == (2, second.row_hash)
    assert store.audit.read() == [first, second]  # read back exactly as appended, hashes and all
    assert _chain_ok(store)


def test_detail_is_kept_as_every_database_gives_it_back(store: Store) -> None:
    detail = {"when": datetime(2026, 1, 1, tzinfo=UTC), "huge": 2.0**60, "neg_zero": -0.0, "n": [1, 2.5, None]}
    entry = store.audit.append(actor="t", action="x", instance_id=None, detail=detail)
    assert entry.detail == canonical_detail(detail)
    assert entry.detail["huge"] == 2**60 and isinstance(entry.detail["huge"], int)
    assert store.audit.read()[0].detail == entry.detail
    assert _chain_ok(store)


def test_reads_filter_by_instance_actor_action_outcome_and_page(store: Store) -> None:
    store.audit.append(actor="alice", action="api.whisper", instance_id="a", detail={})
    store.audit.append(actor="bob", action="god.clone_instance", instance_id="b", instances=["a", "b"], detail={})
    store.audit.append(actor="alice", action="god.merge_instances", instance_id="c", outcome="conflict", detail={})
    store.audit.append(actor="bob", action="api.pause", instance_id=None, detail={})
    assert [e.id for e in store.audit.read(instance_id="a")] == [1, 2]  # named as the subject or among instances
    assert [e.id for e in store.audit.read(actor="alice")] == [1, 3]
    assert [e.id for e in store.audit.read(action="god.")] == [2, 3]
    assert [e.id for e in store.audit.read(action="api.pause")] == [4]
    assert [e.id for e in store.audit.read(outcome="conflict")] == [3]
    assert [e.id for e in store.audit.read(after_id=1, limit=2)] == [2, 3]
    assert [e.id for e in store.audit.read(instance_id="a", limit=1)] == [1]


def test_appends_from_many_stores_at_once_make_one_chain(reopen: Callable[[], Store]) -> None:
    stores = [reopen() for _ in range(4)]
    errors: list[BaseException] = []

    def write(store: Store, n: int) -> None:
        try:
            for i in range(15):
                store.audit.append(actor=f"s{n}", action="x", instance_id=None, detail={"i": i})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(stores[0].audit.read()) == 60
    assert _chain_ok(stores[0])


def test_an_append_rolled_back_leaves_the_chain_as_it_was(store: Store) -> None:
    store.audit.append(actor="t", action="kept", instance_id=None, detail={})

    def undone() -> None:
        with store.transaction():
            store.audit.append(actor="t", action="undone", instance_id=None, detail={})
            raise RuntimeError

    with pytest.raises(RuntimeError):
        undone()
    after = store.audit.append(actor="t", action="next", instance_id=None, detail={})
    assert after.id == 2
    assert [e.action for e in store.audit.read()] == ["kept", "next"]
    assert _chain_ok(store)


def test_signed_heads_are_kept_in_order(store: Store) -> None:
    now = datetime.now(UTC)
    heads = [
        SignedHead(row_id=i, row_hash=f"{i:064x}", key_id="k" * 16, signature="ab" * 64, signed_at=now) for i in (1, 5)
    ]
    for head in heads:
        store.audit.save_head(head)
    assert [(h.row_id, h.row_hash, h.key_id, h.signature) for h in store.audit.signed_heads()] == [
        (h.row_id, h.row_hash, h.key_id, h.signature) for h in heads
    ]


# -- tokens ----------------------------------------------------------------------------------------------------


def _token(name: str, digest: str, **extra: object) -> TokenRecord:
    now = datetime.now(UTC).replace(microsecond=0)
    return TokenRecord(name=name, role="operator", token_hash=digest, created_at=now, created_by="admin", **extra)  # type: ignore[arg-type]


def test_tokens_by_name_and_hash_and_in_name_order(store: Store) -> None:
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    scoped = store.tokens.create(_token("zed", "1" * 64, instances=("a", "b"), expires_at=later))
    plain = store.tokens.create(_token("amy", "2" * 64))
    assert store.tokens.get("zed") == scoped
    assert store.tokens.by_hash("2" * 64) == plain
    assert store.tokens.by_hash("3" * 64) is None
    assert [t.name for t in store.tokens.list_tokens()] == ["amy", "zed"]
    assert store.tokens.get("zed").instances == ("a", "b") and store.tokens.get("amy").instances is None
    with pytest.raises(NotFoundError, match="nobody"):
        store.tokens.get("nobody")


def test_a_live_name_or_hash_cannot_be_taken_but_a_revoked_name_can(store: Store) -> None:
    store.tokens.create(_token("amy", "1" * 64))
    with pytest.raises(ConflictError, match="amy"):
        store.tokens.create(_token("amy", "2" * 64))
    with pytest.raises(ConflictError, match="hash"):
        store.tokens.create(_token("bob", "1" * 64))
    revoked = store.tokens.revoke("amy", datetime.now(UTC))
    assert revoked.revoked_at is not None
    assert store.tokens.by_hash("1" * 64) == revoked  # still found: the caller refuses it
    with pytest.raises(NotFoundError):
        store.tokens.revoke("amy", datetime.now(UTC))
    again = store.tokens.create(_token("amy", "2" * 64))
    assert store.tokens.get("amy") == again and store.tokens.by_hash("1" * 64) is None


# -- per-instance rules ----------------------------------------------------------------------------------------


def test_rules_are_set_per_instance_and_go_with_it(store: Store) -> None:
    store.instances.create(make_record("a"))
    store.instances.create(make_record("b"))
    assert store.instances.rules("a") is None
    store.instances.set_rules("a", {"licence": {"fork": False}})
    store.instances.set_rules("a", {"licence": {"fork": True, "max_forks": 2}})
    assert store.instances.rules("a") == {"licence": {"fork": True, "max_forks": 2}}
    assert store.instances.rules("b") is None
    with pytest.raises(NotFoundError):
        store.instances.set_rules("nobody", {})
    store.instances.delete("a")
    with pytest.raises(NotFoundError):
        store.instances.rules("a")


# -- migration -------------------------------------------------------------------------------------------------


def test_the_migration_chains_the_rows_an_older_database_holds(tmp_path: Path) -> None:
    from alembic import command  # noqa: PLC0415

    from soulfra.store.database import _alembic_config  # noqa: PLC0415

    url = f"sqlite:///{tmp_path}/old.db"
    engine = make_engine(url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0003")
        for n, action in ((7, "instance.create"), (9, "god.clone_instance")):
            conn.execute(
                sa.text("INSERT INTO audit_log (id, timestamp, actor, action, instance_id, detail) "
                        "VALUES (:id, :ts, 'old', :action, 'a', :detail)"),
                {"id": n, "ts": f"2026-01-0{n % 10} 00:00:00.000000", "action": action, "detail": '{"n": 1}'},
            )  # fmt: skip
    engine.dispose()
    store = SqlStore.open(url)
    try:
        assert [(e.id, e.action) for e in store.audit.read()] == [(1, "instance.create"), (2, "god.clone_instance")]
        assert _chain_ok(store)
        assert store.audit.append(actor="new", action="x", instance_id=None, detail={}).id == 3
        assert _chain_ok(store)
        assert verify_chain(store).line().startswith("audit log verified: 3 rows")  # `soulfra audit verify` agrees
    finally:
        store.close()
