"""API tokens: shown once and stored as a hash; unknown, expired and revoked tokens are refused; revocation reaches a
cached check within its cache time; names, roles, scopes and durations are checked."""

from __future__ import annotations

from datetime import timedelta

import pytest

from soulfra.errors import AuthenticationError, InputError
from soulfra.security.identity import ROLES, Identity, rank
from soulfra.security.tokens import TOKEN_PREFIX, TokenService, parse_duration, token_hash
from soulfra.store import InMemoryStore, MemoryDatabase


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_shown_once_and_only_its_hash_is_kept() -> None:
    store = InMemoryStore()
    record, token = TokenService(store).create(name="alice", role="operator", by="admin")
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    assert record.token_hash == token_hash(token) != token
    assert token not in repr(store.database.tables.tokens)
    assert TokenService(store).authenticate(token) == Identity(name="alice", role="operator")


def test_unknown_expired_and_revoked_tokens_are_refused() -> None:
    store = InMemoryStore()
    service = TokenService(store, cache_seconds=0)
    _, expired = service.create(name="old", role="viewer", by="admin", expires_in=timedelta(microseconds=1))
    _, revoked = service.create(name="gone", role="viewer", by="admin")
    service.revoke("gone")
    with pytest.raises(AuthenticationError, match="unknown token"):
        service.authenticate(TOKEN_PREFIX + "x" * 43)
    with pytest.raises(AuthenticationError, match="'old' expired"):
        service.authenticate(expired)
    with pytest.raises(AuthenticationError, match="'gone' was revoked"):
        service.authenticate(revoked)


def test_a_revocation_elsewhere_reaches_a_cached_check_within_the_cache_time() -> None:
    database = MemoryDatabase()
    clock = Clock()
    api = TokenService(InMemoryStore(database), cache_seconds=1.0, clock=clock)
    admin = TokenService(InMemoryStore(database))
    _, token = admin.create(name="bob", role="admin", by="admin")
    assert api.authenticate(token).name == "bob"
    admin.revoke("bob")  # another process: the API's cache does not know yet
    clock.now = 0.5
    assert api.authenticate(token).name == "bob"
    clock.now = 1.0
    with pytest.raises(AuthenticationError, match="revoked"):
        api.authenticate(token)


def test_scope_and_role_order() -> None:
    service = TokenService(InMemoryStore())
    _, token = service.create(name="scoped", role="puppet-master", by="admin", instances=["b", "a", "a"])
    identity = service.authenticate(token)
    assert identity.instances == frozenset({"a", "b"})
    assert identity.sees("a") and not identity.sees("c")
    assert identity.allows("operator") and identity.allows("puppet-master") and not identity.allows("admin")
    assert [rank(r) for r in ROLES] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("name", "role", "instances", "message"),
    [
        ("has space", "viewer", None, "bad token name"),
        ("x" * 65, "viewer", None, "bad token name"),
        ("ok", "root", None, "unknown role 'root'"),
        ("ok", "viewer", [], "at least one instance"),
    ],
)
def test_bad_token_requests_are_refused(name: str, role: str, instances: list[str] | None, message: str) -> None:
    with pytest.raises(InputError, match=message):
        TokenService(InMemoryStore()).create(name=name, role=role, by="admin", instances=instances)


def test_durations() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration(" 12h") == timedelta(hours=12)
    assert parse_duration("2w") == timedelta(weeks=2)
    for bad in ("0d", "30", "d", "-1d", "1y", "1.5h"):
        with pytest.raises(InputError, match="bad duration"):
            parse_duration(bad)
