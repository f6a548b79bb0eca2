"""``GET /api/audit/verify``: the audit log's hash chain and signed heads checked as ``soulfra audit verify`` checks
them, read-only, for the admin's audit view. Checked with the key this server signs heads with; it never changes the
log and never signs a head itself."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from soulfra.api.models import AuditVerification
from soulfra.meta.keys import Signer, verify
from soulfra.offload import off_loop
from soulfra.security.audit import AuditRecorder
from soulfra.security.audit_verify import HeadVerifier, verify_chain

__all__ = ["audit_check_router"]


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


def audit_check_router(recorder: AuditRecorder) -> APIRouter:
    router = APIRouter()
    trusted = _trusting(recorder)

    @router.get("/api/audit/verify", tags=["access"], response_model=AuditVerification)
    async def verify_audit() -> dict[str, Any]:
        """Walk the whole chain (off the event loop) and report: ``ok``, or the first bad row and what is wrong.
        A broken chain is an answer (200 with ``ok`` false), not an error: the page shows it."""
        report = await off_loop(verify_chain, recorder.store, head_file=recorder.head_file, trusted_key=trusted)
        return report.to_json()

    return router
