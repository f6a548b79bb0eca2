"""Fixtures every layer of the tests shares."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, as Soulfra does."""
    return "asyncio"


# -- a test that measures wall-clock speed runs alone ----------------------------------------------------------------
# Under pytest-xdist the other workers' tests share the machine's cores, which would skew a test that compares tick
# rates over time. Every test holds a shared lock on one file of the session while it runs; a test marked
# ``alone`` takes it exclusively, so it starts once the other workers' current tests end, and they wait for it. The
# gate lock keeps new tests from slipping in ahead of one that waits to run alone.


@pytest.fixture(autouse=True)
def _alone_or_shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if "PYTEST_XDIST_WORKER" not in os.environ:  # one process: every test runs alone already
        yield
        return
    session_dir = tmp_path_factory.getbasetemp().parent  # the workers' base temps share this parent
    alone = request.node.get_closest_marker("alone") is not None
    with (session_dir / "alone.gate").open("a") as gate, (session_dir / "alone.lock").open("a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)
