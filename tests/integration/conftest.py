"""Fixtures shared by the integration tests: a fresh database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

import soulfra.bus
from soulfra.bus import Bus
from soulfra.errors import BusUnavailableError

NATS_URL = "nats://127.0.0.1:4222"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"


def unavailable(what: str, reason: str) -> NoReturn:
    """Skip a test whose service is unreachable; under CI=true fail it instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI but unreachable: {reason}")
    pytest.skip(f"{what} unreachable: {reason}")


def postgres_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search path is a schema of the calling test's own, dropped afterwards."""
    try:
        import psycopg  # noqa: PLC0415 - only the PostgreSQL tests need the driver
    except ModuleNotFoundError as exc:
        unavailable("PostgreSQL", f"psycopg is not installed ({exc})")
    schema = f"it_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL", str(exc).strip().splitlines()[0])
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield PG_URL.format(schema=schema)
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file in tmp_path, or a PostgreSQL schema of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'worlds.db'}"
        return
    yield from postgres_schema_url()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL schema of this test's own, for tests that need several processes on one database."""
    yield from postgres_schema_url()


@pytest.fixture
async def nats_bus(anyio_backend: str) -> AsyncIterator[Bus]:
    """A connection to the local NATS server (JetStream on), closed afterwards."""
    try:
        connected = await soulfra.bus.connect(NATS_URL)
    except BusUnavailableError as exc:
        unavailable("NATS", exc.detail)
    try:
        yield connected
    finally:
        await connected.close()
