"""API tokens: made from 32 random bytes, shown once, stored only as their SHA-256, checked in constant time.

``TokenService`` creates, lists and revokes them and turns a presented token into an ``Identity``. Checks are cached
for at most ``cache_seconds`` (1 s by default), so a revocation anywhere takes effect within that time everywhere,
and a busy API does not ask the database on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from soulfra.errors import AuthenticationError, InputError
from soulfra.security.identity import Identity, check_role
from soulfra.store.ports import Store, TokenRecord

__all__ = ["TOKEN_PREFIX", "TokenService", "new_token", "parse_duration", "token_hash"]

TOKEN_PREFIX = "sft_"  # noqa: S105 -- a prefix, not a secret: so a leaked token is recognisable (secret scanners, logs)
_NAME = re.compile(r"^[A-Za-z0-9_.@\-]{1,64}$")
_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
CACHE_LIMIT = 10_000  # tokens remembered at once; past it the cache starts again


def new_token() -> str:
    """A new token: the prefix and 32 random bytes, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What is stored of a token: its SHA-256, hex (the token has 256 bits of entropy, so no salt or stretching is
    needed against guessing)."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w``: InputError for anything else."""
    found = _DURATION.match(text.strip())
    if found is None or int(found.group(1)) == 0:
        raise InputError(f"bad duration {text!r}: a positive number with s, m, h, d or w, such as 30d or 12h")
    return timedelta(seconds=int(found.group(1)) * _UNIT_SECONDS[found.group(2)])


class TokenService:
    def __init__(
        self, store: Store, *, cache_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, TokenRecord]] = {}
        self._identities: dict[str, tuple[TokenRecord, Identity]] = {}  # by hash, while its record is the same
        self._lock = threading.Lock()

    def create(
        self,
        *,
        name: str,
        role: str,
        by: str,
        expires_in: timedelta | None = None,
        instances: Sequence[str] | None = None,
        secret: str | None = None,
    ) -> tuple[TokenRecord, str]:
        """A new token; returns its record and the token itself (shown once: only its hash is kept). ``secret``
        registers a token made elsewhere (the local admin token, shared by a home's servers)."""
        if not _NAME.match(name):
            raise InputError(f"bad token name {name!r}: 1 to 64 letters, digits, '.', '_', '-' or '@'")
        check_role(role)
        scope = None if instances is None else tuple(sorted(set(instances)))
        if scope is not None and not scope:
            raise InputError("a token scoped to instances needs at least one instance")
        now = datetime.now(UTC)
        token = secret if secret is not None else new_token()
        record = TokenRecord(
            name=name, role=role, token_hash=token_hash(token), instances=scope, created_at=now,
            expires_at=None if expires_in is None else now + expires_in, created_by=by,
        )  # fmt: skip
        return self.store.tokens.create(record), token

    def list(self) -> list[TokenRecord]:
        return self.store.tokens.list_tokens()

    def revoke(self, name: str) -> TokenRecord:
        """Revoke the token named ``name`` and end its dashboard sessions, in one transaction: from its commit on,
        no API process on the database lets the token or its sessions in (another process's token cache may still
        hold the token for up to ``cache_seconds``, but its sessions are gone at once)."""
        with self.store.transaction():
            revoked = self.store.tokens.revoke(name, datetime.now(UTC))
            self.store.sessions.delete_for_token(revoked.token_hash)
        with self._lock:
            self._cache.pop(revoked.token_hash, None)
        return revoked

    def authenticate(self, token: str) -> Identity:
        """The identity ``token`` stands for; AuthenticationError if it is unknown, expired or revoked."""
        return self.authenticate_digest(token_hash(token))

    def authenticate_digest(self, digest: str) -> Identity:
        """``authenticate`` for a token known only by its hash (a dashboard session keeps no raw token)."""
        return self._identity(digest, self._lookup(digest))

    def fresh(self, token: str) -> Identity | None:
        """``authenticate`` from the cache alone: None when ``token``'s check is not fresh there (ask
        ``authenticate``, off the event loop: it reads the database). What an API asks on every request."""
        return self.fresh_digest(token_hash(token))

    def fresh_digest(self, digest: str) -> Identity | None:
        """``fresh`` for a token known only by its hash."""
        now = self._clock()
        with self._lock:
            found = self._cache.get(digest)
        if found is None or now - found[0] >= self.cache_seconds:
            return None
        return self._identity(digest, found[1])

    def _identity(self, digest: str, record: TokenRecord | None) -> Identity:
        if record is None or not hmac.compare_digest(record.token_hash, digest):
            raise AuthenticationError("unknown token")
        if record.revoked_at is not None:
            raise AuthenticationError(f"token {record.name!r} was revoked")
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise AuthenticationError(f"token {record.name!r} expired at {record.expires_at.isoformat()}")
        known = self._identities.get(digest)
        if known is None or known[0] is not record:  # one Identity per record read, not one per request
            scope = None if record.instances is None else frozenset(record.instances)
            known = (record, Identity(name=record.name, role=record.role, kind="token", instances=scope))
            if len(self._identities) >= CACHE_LIMIT:
                self._identities.clear()
            self._identities[digest] = known
        return known[1]

    def _lookup(self, digest: str) -> TokenRecord | None:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        record = self.store.tokens.by_hash(digest)
        with self._lock:
            if record is None:
                self._cache.pop(digest, None)  # unknown tokens are not remembered: guessing cannot fill the cache
            else:
                if len(self._cache) >= CACHE_LIMIT:
                    self._cache.clear()
                self._cache[digest] = (now, record)
        return record
