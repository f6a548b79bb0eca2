"""Browser sessions of the dashboard: a random session id in an HttpOnly cookie, mapped in this process's memory to
the SHA-256 of the API token that signed in and a CSRF token.

No secret reaches the browser but the session id, and nothing is written to disk: the token itself is not kept at
all, only its hash, which ``TokenService.authenticate_digest`` checks on every request (so a revoked or expired token
ends its sessions within the token cache's second). A restart forgets every session (sign in again). Must not: know
anything of HTTP beyond the names of the cookie and the CSRF header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CSRF_FIELD", "CSRF_HEADER", "SESSION_COOKIE", "Session", "SessionTable"]

SESSION_COOKIE = "soulfra_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """One signed-in browser: ``token_digest`` is the hash of the token it signed in with, ``csrf`` the token its
    pages send back with every change, ``expires`` when it ends (on the table's clock)."""

    id: str
    token_digest: str
    csrf: str
    expires: float

    def csrf_matches(self, given: str | None) -> bool:
        """Whether ``given`` is this session's CSRF token (compared in constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def _key(session_id: str) -> str:
    # Looked up by the id's hash: the table's own lookups leak nothing about the ids it holds through timing.
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionTable:
    """The sessions of this process. ``lifetime``: seconds a session lasts from sign-in; ``limit``: sessions held at
    once, past which the oldest ends (a flood of sign-ins cannot grow the table)."""

    def __init__(
        self, *, lifetime: float = 12 * 3600.0, limit: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # by _key(id), oldest first

    def open(self, token_digest: str) -> Session:
        """A new session for the token whose hash is ``token_digest``."""
        session = Session(
            id=secrets.token_urlsafe(32),
            token_digest=token_digest,
            csrf=secrets.token_urlsafe(32),
            expires=self._clock() + self.lifetime,
        )
        with self._lock:
            self._sessions[_key(session.id)] = session
            while len(self._sessions) > self.limit:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, ended or expired)."""
        if not session_id:
            return None
        key = _key(session_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.expires <= self._clock():
                del self._sessions[key]
                return None
        return session

    def close(self, session_id: str | None) -> None:
        """End a session (sign-out); nothing happens for one that is not there."""
        if session_id:
            with self._lock:
                self._sessions.pop(_key(session_id), None)

    def __len__(self) -> int:
        return len(self._sessions)
