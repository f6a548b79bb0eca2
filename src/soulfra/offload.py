"""The one way async code runs blocking work (SQL, file I/O, encoding a snapshot): ``off_loop``, and ``Lane`` for a
world's writes, which must keep their order. Nothing else in Soulfra calls ``asyncio.to_thread`` or
``run_in_executor`` (a test checks), and no async function calls the store directly.

Why this way. Measured on the 2-core test machine under load, 3,000 hops of a no-op call each: the loop's default
executor, ``asyncio.to_thread`` and ``anyio.to_thread.run_sync`` with a ``CapacityLimiter`` all cost 150 to 250 us
a hop (they are one mechanism), a dedicated single-thread executor 70 us, an uncontended ``asyncio.Lock`` 1 us.
A durable world hops only when it writes (a group commit every ``commit_every`` ticks, a snapshot every
``snapshot_every``, an input), so the hop is noise beside the write itself. A dedicated thread per world would
keep its order for free, but a server runs up to ``max_instances`` (5,000) worlds and each would hold an idle
thread (1,000 such lanes made 1,000 threads). So a lane is an ``asyncio.Lock`` (FIFO: waiters are served in the
order they came) over the shared, bounded default executor, and anyio buys nothing here that asyncio lacks.

Thread affinity: a ``SqlStore`` keeps its transaction per thread, so one call passed here holds a whole
transaction and never spans an ``await``; SQLAlchemy's file SQLite pool and psycopg connections may move between
threads; leases do not care which thread writes (a SQLite liveness ``flock`` belongs to the open file, a
PostgreSQL advisory lock to its own connection, kept by its own keeper thread), and every write is fenced inside
its own transaction whichever thread runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import AsyncIterator, Callable
from typing import ParamSpec, TypeVar

__all__ = ["Lane", "off_loop"]

P = ParamSpec("P")
T = TypeVar("T")


async def off_loop(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in one of the event loop's worker threads, with the caller's context variables.

    A thread cannot be stopped: if the awaiting task is cancelled, this still waits for the call to end before the
    cancellation goes on, so that a lane held around it is not let go while its write is still under way."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    future = loop.run_in_executor(None, call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        if not future.cancelled():
            future.exception()  # retrieved: the caller is gone, its cancellation is what it gets
        raise


class Lane:
    """The order of one writer's blocking work: each ``run`` (or what a ``turn`` holds) starts after every one
    asked for before it has finished, and the event loop stays free meanwhile.

    A runtime holds one for its world: ticks, inputs, snapshots and flushes of that world go through it, so they
    reach the store in the order the loop asked for them, and nothing runs between an input's check and its
    scheduling. Lanes of different worlds run side by side on the shared worker threads."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the lane for several steps, some on the loop and some ``off_loop``: nothing else of this lane runs
        between them."""
        async with self._lock:
            yield

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``off_loop(fn, ...)`` in its turn."""
        async with self._lock:
            return await off_loop(fn, *args, **kwargs)
