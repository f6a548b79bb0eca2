"""Read-only operations routes for the dashboard's audit and health views. ``GET /api/audit/verify`` (admin): the
audit log's hash chain and signed heads checked as ``soulfra audit verify`` checks them, with the key this server
signs heads with; it never changes the log and never signs a head itself. ``GET /api/leases`` (viewer): who holds
each instance's writer lease (and the server's own), as the store records it; it never takes or releases one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from soulfra.api.access import identity_of
from soulfra.api.gateway import Gateway
from soulfra.api.models import AuditVerification, LeaseList
from soulfra.meta.keys import Signer, verify
from soulfra.offload import off_loop
from soulfra.security.audit import AuditRecorder
from soulfra.security.audit_verify import HeadVerifier, verify_chain
from soulfra.store.lease_rules import PUPPET_MASTER_LEASE
from soulfra.store.ports import LeaseInfo, Store

__all__ = ["operations_router"]


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


def operations_router(gateway: Gateway, recorder: AuditRecorder | None) -> APIRouter:
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
    trusted = _trusting(recorder)

    @router.get("/api/audit/verify", tags=["access"], response_model=AuditVerification)
    async def verify_audit() -> dict[str, Any]:
        """Walk the whole chain (off the event loop) and report: ``ok``, or the first bad row and what is wrong.
        A broken chain is an answer (200 with ``ok`` false), not an error: the page shows it."""
        report = await off_loop(verify_chain, recorder.store, head_file=recorder.head_file, trusted_key=trusted)
        return report.to_json()

    return router
