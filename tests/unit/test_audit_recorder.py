"""The audit recorder: one row per action, written when it ends with its outcome; actions opened inside another
refine it instead of writing; the identity in progress is visible below; the chain's head is signed and kept in a
file outside the database."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from soulfra.errors import LicenceError
from soulfra.meta.keys import Signer, verify
from soulfra.security.audit import AuditRecorder, current_identity, head_bytes
from soulfra.security.identity import Identity, process_identity
from soulfra.store import InMemoryStore

pytestmark = pytest.mark.anyio

ALICE = Identity(name="alice", role="puppet-master")


async def test_an_action_is_one_row_with_its_outcome_and_what_ran_inside_refined_it() -> None:
    store = InMemoryStore()
    recorder = AuditRecorder(store)
    async with recorder.acting(ALICE, "POST /api/god/clone", source="127.0.0.1", request_id="r1") as action:
        assert current_identity() == ALICE
        async with recorder.acting(process_identity("puppet-master"), "god.clone_instance", instances=["a", "b"]):
            assert current_identity() == ALICE  # the outer action's identity, not the inner one's
        action.refine(instance_id="b", detail={"tick": 4})
    assert current_identity() is None
    (entry,) = store.audit.read()
    assert (entry.actor, entry.role, entry.source, entry.request_id) == ("alice", "puppet-master", "127.0.0.1", "r1")
    assert (entry.action, entry.instance_id, entry.instances, entry.outcome) == (
        "god.clone_instance", "b", ("a", "b"), "ok",
    )  # fmt: skip
    assert entry.detail == {"tick": 4}


async def test_a_refused_action_is_recorded_with_the_refusal() -> None:
    store = InMemoryStore()
    recorder = AuditRecorder(store)
    with pytest.raises(LicenceError):
        async with recorder.acting(ALICE, "god.reality_fork", instance_id="a"):
            raise LicenceError("the licence of a does not allow forks")
    (entry,) = store.audit.read()
    assert entry.outcome == "licence"
    assert entry.detail == {"error": "the licence of a does not allow forks"}


async def test_the_head_is_signed_into_the_database_and_a_file(tmp_path: Path) -> None:
    store = InMemoryStore()
    signer = Signer.generate()
    head_file = tmp_path / "audit" / "head.json"
    recorder = AuditRecorder(store, signer=signer, head_file=head_file, sign_every=3600)
    async with recorder.acting(ALICE, "a"):
        pass
    async with recorder.acting(ALICE, "b"):
        pass  # within sign_every of the first: not signed again
    (head,) = store.audit.signed_heads()
    assert (head.row_id, head.row_hash) == (1, store.audit.read()[0].row_hash)
    assert verify(signer.public_key, bytes.fromhex(head.signature), head_bytes(head.row_id, head.row_hash))
    kept = json.loads(head_file.read_text())
    assert (kept["row_id"], kept["signature"]) == (1, head.signature)
    assert head_file.stat().st_mode & 0o777 == 0o600
    assert recorder.sign_head() is not None
    assert [h.row_id for h in store.audit.signed_heads()] == [1, 2]


async def test_a_task_started_inside_an_action_acts_on_its_own_once_the_action_ended() -> None:
    store = InMemoryStore()
    recorder = AuditRecorder(store)
    started = anyio.Event()
    go_on = anyio.Event()

    async def later() -> None:  # a freeze timer: it keeps a copy of the context it was started in
        started.set()
        await go_on.wait()
        assert current_identity() is None
        async with recorder.acting(process_identity("freeze-timer"), "god.thaw_time"):
            pass

    async with anyio.create_task_group() as tasks:
        async with recorder.acting(ALICE, "god.freeze_time"):
            tasks.start_soon(later)
            await started.wait()
        go_on.set()
    assert [(e.actor, e.action) for e in store.audit.read()] == [
        ("alice", "god.freeze_time"), ("freeze-timer", "god.thaw_time"),
    ]  # fmt: skip


def test_synchronous_code_records_its_action_the_same_way() -> None:
    store = InMemoryStore()
    recorder = AuditRecorder(store)
    with recorder.recording(ALICE, "package.import", detail={"package": "p.soulpkg"}) as action:
        assert current_identity() == ALICE
        action.refine(instances=["x"])
    with pytest.raises(LicenceError), recorder.recording(ALICE, "package.import"):
        raise LicenceError("no imports")
    first, second = store.audit.read()
    assert (first.instances, first.outcome, first.detail) == (("x",), "ok", {"package": "p.soulpkg"})
    assert (second.outcome, second.detail) == ("licence", {"error": "no imports"})
