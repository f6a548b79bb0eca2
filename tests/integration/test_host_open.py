"""A cluster host, once open on the local PostgreSQL and NATS, has set its process's garbage collector to run young
collections less often (``GC_YOUNG`` allocations apart): a host's hundreds of worlds keep making objects that live."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from soulfra.bus import Bus
from soulfra.cluster.host import GC_YOUNG, HostSettings, WorldHost

from .conftest import NATS_URL


@pytest.mark.anyio
async def test_an_open_host_collects_young_objects_less_often(pg_url: str, nats_bus: Bus, tmp_path: Path) -> None:
    saved = gc.get_threshold()
    gc.set_threshold(700, *saved[1:])  # Python's default
    host = WorldHost(HostSettings(db_url=pg_url, nats_url=NATS_URL, home=tmp_path, default="w"), "node-1")
    try:
        assert "node-1" in await host.open()
        assert gc.get_threshold() == (GC_YOUNG, *saved[1:])
        assert await host.ping() == 0  # open, and holding no world yet
    finally:
        await host.close()
        gc.set_threshold(*saved)
