"""Tampering with the audit log behind the store's back, on SQLite and PostgreSQL: an edited, deleted, inserted or
reordered row, a tail cut off (with a signed head kept past it, in the database or only in the head file) and an
edited head file are each reported by ``verify_chain`` naming the first bad row; an untouched log verifies.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from soulfra.errors import HistoryIntegrityError
from soulfra.meta.keys import Signer, verify
from soulfra.security.audit import AuditRecorder
from soulfra.security.audit_verify import ChainReport, HeadVerifier, verify_chain
from soulfra.security.identity import Identity, process_identity
from soulfra.store.audit_chain import row_hash
from soulfra.store.ports import AuditEntry

from .conftest import SqlBackend

ROWS = 6
ALICE = Identity(name="alice", role="admin")


def _trusting(signer: Signer) -> HeadVerifier:
    def check(key_id: str, signature: bytes, data: bytes) -> bool:
        return key_id == signer.key_id and verify(signer.public_key, signature, data)

    return check


class Log:
    """A log of ``ROWS`` rows on the test's database, its head signed at the last row (in the database and a file)."""

    def __init__(self, backend: SqlBackend, tmp_path: Path) -> None:
        self.backend = backend
        self.store = backend.open()
        self.signer = Signer.generate()
        self.head_file = tmp_path / "audit-head.json"
        recorder = AuditRecorder(self.store, signer=self.signer, head_file=self.head_file, sign_every=3600)
        for n in range(1, ROWS + 1):
            who = ALICE if n % 2 else process_identity("freeze-timer")
            recorder.record(who, f"god.step_{n}", instance_id=f"w{n}", detail={"n": n}, source="127.0.0.1")
        assert recorder.sign_head() is not None
        self.entries = self.store.audit.read()

    def verify(self, *, head_file: bool = True) -> ChainReport:
        return verify_chain(
            self.store, head_file=self.head_file if head_file else None, trusted_key=_trusting(self.signer)
        )

    def sql(self, statement: str, **params: object) -> None:
        with self.backend.admin.begin() as conn:
            conn.execute(sa.text(statement), params)

    def move_head(self, entry: AuditEntry) -> None:
        """What a careful tamperer does too: point the recorded head at the row it wants to be last."""
        self.sql("UPDATE audit_chain SET last_id = :id, last_hash = :h WHERE id = 1", id=entry.id, h=entry.row_hash)

    def insert(self, entry: AuditEntry) -> None:
        self.sql(
            "INSERT INTO audit_log (id, timestamp, actor, action, instance_id, detail, role, source, request_id, "
            "outcome, instances, prev_hash, row_hash) VALUES (:id, :ts, :actor, :action, :iid, :detail, :role, "
            ":source, :rid, :outcome, :instances, :prev, :hash)",
            id=entry.id, ts=entry.timestamp, actor=entry.actor, action=entry.action, iid=entry.instance_id,
            detail=json.dumps(entry.detail), role=entry.role, source=entry.source, rid=entry.request_id,
            outcome=entry.outcome, instances=json.dumps(list(entry.instances)), prev=entry.prev_hash,
            hash=entry.row_hash,
        )  # fmt: skip


def _forged(id: int, after: AuditEntry) -> AuditEntry:
    """A row chained to ``after`` with a hash that fits it: all a tamperer without the key can make."""
    entry = AuditEntry(
        id=id, timestamp=after.timestamp, actor="mallory", role="admin", action="god.merge_instances",
        instance_id="w1", detail={}, outcome="ok", instances=("w1",), prev_hash=after.row_hash,
    )  # fmt: skip
    return replace(entry, row_hash=row_hash(**entry.hash_fields()))


@pytest.fixture
def log(sql_backend: SqlBackend, tmp_path: Path) -> Log:
    return Log(sql_backend, tmp_path)


def _bad(report: ChainReport, row: int, words: str) -> None:
    assert not report.ok, report.line()
    assert report.bad_row == row, report.line()
    assert words in report.line()
    with pytest.raises(HistoryIntegrityError, match=f"row {row}"):
        report.check()


def test_an_untouched_log_verifies(log: Log) -> None:
    report = log.verify()
    assert report.ok, report.line()
    assert (report.rows, report.head_id, report.head_hash) == (ROWS, ROWS, log.entries[-1].row_hash)
    assert report.signed is not None and report.signed.row_id == ROWS and report.signed.signature_checked
    assert report.line() == f"audit log verified: {ROWS} rows, head {log.entries[-1].row_hash} (signed at row {ROWS})"


