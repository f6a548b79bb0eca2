"""Serving an HTTP app from a process that must always stop: the bound socket (``listen``), uvicorn with a stop
guard (``serve_app``), and the small operations server of the processes that have no API of their own
(``OpsServer``: ``/metrics``, ``/healthz``, ``/readyz``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from soulfra.api import Gateway
from soulfra.api.stream import LiveStreams
from soulfra.errors import ConfigError, SoulfraError
from soulfra.metrics import CONTENT_TYPE, Metrics

__all__ = ["STOP_TIMEOUT_S", "OpsServer", "listen", "say", "serve_app"]


def listen(host: str, port: int) -> socket.socket:
    """Bind the server's socket first, so a port in use is one clear error before anything is opened."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


STOP_TIMEOUT_S = 10.0  # a stop that takes longer than this ends the process at once
SEND_BUFFER = 256 * 1024  # bytes the kernel holds for one connection (it doubles the figure for its bookkeeping)


class _StopGuard:
    """Makes every stop complete. It counts SIGINT and SIGTERM on a thread of its own, through the signal wakeup
    fd, so it acts even while the main thread is held (in a database call, say): at the second signal, or
    ``timeout`` seconds after the first, it ends the process at once with status 1. Nothing acknowledged is lost
    that way: inputs are stored before they are acknowledged, and the worlds replay their last ticks on start."""

    def __init__(self, timeout: float, *, exit: Callable[[int], object] = os._exit) -> None:
        self.timeout = timeout
        self._exit = exit
        self._lock = threading.Lock()
        self._first: float | None = None  # when the first signal came (monotonic)
        self._finished = False

    def install(self) -> bool:
        """Watch the signals from now on (main thread only); False where signals cannot be watched."""
        if threading.current_thread() is not threading.main_thread():
            return False
        read, write = os.pipe()
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(read,), name="soulfra-stop", daemon=True).start()
        return True

    def signalled(self, sig: int) -> None:
        """One SIGINT or SIGTERM: the first starts the clock, a second one ends the process."""
        with self._lock:
            if self._finished:
                return  # the server has stopped; what is left is uvicorn raising the signal again for its caller
            if self._first is not None:
                self._force(f"{signal.Signals(sig).name} again while stopping")
                return
            self._first = time.monotonic()
        say(f"soulfra: stopping; a second Ctrl-C or SIGTERM exits at once, as does a stop past {self.timeout:g} s")

    def finished(self) -> None:
        """The server has stopped; later signals are no longer counted (the deadline still bounds the exit)."""
        with self._lock:
            self._finished = True

    def remaining(self) -> float | None:
        """Seconds until the deadline, or None before the first signal."""
        with self._lock:
            return None if self._first is None else max(0.0, self._first + self.timeout - time.monotonic())

    def _watch(self, read: int) -> None:
        while True:
            ready, _, _ = select.select([read], [], [], self.remaining())
            if not ready:
                with self._lock:
                    self._force(f"the stop did not complete within {self.timeout:g} s")
                return
            for sig in os.read(read, 64):
                if sig in (signal.SIGINT, signal.SIGTERM):
                    self.signalled(sig)

    def _force(self, reason: str) -> None:
        say(f"soulfra: {reason}: exiting now (every acknowledged input is stored)")
        self._exit(1)


def say(line: str) -> None:
    """One line on stderr, written without a lock (the main thread may be held anywhere)."""
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


class _Server(uvicorn.Server):
    """uvicorn's server with a stop that always completes. At the first SIGINT or SIGTERM the live streams end at
    once (a client that reads nothing is disconnected), requests in flight finish and every world is flushed; a
    second signal, or a stop longer than the guard's timeout, ends the process at once (``_StopGuard``)."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway, streams: LiveStreams, guard: _StopGuard) -> None:
        super().__init__(config)
        self._gateway = gateway
        self._streams = streams
        self._guard = guard
        self._loop: asyncio.AbstractEventLoop | None = None
        streams.disconnect = self._disconnect

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._guard.finished()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._gateway.closing = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._streams.close)  # a signal handler must not touch the loop itself
        super().handle_exit(sig, frame)

    def _disconnect(self, scope: MutableMapping[str, Any]) -> bool:
        """Drop the connection of the request ``scope`` at once, unsent bytes and all (a client that reads nothing
        would otherwise hold its buffers, and the stop, for as long as it stays connected)."""
        client = scope.get("client")
        if client is None:
            return False
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if getattr(connection, "client", None) == tuple(client) and transport is not None:
                transport.abort()
                return True
        return False


def serve_app(
    app: FastAPI,
    sock: socket.socket,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    stop_timeout: float = STOP_TIMEOUT_S,
) -> None:
    """Serve an API app (its ``state`` holds its gateway and streams) on a bound socket until SIGINT or SIGTERM,
    with the stop guard: a second signal, or a stop past ``stop_timeout`` seconds, ends the process at once."""
    # The asyncio loop: the stop guard needs the signal wakeup fd, which uvloop would take for itself.
    # log_config=None: uvicorn's records (a request that raised, with its traceback) go through the one handler that
    # soulfra.logs installed, formatted like every other record, instead of through handlers of uvicorn's own.
    tls: dict[str, Any] = {}
    if tls_cert is not None and tls_key is not None:
        tls = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}
    config = uvicorn.Config(
        app, log_level="warning", log_config=None, lifespan="on", timeout_graceful_shutdown=3, loop="asyncio", **tls
    )
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the handler it found installed:
    # make that handler "ignore", so a requested stop ends the process with status 0 rather than by the signal.
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Every connection inherits this send buffer. The kernel's own grows to 4 MiB on loopback, and a stream client
    # that reads nothing would make the server write all of that before it is held back.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    guard = _StopGuard(stop_timeout)
    guard.install()
    try:
        _Server(config, app.state.gateway, app.state.streams, guard).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)


class _BesideServer(uvicorn.Server):
    """uvicorn serving beside a process's own work: the process, not uvicorn, handles its signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


Check = Callable[[], Awaitable[None]]  # raises a SoulfraError naming what is not ready


class OpsServer:
    """``/metrics`` (the process's registry), ``/healthz`` (the process answers) and ``/readyz`` (``ready`` raises
    nothing: its bus and database answer) on their own port, for the processes with no API of their own (``soulfra
    serve meta`` and the platforms): what Prometheus scrapes and an orchestrator's probes ask. Read-only; it runs on
    the process's event loop beside its work."""

    def __init__(self, metrics: Metrics, ready: Check, *, role: str) -> None:
        self.metrics = metrics
        self.ready = ready
        self.role = role
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def app(self) -> Starlette:
        async def scrape(_request: Request) -> Response:
            return Response(self.metrics.render(), media_type=CONTENT_TYPE)

        async def healthz(_request: Request) -> JSONResponse:
            return JSONResponse({"status": "alive", "role": self.role})

        async def readyz(_request: Request) -> JSONResponse:
            try:
                await self.ready()
            except SoulfraError as exc:
                return JSONResponse({"code": exc.code, "detail": exc.detail}, status_code=503)
            return JSONResponse({"status": "ready", "role": self.role})

        return Starlette(routes=[Route("/metrics", scrape), Route("/healthz", healthz), Route("/readyz", readyz)])

    async def start(self, sock: socket.socket) -> None:
        """Serve on ``sock`` (bound by ``listen``) in the background of the running loop."""
        config = uvicorn.Config(self.app(), log_level="warning", log_config=None, lifespan="off", loop="asyncio")
        server = self._server = _BesideServer(config)
        self._task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        while not server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # raises what stopped it

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
