"""Fixtures every layer of the tests shares: the async backend, and a PostgreSQL schema of a test's own (the one
place that knows where the test server is and what happens when it cannot be reached)."""

from __future__ import annotations

import functools
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from hypothesis import settings

# Property tests assert behaviour, never timings: no per-example deadline, which a loaded machine (CI runs three
# workers on two cores) would turn into a failure of a correct test.
settings.register_profile("soulfra", deadline=None)
settings.load_profile("soulfra")

POSTGRES_URL = os.environ.get("SOULFRA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CONNECT_TIMEOUT_S = 3


def pytest_configure(config: pytest.Config) -> None:
    """An installation (``SOULFRA_HOME``: keys, the admin token) of the test run's own, for every test and every
    process it starts that names none: the tests never read or write the user's ``~/.soulfra``, and what one test
    leaves there cannot change what another prints."""
    home = tempfile.mkdtemp(prefix="soulfra-test-home-")
    config.stash[_HOME] = home
    os.environ["SOULFRA_HOME"] = home


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(config.stash.get(_HOME, ""), ignore_errors=True)


_HOME = pytest.StashKey[str]()


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """The root logger as each test found it: a ``soulfra up`` run in the test's process configures logging for the
    whole process (a handler on the stderr its runner swapped in, closed after it), which would otherwise be the next
    test's."""
    root = logging.getLogger()
    handlers, level = set(root.handlers), root.level
    yield
    for handler in list(root.handlers):  # pytest's own capture handlers come and go with each phase: left to it
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, as Soulfra does."""
    return "asyncio"


def _libpq_url() -> str:
    """``POSTGRES_URL`` as the driver itself takes it (without SQLAlchemy's ``+psycopg``)."""
    return POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://", 1)


@functools.cache
def postgres_unreachable() -> str | None:
    """Why the test PostgreSQL server cannot be used (asked once per session), or None when it can."""
    try:
        import psycopg  # noqa: PLC0415 - only tests that use PostgreSQL need the driver
    except ModuleNotFoundError as exc:
        return f"the psycopg driver is not installed ({exc})"
    try:
        psycopg.connect(_libpq_url(), connect_timeout=CONNECT_TIMEOUT_S).close()
    except psycopg.Error as exc:
        return f"cannot connect to {POSTGRES_URL}: {str(exc).strip().splitlines()[0]}"
    return None


def _unreachable(reason: str) -> NoReturn:
    """Skip a test that needs PostgreSQL when it is unreachable; under CI=true fail it instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required when CI=true, but {reason}")
    pytest.skip(f"PostgreSQL unreachable: {reason}")


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """The name of an empty PostgreSQL schema of the test's own, dropped afterwards. An unreachable server skips the
    test, and fails it when ``CI=true``."""
    reason = postgres_unreachable()
    if reason is not None:
        _unreachable(reason)
    import psycopg  # noqa: PLC0415 - reachable, so the driver is installed

    name = f"t_{secrets.token_hex(8)}"
    with psycopg.connect(_libpq_url(), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as admin:
        admin.execute(f'CREATE SCHEMA "{name}"')
        try:
            yield name
        finally:
            admin.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def postgres_url(postgres_schema: str) -> str:
    """A SQLAlchemy URL of the test server whose search path is the test's own schema: what it makes is made there."""
    return f"{POSTGRES_URL}?options=-csearch_path%3D{postgres_schema}"


CORE_SUITES = ("unit", "golden")  # the tests of the world core and its engines: `make test` runs these under coverage


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the core suites' tests ``core`` (``make test`` runs those that are not slow under coverage, the rest
    without it), and collect the modules holding a test marked ``slow`` first, each module kept whole (its
    module-scoped servers start once): under pytest-xdist a long test handed out last is the whole run's tail."""
    root = Path(__file__).parent
    for item in items:
        if item.path.relative_to(root).parts[0] in CORE_SUITES:
            item.add_marker(pytest.mark.core)
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow)  # stable: the order within each module stays
