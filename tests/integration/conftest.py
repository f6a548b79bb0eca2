"""Fixtures shared by the integration tests: a fresh database per test, on SQLite and on PostgreSQL, and a NATS bus."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

import soulfra.bus
from soulfra.bus import Bus
from soulfra.errors import BusUnavailableError

from .support import free_port
from .topology import Topology, nats_server, nats_server_binary

NATS_URL = "nats://127.0.0.1:4222"


def unavailable(what: str, reason: str) -> NoReturn:
    """Skip a test whose service is unreachable; under CI=true fail it instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI but unreachable: {reason}")
    pytest.skip(f"{what} unreachable: {reason}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL: a SQLite file in tmp_path, or a PostgreSQL schema of this test's own (the root
    ``postgres_url`` fixture)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'worlds.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """A PostgreSQL schema of this test's own, for tests that need several processes on one database."""
    return postgres_url


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


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[str]:
    """A nats-server of this test's own (JetStream on, loopback, a free port): no other test's puppet master or
    worlds answer on its subjects."""
    port = free_port()
    config = tmp_path / "nats.conf"
    config.write_text(f'listen: "127.0.0.1:{port}"\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n')
    with nats_server(nats_server_binary(), config, {}):
        yield f"nats://127.0.0.1:{port}"


@pytest.fixture
def topology(pg_url: str, private_nats: str, tmp_path: Path) -> Iterator[Topology]:
    env = {**os.environ, "SOULFRA_HOME": str(tmp_path / "home")}  # meta and both APIs share the installation key
    env.pop("SOULFRA_URL", None)
    running = Topology(pg_url, private_nats, tmp_path, env)
    try:
        yield running
    finally:
        running.stop()
