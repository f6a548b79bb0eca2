"""The AuditLog's contract, run on every backend: entries read back oldest first, and by instance."""

from __future__ import annotations

from soulfra.store import Store

from .support import _is_utc

# -- AuditLog --------------------------------------------------------------------------------------------------


def test_audit_entries_read_back_oldest_first_and_by_instance(store: Store) -> None:
    detail = {"agents": 3, "nested": {"list": [1, "two", None, True]}, "text": "ünïcode"}
    store.audit.append(actor="cli", action="instance.create", instance_id="a", detail=detail)
    store.audit.append(actor="api", action="db.upgrade", instance_id=None, detail={})
    store.audit.append(actor="cli", action="instance.step", instance_id="b", detail={"ticks": 10})
    store.audit.append(actor="op", action="instance.whisper", instance_id="a", detail={"text": "hi"})

    entries = store.audit.read()
    assert [(e.actor, e.action, e.instance_id) for e in entries] == [
        ("cli", "instance.create", "a"),
        ("api", "db.upgrade", None),
        ("cli", "instance.step", "b"),
        ("op", "instance.whisper", "a"),
    ]
    assert entries[0].detail == detail
    assert [e.id for e in entries] == sorted(e.id for e in entries)
    assert all(_is_utc(e.timestamp) for e in entries)
    assert [e.action for e in store.audit.read(instance_id="a")] == ["instance.create", "instance.whisper"]
    assert store.audit.read(instance_id="nobody") == []
