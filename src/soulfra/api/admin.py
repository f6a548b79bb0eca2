"""The admin's routes: API tokens (create, list, revoke) and the audit log read back. Thin: each route is one
``TokenService`` or store call; who may call them is ``soulfra.api.access``'s policy table."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from soulfra.api.access import identity_of
from soulfra.api.models import AuditPage, TokenBody, TokenCreated, TokenInfo, TokenList
from soulfra.offload import off_loop
from soulfra.security.audit import current_action
from soulfra.security.tokens import TokenService, parse_duration
from soulfra.store.ports import AuditEntry, Store, TokenRecord

__all__ = ["admin_router", "audit_json", "token_json"]

MAX_AUDIT_PAGE = 1000


def token_json(record: TokenRecord) -> dict[str, Any]:
    """What may be shown of a token: everything but its hash."""

    def when(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "name": record.name, "role": record.role,
        "instances": None if record.instances is None else list(record.instances),
        "created_at": record.created_at.isoformat(), "expires_at": when(record.expires_at),
        "revoked_at": when(record.revoked_at), "created_by": record.created_by,
    }  # fmt: skip


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "timestamp": entry.timestamp.isoformat(), "actor": entry.actor, "role": entry.role,
        "source": entry.source, "request_id": entry.request_id, "action": entry.action,
        "instance_id": entry.instance_id, "instances": list(entry.instances), "outcome": entry.outcome,
        "detail": entry.detail, "prev_hash": entry.prev_hash, "row_hash": entry.row_hash,
    }  # fmt: skip


def _note(detail: dict[str, Any]) -> None:
    action = current_action()
    if action is not None:
        action.refine(detail=detail)


def admin_router(tokens: TokenService, store: Store) -> APIRouter:
    router = APIRouter()

    @router.post("/api/tokens", tags=["access"], status_code=201, response_model=TokenCreated)
    async def create_token(request: Request, body: TokenBody) -> dict[str, Any]:
        """A new token; the reply holds the token itself, shown this once (only its hash is kept)."""
        _note({"name": body.name, "role": body.role, "expires": body.expires, "instances": body.instances})
        expires = None if body.expires is None else parse_duration(body.expires)
        record, secret = await off_loop(
            lambda: tokens.create(
                name=body.name, role=body.role, by=identity_of(request).name, expires_in=expires,
                instances=body.instances,
            )
        )  # fmt: skip
        return {**token_json(record), "token": secret}

    @router.get("/api/tokens", tags=["access"], response_model=TokenList)
    async def list_tokens() -> dict[str, Any]:
        """Every token, revoked ones too; never a token or its hash."""
        return {"tokens": [token_json(r) for r in await off_loop(tokens.list)]}

    @router.delete("/api/tokens/{name}", tags=["access"], response_model=TokenInfo)
    async def revoke_token(name: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.@\-]{1,64}$")]) -> dict[str, Any]:
        """Revoke a token: refused everywhere within a second."""
        _note({"name": name})
        return token_json(await off_loop(tokens.revoke, name))

    @router.get("/api/audit", tags=["access"], response_model=AuditPage)
    async def audit(
        instance: Annotated[str | None, Query(max_length=64)] = None,
        actor: Annotated[str | None, Query(max_length=128)] = None,
        action: Annotated[str | None, Query(max_length=128, description="A prefix ending in '.' matches all")] = None,
        outcome: Annotated[str | None, Query(max_length=64)] = None,
        after: Annotated[int, Query(ge=0, le=2**62, description="Rows after this id")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_PAGE)] = 100,
    ) -> dict[str, Any]:
        """The audit log, oldest first, filtered."""
        entries = await off_loop(
            lambda: store.audit.read(
                instance_id=instance, actor=actor, action=action, outcome=outcome, after_id=after, limit=limit
            )
        )
        return {"entries": [audit_json(e) for e in entries], "next_after": entries[-1].id if entries else after}

    return router
