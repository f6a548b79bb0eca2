"""The audit trail: every change, accepted or refused, recorded once, with who, from where, what, on which
instances, the outcome and the request it came in.

``AuditRecorder.acting`` opens the record of one action: what runs inside it (an API request, a god command, a
package apply) may ``refine`` it (``god.clone_instance``, the instances touched, the result); the row is written
once, when the outermost action ends, with ``ok`` or the error's code. An action opened inside another refines the
outer one instead of writing a row of its own, so a god command that came through the API is one row. The identity
of the action in progress is what ``current_identity`` gives the layers below (the puppet master checks it).

Rows form a hash chain in the store (``soulfra.store.audit_chain``); now and then the chain's head is signed with the
installation key and kept in the database and in a file outside it (``head_file``).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from soulfra.errors import OutputError, SoulfraError
from soulfra.offload import off_loop
from soulfra.security.identity import Identity
from soulfra.store.ports import AuditEntry, SignedHead, Store

__all__ = [
    "MAX_DETAIL_BYTES",
    "Action",
    "AuditRecorder",
    "HeadSigner",
    "adopted",
    "current_action",
    "current_identity",
    "head_bytes",
    "head_file_for",
]

log = logging.getLogger(__name__)

MAX_DETAIL_BYTES = 8192
SIGN_EVERY_S = 5.0  # the head is signed at most this often (and on close)


def head_bytes(row_id: int, row_hash: str) -> bytes:
    """What a signed head's signature covers."""
    return f"soulfra-audit-head\n{row_id}\n{row_hash}\n".encode()


