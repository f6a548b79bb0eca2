"""Browser sessions of the dashboard: a random session id in an HttpOnly cookie, kept in the store (``SessionStore``)
as its SHA-256 beside the SHA-256 of the API token that signed in, so every API process on the database honours it.

No secret reaches the browser but the session id, and none is stored: the database holds the id's hash, the token's
hash (``TokenService.authenticate_digest`` checks it on every request, so an expired token's sessions are refused
within the token cache's second) and times. The CSRF token is derived from the session id (an HMAC keyed by it), so
the pages can be given it and the database need not keep it; reading the database gives neither the cookie nor the
CSRF token. Every method reads or writes the store: async callers go through ``soulfra.offload.off_loop``. Must not:
know anything of HTTP beyond the names of the cookie and the CSRF header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from soulfra.store.ports import SessionRecord, Store

__all__ = ["CSRF_FIELD", "CSRF_HEADER", "SESSION_COOKIE", "Session", "SessionTable", "csrf_for"]

SESSION_COOKIE = "soulfra_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_CSRF_LABEL = b"soulfra dashboard csrf v1"


def csrf_for(session_id: str) -> str:
    """The CSRF token of the session ``session_id``: HMAC-SHA256 keyed by the id, URL-safe. Knowing it tells nothing
    of the id, and the id's stored hash tells nothing of it."""
    mac = hmac.new(session_id.encode(), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _key(session_id: str) -> str:
    """What is stored of a session id: its SHA-256, hex (256 random bits: no salt or stretching needed)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """One signed-in browser: ``token_digest`` is the hash of the token it signed in with, ``csrf`` the token its
    pages send back with every change, ``expires`` when it ends at the latest (on the table's clock)."""

    id: str
    token_digest: str
    expires: float

    @property
    def csrf(self) -> str:
        return csrf_for(self.id)

    def csrf_matches(self, given: str | None) -> bool:
        """Whether ``given`` is this session's CSRF token (compared in constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class SessionTable:
    """The dashboard's sessions, in ``store``. ``lifetime``: seconds a session lasts from sign-in; ``idle``: seconds
    without a request after which it ends sooner; ``limit``: sessions one token holds at once, past which its
    oldest ends (a flood of sign-ins cannot grow the table, nor end other tokens' sessions); ``clock``: wall-clock
    seconds (shared by every process on the database, unlike a monotonic clock). ``touch_every``: how stale the
    stored last-seen time may get, so a busy browser writes at most once in that time rather than per request."""

    def __init__(
        self,
        store: Store,
        *,
        lifetime: float = 12 * 3600.0,
        idle: float = 2 * 3600.0,
        limit: int = 100,
        clock: Callable[[], float] = time.time,
        touch_every: float = 60.0,
    ) -> None:
        self.store = store
        self.lifetime = lifetime
        self.idle = idle
        self.limit = limit
        self.touch_every = min(touch_every, idle / 4)  # the idle end never comes more than a quarter early
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def open(self, token_digest: str) -> Session:
        """A new session for the token whose hash is ``token_digest``; sessions that are over end first."""
        session_id = secrets.token_urlsafe(32)
        now = self._now()
        expires = now + timedelta(seconds=self.lifetime)
        record = SessionRecord(
            id_hash=_key(session_id), token_hash=token_digest, created_at=now, last_seen_at=now, expires_at=expires
        )
        with self.store.transaction():
            self.store.sessions.purge(now=now, idle_since=now - timedelta(seconds=self.idle))
            self.store.sessions.create(record, limit=self.limit)
        return Session(id=session_id, token_digest=token_digest, expires=expires.timestamp())

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, ended or expired): one lookup by the id's hash, and
        now and then a note that it was seen."""
        if not session_id:
            return None
        key = _key(session_id)
        record = self.store.sessions.get(key)
        if record is None:
            return None
        now = self._now()
        if record.expires_at <= now or record.last_seen_at + timedelta(seconds=self.idle) <= now:
            self.store.sessions.delete(key)
            return None
        if now - record.last_seen_at >= timedelta(seconds=self.touch_every):
            self.store.sessions.touch(key, now)
        return Session(id=session_id, token_digest=record.token_hash, expires=record.expires_at.timestamp())

    def close(self, session_id: str | None) -> None:
        """End a session (sign-out); nothing happens for one that is not there."""
        if session_id:
            self.store.sessions.delete(_key(session_id))
