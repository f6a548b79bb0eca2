"""Read-only operations routes for the dashboard's audit and health views. ``GET /api/audit/verify`` (admin): the
audit log's hash chain and signed heads checked as ``soulfra audit verify`` checks them, with the key this server
signs heads with; it never changes the log and never signs a head itself. ``GET /api/leases`` (viewer): who holds
each instance's writer lease (and the server's own), as the store records it; it never takes or releases one.

``audit_watch`` verifies the log the same way in the background, at start and then hourly
(``AUDIT_VERIFY_EVERY_S``), so that ``soulfra_audit_last_verify_ok`` (and the alert on it) says how the log stands
without anyone asking."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request

from soulfra.api.access import identity_of
from soulfra.api.gateway import Gateway
from soulfra.api.models import AuditVerification, LeaseList
from soulfra.errors import HistoryIntegrityError, SoulfraError
from soulfra.meta.keys import Signer, verify
from soulfra.metrics import Metrics
from soulfra.offload import off_loop
from soulfra.security.audit import AuditRecorder
from soulfra.security.audit_verify import ChainReport, HeadVerifier, verify_chain
from soulfra.store.lease_rules import PUPPET_MASTER_LEASE
from soulfra.store.ports import LeaseInfo, Store

__all__ = ["AUDIT_VERIFY_EVERY_S", "audit_watch", "operations_router", "verify_audit_log"]

log = logging.getLogger(__name__)

# The whole chain is walked each time (that is what catches an old row edited): 40-55 us of one worker thread a row
# (measured: 50,000 rows on SQLite, 2.0-2.7 s, on the 2-core test machine), so hourly costs ~1.4% of a core at a
# million rows. A failure shows within the hour; GET /api/audit/verify (or ``soulfra audit verify``) checks at once.
AUDIT_VERIFY_EVERY_S = 3600.0


def _trusting(recorder: AuditRecorder) -> HeadVerifier | None:
    """What checks a signed head: the public half of the key this server signs with (None: it signs none, so the
    heads' places are checked and their signatures are not, as the CLI does without an installation key)."""
    signer = recorder.signer
    if not isinstance(signer, Signer):
        return None
    public = signer.public_key

    def check(key_id: str, signature: bytes, data: bytes) -> bool:
        return key_id == signer.key_id and verify(public, signature, data)

    return check


def _lease_json(info: LeaseInfo) -> dict[str, Any]:
    return {
        "key": info.key, "epoch": info.epoch, "pid": info.pid, "host": info.host, "since": info.since.isoformat(),
        "live": info.live,
    }  # fmt: skip


def _leases(store: Store, keys: list[str]) -> list[dict[str, Any]]:
    found = []
    for key in keys:
        info = store.leases.holder(key)
        if info is not None:
            found.append(_lease_json(info))
    return found


def operations_router(gateway: Gateway, recorder: AuditRecorder | None, metrics: Metrics | None = None) -> APIRouter:
    router = APIRouter()

    @router.get("/api/leases", tags=["operations"], response_model=LeaseList)
    async def leases(request: Request) -> dict[str, Any]:
        """Who holds (or last held) the writer lease of each instance the caller may see, and the server's own
        (``:puppet-master``); ``kept`` is false on a server with no store (it reads no leases)."""
        store = gateway.store
        if store is None:
            return {"kept": False, "leases": []}
        identity = identity_of(request)
        visible = sorted(str(row["id"]) for row in await gateway.list_instances() if identity.sees(str(row["id"])))
        return {"kept": True, "leases": await off_loop(_leases, store, [PUPPET_MASTER_LEASE, *visible])}

    if recorder is None:  # nothing is audited here (tests of other things): there is no chain to verify
        return router

    @router.get("/api/audit/verify", tags=["access"], response_model=AuditVerification)
    async def verify_audit() -> dict[str, Any]:
        """Walk the whole chain (off the event loop) and report: ``ok``, or the first bad row and what is wrong.
        A broken chain is an answer (200 with ``ok`` false), not an error: the page shows it."""
        return (await verify_audit_log(recorder, metrics)).to_json()

    return router


async def verify_audit_log(recorder: AuditRecorder, metrics: Metrics | None) -> ChainReport:
    """Verify the audit log (off the event loop) with the key this server signs heads with, and count the result in
    ``metrics``: a broken chain, or a head file that is no signed head, counts as a failed verification."""
    try:
        report = await off_loop(
            verify_chain, recorder.store, head_file=recorder.head_file, trusted_key=_trusting(recorder)
        )
    except HistoryIntegrityError:
        if metrics is not None:
            metrics.audit_verified(ok=False)
        raise
    if metrics is not None:
        metrics.audit_verified(ok=report.ok)
    return report


@contextlib.asynccontextmanager
async def audit_watch(
    recorder: AuditRecorder, metrics: Metrics, *, every: float = AUDIT_VERIFY_EVERY_S
) -> AsyncIterator[None]:
    """Verify the audit log now and every ``every`` seconds while the context lasts; a broken log is logged as an
    error and counted (``Metrics.audit_verified``), a store that cannot be read is logged and tried next time."""

    async def watch() -> None:
        while True:
            try:
                report = await verify_audit_log(recorder, metrics)
            except SoulfraError as exc:
                log.error("the audit log could not be verified: %s", exc.detail)
            else:
                if not report.ok:
                    log.error("the audit log does not verify: %s (soulfra audit verify says the same)", report.line())
            await asyncio.sleep(every)

    task = asyncio.get_running_loop().create_task(watch(), name="soulfra-audit-watch")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
