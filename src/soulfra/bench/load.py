"""The HTTP load generator of ``soulfra bench api``: keep-alive GETs back to back on plain asyncio streams, with
latencies and errors counted, against a server on this machine's loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from contextlib import suppress
from typing import Any

from soulfra.errors import OutputError

__all__ = ["HOST", "LOAD_GENERATOR", "free_port", "load", "percentile"]

HOST = "127.0.0.1"
# httpx.AsyncClient itself tops out near 100-200 req/s at 64 concurrent requests (encode/httpx#3215), which would
# measure the client, not the servers; the generator is plain asyncio streams, one keep-alive connection per worker.
LOAD_GENERATOR = "asyncio streams, HTTP/1.1 keep-alive, one connection per worker, in the bench process"


def free_port() -> int:
    """A port free on the loopback now, for a server this benchmark starts."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for a GET with a sized body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
        self.reader, self.writer, self.request = reader, writer, request

    @classmethod
    async def open(cls, port: int, path: str, token: str | None = None) -> _Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        auth = "" if token is None else f"Authorization: Bearer {token}\r\n"
        return cls(reader, writer, f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{auth}\r\n".encode())

    async def get(self) -> int:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = next(
            (int(v) for k, _, v in (ln.partition(":") for ln in lines[1:]) if k.lower() == "content-length"), None
        )
        if length is None:
            raise OutputError(f"{lines[0]!r} came without a Content-Length; the load generator needs one")
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        self.writer.close()
        with suppress(OSError):
            await self.writer.wait_closed()


async def load(
    port: int, path: str, *, seconds: float, warmup: float, connections: int, token: str | None = None
) -> dict[str, Any]:
    """``connections`` workers, each on its own keep-alive connection, sending GETs back to back (with ``token`` as
    a bearer token, if given)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    pool = await asyncio.gather(*(_Connection.open(port, path, token) for _ in range(connections)))

    async def worker(connection: _Connection, until: float, record: bool) -> None:
        while (begun := time.perf_counter()) < until:
            try:
                status = await connection.get()
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                status, key = 0, type(exc).__name__
                connection = await _Connection.open(port, path, token)  # the old one is in an unknown state
            else:
                key = str(status)
            if not record:
                continue
            if 200 <= status < 300:
                latencies.append(time.perf_counter() - begun)
            else:
                errors[key] = errors.get(key, 0) + 1

    try:
        warm_until = time.perf_counter() + warmup
        await asyncio.gather(*(worker(c, warm_until, False) for c in pool))
        started = time.perf_counter()
        await asyncio.gather(*(worker(c, started + seconds, True) for c in pool))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.close() for c in pool))
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "elapsed_s": round(elapsed, 3),
        "rps": round(len(ordered) / elapsed, 1),
        "p50_ms": round(percentile(ordered, 0.5) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 2),
    }