class HeadSigner(Protocol):
    """What signs the chain's head: the installation key (``soulfra.meta.keys.Signer``)."""

    @property
    def key_id(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


@dataclass(slots=True)
class Action:
    """One action being recorded: who and how it came (fixed when it opens), and what it turns out to be."""

    identity: Identity
    action: str
    source: str | None
    request_id: str
    instance_id: str | None = None
    instances: set[str] = field(default_factory=set)
    detail: dict[str, Any] = field(default_factory=dict)
    outcome: str = "ok"
    done: bool = False  # ended (its row written or being written): tasks it started do not act inside it

    def refine(
        self,
        action: str | None = None,
        *,
        instance_id: str | None = None,
        instances: Sequence[str] = (),
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Say more about the action: its precise name, its subject, the instances it touched, its details."""
        if action is not None:
            self.action = action
        if instance_id is not None:
            self.instance_id = instance_id
            self.instances.add(instance_id)
        self.instances.update(instances)
        if detail:
            self.detail.update(detail)


_CURRENT: contextvars.ContextVar[Action | None] = contextvars.ContextVar("soulfra_audit_action", default=None)


def current_identity() -> Identity | None:
    """The identity of the action being recorded in this context, or None outside every action."""
    current = current_action()
    return None if current is None else current.identity


def current_action() -> Action | None:
    """The action in progress in this context. A task started inside an action (a freeze timer, a world's tick
    loop) keeps a copy of its context: once that action has ended, it is no longer in progress there."""
    current = _CURRENT.get()
    return None if current is None or current.done else current


@contextlib.contextmanager
def adopted(identity: Identity | None, request_id: object) -> Iterator[Action | None]:
    """Act inside an action another process opened and will write (a request the API sent over the bus): the block
    sees it as the action in progress, with that identity and request id, and nothing here writes its row; what the
    block adds to it (``Action.refine``) goes back with the reply. ``identity`` None: no action, the block acts as
    this process."""
    if identity is None:
        yield None
        return
    rid = request_id if isinstance(request_id, str) and 0 < len(request_id) <= 64 else uuid.uuid4().hex
    current = Action(identity=identity, action="", source=None, request_id=rid)  # named by what the block does
    reset = _CURRENT.set(current)
    try:
        yield current
    finally:
        _CURRENT.reset(reset)
        current.done = True


def _small(detail: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(detail, default=str, sort_keys=True)
    if len(text) > MAX_DETAIL_BYTES:
        return {"truncated": True, "size": len(text)}
    loaded: dict[str, Any] = json.loads(text)
    return loaded


class AuditRecorder:
    """The one way a change is audited. ``signer`` and ``head_file``: where the chain's head is signed and kept
    outside the database (both optional: without them the chain still links every row)."""

    def __init__(
        self,
        store: Store,
        *,
        signer: HeadSigner | None = None,
        head_file: Path | None = None,
        sign_every: float = SIGN_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.signer = signer
        self.head_file = head_file
        self.sign_every = sign_every
        self._clock = clock
        self._signed_at: float | None = None
        self._signing = threading.Lock()

    @contextlib.asynccontextmanager
    async def acting(
        self,
        identity: Identity,
        action: str,
        *,
        source: str | None = None,
        request_id: str | None = None,
        instance_id: str | None = None,
        instances: Sequence[str] = (),
        detail: dict[str, Any] | None = None,
    ) -> AsyncIterator[Action]:
        """Record ``action`` by ``identity`` once it ends (its outcome: ``ok``, or the code of the error that ended
        it, re-raised). Inside another action it refines that one instead."""
        own: Action | None = None
        try:
            with _entered(identity, action, source, request_id, instance_id, instances, detail) as (current, mine):
                own = current if mine else None
                yield current
        finally:
            if own is not None:
                await off_loop(self.write, own)

    @contextlib.contextmanager
    def recording(
        self,
        identity: Identity,
        action: str,
        *,
        instance_id: str | None = None,
        instances: Sequence[str] = (),
        detail: dict[str, Any] | None = None,
    ) -> Iterator[Action]:
        """``acting`` for synchronous code that runs outside an event loop (a CLI command working on a database):
        the row is written, blocking, when the action ends."""
        own: Action | None = None
        try:
            with _entered(identity, action, None, None, instance_id, instances, detail) as (current, mine):
                own = current if mine else None
                yield current
        finally:
            if own is not None:
                self.write(own)

    def write(self, action: Action) -> AuditEntry | None:
        """Write a finished action's row (and sign the head when it is time). A failure to write is logged, never
        raised: the change itself has happened, or has been refused, either way."""
        try:
            entry = self.store.audit.append(
                actor=action.identity.name, role=action.identity.role, source=action.source,
                request_id=action.request_id, action=action.action, instance_id=action.instance_id,
                instances=sorted(action.instances), outcome=action.outcome, detail=_small(action.detail),
            )  # fmt: skip
        except SoulfraError as exc:
            log.error("audit of %s by %s failed: %s", action.action, action.identity.name, exc.detail)
            return None
        if self.signer is not None and (self._signed_at is None or self._clock() - self._signed_at >= self.sign_every):
            self.sign_head()
        return entry

    def record(
        self,
        identity: Identity,
        action: str,
        *,
        instance_id: str | None = None,
        instances: Sequence[str] = (),
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> AuditEntry | None:
        """Write one row now, for a change made outside any action (blocking: call it off the loop)."""
        finished = Action(identity=identity, action=action, source=source, request_id=uuid.uuid4().hex)
        finished.refine(instance_id=instance_id, instances=instances, detail=detail)
        finished.outcome = outcome
        return self.write(finished)

    def sign_head(self) -> SignedHead | None:
        """Sign the chain's head as the database has it now; keep it in the database and in ``head_file``."""
        if self.signer is None:
            return None
        with self._signing:  # one at a time: the head file never goes back to an older head
            row_id, row_hash = self.store.audit.head()
            head = SignedHead(
                row_id=row_id, row_hash=row_hash, key_id=self.signer.key_id,
                signature=self.signer.sign(head_bytes(row_id, row_hash)).hex(), signed_at=datetime.now(UTC),
            )  # fmt: skip
            try:
                self.store.audit.save_head(head)
                if self.head_file is not None:
                    write_head_file(self.head_file, head)
            except (SoulfraError, OSError) as exc:
                log.error("keeping the audit chain's signed head failed: %s", getattr(exc, "detail", exc))
                return None
            self._signed_at = self._clock()
            return head


@contextlib.contextmanager
def _entered(
    identity: Identity,
    action: str,
    source: str | None,
    request_id: str | None,
    instance_id: str | None,
    instances: Sequence[str],
    detail: dict[str, Any] | None,
) -> Iterator[tuple[Action, bool]]:
    """The action in progress while the block runs, and whether it is this block's own (to be written when it
    ends) or an outer one it refined. Its outcome is the error that ends the block, if one does."""
    outer = current_action()
    if outer is not None:
        outer.refine(action, instance_id=instance_id, instances=instances, detail=detail)
        yield outer, False
        return
    current = _opened(identity, action, source, request_id, instance_id, instances, detail)
    reset = _CURRENT.set(current)
    try:
        yield current, True
    except BaseException as exc:
        _refused(current, exc)
        raise
    finally:
        _CURRENT.reset(reset)
        current.done = True


def _opened(
    identity: Identity,
    action: str,
    source: str | None,
    request_id: str | None,
    instance_id: str | None,
    instances: Sequence[str],
    detail: dict[str, Any] | None,
) -> Action:
    opened = Action(identity=identity, action=action, source=source, request_id=request_id or uuid.uuid4().hex)
    opened.refine(instance_id=instance_id, instances=instances, detail=detail)
    return opened


def _refused(action: Action, exc: BaseException) -> None:
    """Note what ended ``action`` early: a Soulfra error's code and detail, or that it failed or was cancelled."""
    if isinstance(exc, SoulfraError):
        action.outcome = exc.code
        action.detail.setdefault("error", exc.detail)
    else:
        action.outcome = "error" if isinstance(exc, Exception) else "cancelled"


HEAD_FILE_SUFFIX = ".audit-head.json"


def head_file_for(url: str) -> Path | None:
    """Where the signed head of the database at ``url`` is kept outside it: beside a SQLite file, named after it
    (``soulfra.db`` -> ``soulfra.db.audit-head.json``); None for a database that is no file (give one by hand)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if not parsed.get_backend_name().startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    database = Path(parsed.database).expanduser()
    return database.with_name(database.name + HEAD_FILE_SUFFIX)


def write_head_file(path: Path, head: SignedHead) -> None:
    """Replace ``path`` with ``head`` as JSON (owner-only, atomically: a crash leaves the old head or the new)."""
    body = {
        "row_id": head.row_id, "row_hash": head.row_hash, "key_id": head.key_id, "signature": head.signature,
        "signed_at": head.signed_at.isoformat(),
    }  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # each writer its own
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(body, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        raise OutputError(f"cannot write the audit head file {path}: {exc.strerror or exc}") from None
