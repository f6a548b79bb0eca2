"""Bodies of the access-control routes: API tokens (created, listed, revoked) and the audit log read back."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from soulfra.api.models.base import Closed

__all__ = ["AuditPage", "AuditRow", "TokenBody", "TokenCreated", "TokenInfo", "TokenList"]


class TokenBody(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.@\-]{1,64}$", description="Unique among live tokens")
    role: str = Field(description="viewer, operator, puppet-master or admin")
    expires: str | None = Field(default=None, max_length=16, description="A lifetime such as 30d, 12h or 90m")
    instances: list[str] | None = Field(
        default=None, min_length=1, max_length=1000, description="Only these instances (default: every one)"
    )


class TokenInfo(Closed):
    """A token as stored: never the token itself, nor its hash."""

    name: str
    role: str
    instances: list[str] | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    created_by: str


class TokenCreated(TokenInfo):
    token: str = Field(description="The token itself: shown this once, never again")


class TokenList(Closed):
    tokens: list[TokenInfo]


class AuditRow(Closed):
    """One row of the audit log and its place in the hash chain."""

    id: int
    timestamp: str
    actor: str
    role: str | None
    source: str | None
    request_id: str | None
    action: str
    instance_id: str | None
    instances: list[str]
    outcome: str
    detail: dict[str, Any]
    prev_hash: str
    row_hash: str


class AuditPage(Closed):
    entries: list[AuditRow]
    next_after: int = Field(description="Pass as ?after= for the next page (the last id here, or the one given)")


class SignedHeadCheck(Closed):
    where: str = Field(description="Where the signed head was kept: database, or the head file outside it")
    row_id: int
    row_hash: str
    signed_at: str
    signature_checked: bool = Field(description="False when this server has no installation key to check it with")


class AuditVerification(Closed):
    """The audit log's hash chain as ``soulfra audit verify`` checks it: every row chained to the one before, the
    recorded head, and the signed heads; the first bad row and what is wrong with it when it does not hold."""

    ok: bool
    rows: int
    head_id: int
    head_hash: str
    signed: SignedHeadCheck | None = Field(description="The latest signed head checked; None when none was signed")
    bad_row: int | None
    problem: str | None


class Lease(Closed):
    key: str = Field(description="An instance id, or :puppet-master for the server's own lease")
    epoch: int = Field(description="The fencing epoch: raised each time the lease is taken over")
    pid: int
    host: str
    since: str
    live: bool = Field(description="False once released, or when its holder is gone")


class LeaseList(Closed):
    kept: bool = Field(description="False on a server with no store: it reads no leases")
    leases: list[Lease]
