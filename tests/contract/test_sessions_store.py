"""Dashboard sessions on every backend: the ``SessionStore`` port (by id hash, a cap per token, touch, sign-out,
a token's sessions ended together, the purge of those that are over), and ``SessionTable`` over it as two API
processes on one database use it: a session opened by one is the other's, and ending it in one ends it in both.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from soulfra.errors import ConflictError
from soulfra.security.sessions import SessionTable, csrf_for
from soulfra.security.tokens import TokenService, token_hash
from soulfra.store import Store
from soulfra.store.ports import SessionRecord

from .conftest import Backend

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _session(n: int, of: str = "t", *, at: datetime = T0, lasts: timedelta = timedelta(hours=12)) -> SessionRecord:
    """Session ``n`` of the token whose hash is ``of`` repeated."""
    return SessionRecord(id_hash=f"{n:064x}", token_hash=of * 64, created_at=at, last_seen_at=at, expires_at=at + lasts)


# -- the port --------------------------------------------------------------------------------------------------


def test_a_session_is_found_by_its_id_hash_as_stored(store: Store) -> None:
    stored = store.sessions.create(_session(1), limit=10)
    assert store.sessions.get(f"{1:064x}") == stored
    assert store.sessions.get(f"{2:064x}") is None
    with pytest.raises(ConflictError):
        store.sessions.create(_session(1), limit=10)


def test_a_token_keeps_at_most_its_limit_the_oldest_ending_first(store: Store) -> None:
    for n in range(5):
        store.sessions.create(_session(n, at=T0 + timedelta(seconds=n)), limit=3)
    store.sessions.create(_session(9, "u"), limit=3)  # another token's: neither counted nor ended
    kept = [n for n in (*range(5), 9) if store.sessions.get(f"{n:064x}") is not None]
    assert kept == [2, 3, 4, 9]


def test_touch_moves_last_seen_forward_only(store: Store) -> None:
    store.sessions.create(_session(1), limit=10)
    later = T0 + timedelta(minutes=5)
    store.sessions.touch(f"{1:064x}", later)
    store.sessions.touch(f"{1:064x}", T0 + timedelta(minutes=1))
    store.sessions.touch(f"{7:064x}", later)  # not there: nothing happens
    found = store.sessions.get(f"{1:064x}")
    assert found is not None
    assert (found.created_at, found.last_seen_at) == (T0, later)


def test_delete_ends_one_session_and_delete_for_token_all_of_a_token(store: Store) -> None:
    for n in range(3):
        store.sessions.create(_session(n), limit=10)
    store.sessions.create(_session(5, "u"), limit=10)
    assert store.sessions.delete(f"{0:064x}") is True
    assert store.sessions.delete(f"{0:064x}") is False
    assert store.sessions.delete_for_token("t" * 64) == 2
    assert [store.sessions.get(f"{n:064x}") is None for n in (1, 2, 5)] == [True, True, False]


def test_purge_ends_expired_and_idle_sessions_only(store: Store) -> None:
    store.sessions.create(_session(1, lasts=timedelta(hours=1)), limit=10)  # expires at T0 + 1 h
    store.sessions.create(_session(2), limit=10)  # idle: last seen at T0
    store.sessions.create(_session(3), limit=10)
    store.sessions.touch(f"{3:064x}", T0 + timedelta(hours=2))  # busy
    ended = store.sessions.purge(now=T0 + timedelta(hours=3), idle_since=T0 + timedelta(minutes=30))
    assert ended == 2
    assert [store.sessions.get(f"{n:064x}") is None for n in (1, 2, 3)] == [True, True, False]
    assert store.sessions.purge(now=T0 + timedelta(hours=3), idle_since=T0 + timedelta(minutes=30)) == 0


def test_a_session_written_in_a_rolled_back_transaction_is_not_there(store: Store) -> None:
    def undone() -> None:
        with store.transaction():
            store.sessions.create(_session(1), limit=10)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        undone()
    assert store.sessions.get(f"{1:064x}") is None


# -- SessionTable over the store, as API processes share it ----------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


def test_a_session_opened_in_one_process_is_the_others_until_one_ends_it(reopen: Callable[[], Store]) -> None:
    one, other = SessionTable(reopen()), SessionTable(reopen())
    session = one.open("d" * 64)
    seen = other.get(session.id)
    assert seen == session
    assert seen is not None and seen.csrf_matches(session.csrf)  # the CSRF token is the same everywhere
    other.close(session.id)
    assert one.get(session.id) is None


def test_what_is_stored_is_neither_the_cookie_nor_the_csrf_token(backend: Backend, store: Store) -> None:
    session = SessionTable(store).open("d" * 64)
    (record,) = backend.sessions()
    stored = repr(record)
    assert session.id not in stored
    assert session.csrf not in stored
    assert session.csrf == csrf_for(session.id) != csrf_for(session.id + "x")
    assert len(session.id) >= 40 and len(session.csrf) >= 40  # 32 random bytes, and a 32-byte HMAC, URL-safe


def test_sessions_end_after_their_lifetime_and_when_idle(backend: Backend, reopen: Callable[[], Store]) -> None:
    clock = _Clock()
    table = SessionTable(reopen(), lifetime=3600.0, idle=600.0, touch_every=60.0, clock=clock)
    other = SessionTable(reopen(), lifetime=3600.0, idle=600.0, touch_every=60.0, clock=clock)
    busy, idle = table.open("a" * 64), table.open("b" * 64)
    for _ in range(11):  # a request every five minutes, alternating between the two processes
        clock.now += 300.0
        assert (table if clock.now % 600 else other).get(busy.id) is not None
    assert other.get(idle.id) is None  # nothing for 55 minutes: ended at 10
    clock.now += 301.0  # past the lifetime, busy or not
    assert table.get(busy.id) is None
    assert backend.sessions() == []  # both ended rows are gone


def test_opening_a_session_purges_those_that_are_over(backend: Backend, store: Store) -> None:
    clock = _Clock()
    table = SessionTable(store, lifetime=3600.0, idle=600.0, clock=clock)
    for n in range(3):
        table.open(f"{n}" * 64)
    clock.now += 700.0
    fresh = table.open("f" * 64)
    assert [r.token_hash for r in backend.sessions()] == ["f" * 64]
    assert table.get(fresh.id) is not None


def test_revoking_a_token_ends_its_sessions_at_once_everywhere(reopen: Callable[[], Store]) -> None:
    here, there = reopen(), reopen()
    _, kept_token = TokenService(here).create(name="kept", role="viewer", by="tests")
    _, gone_token = TokenService(here).create(name="gone", role="viewer", by="tests")
    table = SessionTable(here)
    kept, gone = table.open(token_hash(kept_token)), table.open(token_hash(gone_token))
    TokenService(there).revoke("gone")
    assert SessionTable(there).get(gone.id) is None
    assert table.get(gone.id) is None
    assert table.get(kept.id) is not None
