"""Verifying the audit trail: the hash chain from its first row to its recorded head, and the signed heads.

``verify_chain`` walks the rows in order and names the first that does not hold: one edited (its hash no longer
matches its fields), one missing (a gap in the numbering), one inserted, moved or reordered (its hash, or its link to
the row before, does not fit), a row past the head the database records, and a tail cut off (a signed head, in the
database or in the head file kept outside it, names a row past the end or a hash the row at that place does not
have). Signatures are checked with the key it is given: this module never reads the installation's key itself.
Rows appended after the latest signed head are only as trustworthy as the database they are in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from soulfra.errors import HistoryIntegrityError
from soulfra.security.audit import head_bytes
from soulfra.store.audit_chain import GENESIS, row_hash
from soulfra.store.ports import AuditEntry, SignedHead, Store

__all__ = ["ChainReport", "HeadCheck", "HeadVerifier", "read_head_file", "verify_chain"]

# Whether ``signature`` is a trusted key's signature of ``data``, the key named by ``key_id``.
HeadVerifier = Callable[[str, bytes, bytes], bool]

PAGE = 5000  # rows read at a time
NEARBY = 16  # places either side a moved row is looked for, to say what moved it
RETRIES = 5  # reads of the log while rows are being appended, before verifying what was read


@dataclass(frozen=True, slots=True, kw_only=True)
class HeadCheck:
    """A signed head as verification found it: where it was kept (``database`` or the head file), and whether its
    signature was checked and held."""

    where: str
    row_id: int
    row_hash: str
    signed_at: datetime
    signature_checked: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    """What ``verify_chain`` found: how many rows it checked, the chain's head (its last row's id and hash), the
    latest signed head it checked, and the first bad row with what is wrong with it (None when the log holds)."""

    rows: int
    head_id: int
    head_hash: str
    signed: HeadCheck | None
    bad_row: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        """One line for a person: what verified, or the first bad row and what is wrong."""
        if self.problem is not None:
            return f"audit log row {self.bad_row}: {self.problem}"
        signed = "no signed head" if self.signed is None else f"signed at row {self.signed.row_id}"
        if self.signed is not None and not self.signed.signature_checked:
            signed += ", signature not checked: no installation key"
        return f"audit log verified: {self.rows} rows, head {self.head_hash} ({signed})"

    def to_json(self) -> dict[str, Any]:
        signed = None
        if self.signed is not None:
            signed = {
                "where": self.signed.where, "row_id": self.signed.row_id, "row_hash": self.signed.row_hash,
                "signed_at": self.signed.signed_at.isoformat(), "signature_checked": self.signed.signature_checked,
            }  # fmt: skip
        return {
            "ok": self.ok, "rows": self.rows, "head_id": self.head_id, "head_hash": self.head_hash, "signed": signed,
            "bad_row": self.bad_row, "problem": self.problem,
        }  # fmt: skip

    def check(self) -> ChainReport:
        """This report, or ``HistoryIntegrityError`` naming the first bad row."""
        if self.problem is not None:
            raise HistoryIntegrityError(self.line())
        return self


@dataclass(frozen=True, slots=True)
class _Problem:
    row: int
    what: str


def read_head_file(path: Path) -> SignedHead | None:
    """The signed head kept in ``path`` (``write_head_file``'s JSON), None when there is no such file.
    ``HistoryIntegrityError`` when the file is there but is not a signed head."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HistoryIntegrityError(f"cannot read the audit head file {path}: {exc.strerror or exc}") from None
    try:
        body = json.loads(text)
        return SignedHead(
            row_id=int(body["row_id"]), row_hash=str(body["row_hash"]), key_id=str(body["key_id"]),
            signature=str(body["signature"]), signed_at=datetime.fromisoformat(str(body["signed_at"])),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        raise HistoryIntegrityError(f"the audit head file {path} is not a signed head: {exc}") from None


def verify_chain(
    store: Store, *, head_file: Path | None = None, trusted_key: HeadVerifier | None = None
) -> ChainReport:
    """Verify the audit log of ``store``: every row chained to the one before, the head the database records, and
    every signed head (those in the database and the one in ``head_file``), whose signatures ``trusted_key`` checks
    (None: their places are checked, their signatures are not). Never raises for a broken log: the report says."""
    for _ in range(RETRIES):  # rows appended while reading move the head: read again
        recorded = store.audit.head()
        hashes, problem = _walk(_rows(store))
        if store.audit.head() == recorded:
            break
    rows = len(hashes)
    head_hash = hashes[-1] if hashes else GENESIS
    heads = [("database", head) for head in store.audit.signed_heads()]
    if head_file is not None:
        kept = read_head_file(head_file)
        if kept is not None:
            heads.append((f"head file {head_file}", kept))
    latest = _latest(heads, checked=trusted_key is not None)
    if problem is None:
        problem = _recorded_head(recorded, rows, head_hash)
    if problem is None:
        problem = _signed_heads(heads, hashes, trusted_key)
    return ChainReport(
        rows=rows, head_id=rows, head_hash=head_hash, signed=latest,
        bad_row=None if problem is None else problem.row, problem=None if problem is None else problem.what,
    )  # fmt: skip


def _rows(store: Store) -> Iterator[AuditEntry]:
    after = 0
    while True:
        page = store.audit.read(after_id=after, limit=PAGE)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].id


def _walk(entries: Iterator[AuditEntry]) -> tuple[list[str], _Problem | None]:
    """The hashes of the rows that hold, in order (row ``n`` at ``n - 1``), and the first that does not."""
    hashes: list[str] = []
    previous = GENESIS
    for entry in entries:
        expected = len(hashes) + 1
        if entry.id != expected:
            return hashes, _Problem(expected, f"is missing: the log goes from row {expected - 1} to row {entry.id}")
        if row_hash(**entry.hash_fields()) != entry.row_hash:
            return hashes, _mismatch(entry, hashes)
        if entry.prev_hash != previous:
            return hashes, _Problem(
                entry.id, f"does not follow row {entry.id - 1}: a row was inserted, removed or reordered before it"
            )
        hashes.append(entry.row_hash)
        previous = entry.row_hash
    return hashes, None


def _mismatch(entry: AuditEntry, hashes: list[str]) -> _Problem:
    """A row whose hash does not fit its fields: edited, or a row numbered otherwise before rows were inserted or
    removed ahead of it (its hash fits another place: the one its link to the row before names, or one nearby)."""
    fields = entry.hash_fields()
    if entry.prev_hash == GENESIS or entry.prev_hash in hashes:
        places = [1 if entry.prev_hash == GENESIS else hashes.index(entry.prev_hash) + 2]
    else:
        places = [entry.id + step for step in range(-NEARBY, NEARBY + 1) if step and entry.id + step > 0]
    for was in places:
        if was != entry.id and row_hash(**{**fields, "id": was}) == entry.row_hash:
            if was < entry.id:
                return _Problem(was, f"was inserted: the row now numbered {entry.id} was row {was} before it")
            return _Problem(entry.id, f"was row {was}: rows before it were removed and the rest renumbered")
    return _Problem(entry.id, "does not match its hash: it was edited, or moved from another place")


def _recorded_head(recorded: tuple[int, str], rows: int, head_hash: str) -> _Problem | None:
    """Whether the head the database records (``audit_chain``) is the last row."""
    head_id, recorded_hash = recorded
    if head_id > rows:
        return _Problem(rows + 1, f"is missing: the log ends at row {rows} but its recorded head is row {head_id}")
    if head_id < rows:
        return _Problem(head_id + 1, f"is past the log's recorded head (row {head_id}): it was added behind its back")
    if recorded_hash != head_hash:
        return _Problem(rows, "is not the log's recorded head: its hash differs from the one recorded")
    return None


def _signed_heads(
    heads: list[tuple[str, SignedHead]], hashes: list[str], trusted_key: HeadVerifier | None
) -> _Problem | None:
    """The first problem any signed head shows: a signature that does not verify, a row past the end (the tail was
    cut off) or a row whose hash is not the signed one."""
    found: list[_Problem] = []
    for where, head in heads:
        if trusted_key is not None and not _signed(head, trusted_key):
            found.append(_Problem(head.row_id, f"is named by a signed head in the {where} whose signature does not "
                                               f"verify with this installation's key"))  # fmt: skip
        elif head.row_id > len(hashes):
            found.append(_Problem(len(hashes) + 1, f"is missing: the log ends at row {len(hashes)} but the {where} "
                                                   f"holds a head signed at row {head.row_id}"))  # fmt: skip
        elif head.row_id > 0 and hashes[head.row_id - 1] != head.row_hash:
            found.append(_Problem(head.row_id, f"is not the row the {where} signed: rows up to it were changed"))
        elif head.row_id == 0 and head.row_hash != GENESIS:
            found.append(_Problem(0, f"the {where} holds a head of an empty log with a hash"))
    return min(found, key=lambda p: p.row) if found else None


def _signed(head: SignedHead, trusted_key: HeadVerifier) -> bool:
    try:
        signature = bytes.fromhex(head.signature)
    except ValueError:
        return False
    return trusted_key(head.key_id, signature, head_bytes(head.row_id, head.row_hash))


def _latest(heads: list[tuple[str, SignedHead]], *, checked: bool) -> HeadCheck | None:
    if not heads:
        return None
    where, head = max(heads, key=lambda pair: (pair[1].row_id, pair[1].signed_at))
    return HeadCheck(
        where=where, row_id=head.row_id, row_hash=head.row_hash, signed_at=head.signed_at, signature_checked=checked
    )