def test_an_edited_row_is_named(log: Log) -> None:
    log.sql("UPDATE audit_log SET actor = 'mallory' WHERE id = 3")
    _bad(log.verify(), 3, "does not match its hash")


def test_an_edited_outcome_is_named(log: Log) -> None:
    log.sql("UPDATE audit_log SET outcome = 'ok', detail = :d WHERE id = 4", d=json.dumps({"n": 40}))
    _bad(log.verify(), 4, "does not match its hash")


def test_an_edited_row_with_its_hash_recomputed_breaks_the_next_link(log: Log) -> None:
    edited = replace(log.entries[1], actor="mallory")
    log.sql("UPDATE audit_log SET actor = 'mallory', row_hash = :h WHERE id = 2", h=row_hash(**edited.hash_fields()))
    _bad(log.verify(), 3, "does not follow row 2")


def test_a_deleted_row_is_named(log: Log) -> None:
    log.sql("DELETE FROM audit_log WHERE id = 2")
    _bad(log.verify(), 2, "is missing")


def test_a_deleted_row_with_the_rest_renumbered_is_named(log: Log) -> None:
    log.sql("DELETE FROM audit_log WHERE id = 2")
    for n in range(3, ROWS + 1):
        log.sql("UPDATE audit_log SET id = :new WHERE id = :old", new=n - 1, old=n)
    log.move_head(log.entries[-1])
    _bad(log.verify(), 2, "was row 3")


def test_a_row_inserted_between_two_is_named(log: Log) -> None:
    for n in range(ROWS, 2, -1):  # make room at 3: the rows after it move along
        log.sql("UPDATE audit_log SET id = :new WHERE id = :old", new=n + 1, old=n)
    log.insert(_forged(3, log.entries[1]))
    _bad(log.verify(), 3, "was inserted")


def test_a_row_added_past_the_recorded_head_is_named(log: Log) -> None:
    log.insert(_forged(ROWS + 1, log.entries[-1]))
    _bad(log.verify(), ROWS + 1, "past the log's recorded head")


@pytest.mark.parametrize("how", ["ids", "contents"])
def test_reordered_rows_are_named(log: Log, how: str) -> None:
    if how == "ids":
        log.sql("UPDATE audit_log SET id = -1 WHERE id = 2")
        log.sql("UPDATE audit_log SET id = 2 WHERE id = 3")
        log.sql("UPDATE audit_log SET id = 3 WHERE id = -1")
    else:
        second, third = log.entries[1], log.entries[2]
        swap = "UPDATE audit_log SET actor = :a, action = :x, instance_id = :i, detail = :d WHERE id = :id"
        for target, source in ((second, third), (third, second)):
            detail = json.dumps(source.detail)
            log.sql(swap, a=source.actor, x=source.action, i=source.instance_id, d=detail, id=target.id)
    _bad(log.verify(), 2, "row 2")


def test_a_truncated_tail_is_caught_by_the_recorded_head(log: Log) -> None:
    log.sql("DELETE FROM audit_log WHERE id > 4")
    _bad(log.verify(), 5, "recorded head is row 6")


def test_a_truncated_tail_with_its_head_moved_is_caught_by_the_signed_head(log: Log) -> None:
    log.sql("DELETE FROM audit_log WHERE id > 4")
    log.move_head(log.entries[3])
    _bad(log.verify(head_file=False), 5, "signed at row 6")


def test_a_truncated_tail_with_the_database_heads_gone_is_caught_by_the_head_file(log: Log) -> None:
    log.sql("DELETE FROM audit_log WHERE id > 4")
    log.sql("DELETE FROM audit_heads")
    log.move_head(log.entries[3])
    report = log.verify()
    _bad(report, 5, "head file")
    assert log.verify(head_file=False).ok  # without the file, this tampering cannot be seen


def test_an_edited_head_file_is_reported(log: Log) -> None:
    kept = json.loads(log.head_file.read_text())
    log.head_file.write_text(json.dumps({**kept, "row_id": 4, "row_hash": log.entries[3].row_hash}))
    _bad(log.verify(), 4, "does not verify")


def test_a_head_signed_by_another_key_is_reported(log: Log) -> None:
    report = verify_chain(log.store, head_file=log.head_file, trusted_key=_trusting(Signer.generate()))
    _bad(report, 1, "does not verify")  # the recorder signed its first row too
