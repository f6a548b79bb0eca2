"""Fixtures shared by the integration tests: a fresh database per test, on SQLite and on PostgreSQL, a NATS bus, the
puppet master tests' server with a client and two instances of a test's own on it, and an API server of a test's
own."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

import soulfra.bus
from soulfra.bus import Bus, InMemoryBus
from soulfra.errors import BusUnavailableError

from .api_support import REQUEST_TIMEOUT_S
from .puppet_master_support import create, wait_tick
from .support import Server, free_port, running_server
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
async def bus() -> AsyncIterator[InMemoryBus]:
    """An in-memory bus of the test's own, closed afterwards (a module may define its own ``bus``)."""
    shared = InMemoryBus()
    try:
        yield shared
    finally:
        await shared.close()


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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module; each test makes instances of its own on it."""
    with running_server(tmp_path_factory.mktemp("puppet-master")) as running:
        yield running


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client
        # Instances left ticking would only slow the tests after this one down.
        client.post("/api/god/freeze", json={})


@pytest.fixture
def pair(api: httpx.Client, request: pytest.FixtureRequest) -> tuple[str, str]:
    """Two unrelated running instances of this test's own, past their first ticks."""
    stem = re.sub(r"[^A-Za-z0-9]", "", request.node.name)[-40:]
    ours, theirs = f"{stem}-a", f"{stem}-b"
    for instance_id, seed in ((ours, 7), (theirs, 8)):
        made = create(api, instance_id, seed)
        assert (made["id"], made["seed"], made["parent_id"], made["lineage"]) == (instance_id, seed, None, [])
    wait_tick(api, ours, 3)
    wait_tick(api, theirs, 3)
    return ours, theirs


@pytest.fixture
def own(tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own, for tests that stop, possess or restart the world."""
    with running_server(tmp_path, request_timeout=REQUEST_TIMEOUT_S) as server:
        yield server
