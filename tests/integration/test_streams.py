"""Live streams against a real ``soulfra up``: clients that never read do not slow the world, and a stop completes
with streams open and requests in flight, losing no acknowledged input; a second signal ends a stuck stop.

The stream clients are raw sockets that send their request and never read a byte: a stuck consumer, as the server
sees one. Tick rates are compared only as a ratio measured in the same run.
"""

from __future__ import annotations

import contextlib
import json
import select
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support import Server, soulfra, start_server, wait_for

INSTANCE = "world-0"
STOP_BOUND_S = 10.0  # a SIGTERM stops the server within this, whatever its clients do


def kill(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(timeout=STOP_BOUND_S)


@contextlib.contextmanager
def unread_streams(server: Server, count: int, path: str = "/api/stream?after=0") -> Iterator[list[socket.socket]]:
    """``count`` connections that ask for the live stream and never read; yielded once the server answers each. Each
    asks for every event still kept (``after=0``), so its connection's buffers fill at once, not only as the world
    goes on."""
    host, port = server.url.removeprefix("http://").split(":")
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection((host, int(port)), timeout=5.0)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            sockets.append(sock)
        waiting = set(sockets)

        def answered() -> bool:
            readable, _, _ = select.select(list(waiting), [], [], 0.05)  # readable: the answer began; none is read
            waiting.difference_update(readable)
            return not waiting

        wait_for(answered, timeout=30.0, what=f"the server to answer {count} stream requests")
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def runtime_tick(client: httpx.Client) -> int:
    response = client.get(f"/api/instances/{INSTANCE}/status")
    assert response.status_code == 200, response.text
    return int(response.json()["platforms"]["runtime"]["tick"])


def stream_seq(client: httpx.Client) -> int:
    response = client.get(f"/api/instances/{INSTANCE}/status")
    assert response.status_code == 200, response.text
    return int(response.json()["platforms"]["surface"]["stream_seq"])


def tick_rate(client: httpx.Client, span: float) -> float:
    """Ticks per second of the default instance over about ``span`` seconds, from its status."""
    start_tick, started = runtime_tick(client), time.monotonic()
    deadline = started + span
    while time.monotonic() < deadline:
        time.sleep(0.1)  # pacing of a rate measurement over a fixed span, not a wait for a condition
    return (runtime_tick(client) - start_tick) / (time.monotonic() - started)


# -- back-pressure -------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.serial
def test_unread_streams_do_not_slow_the_world(tmp_path: Path) -> None:
    server = start_server(tmp_path, rate="0", extra=["--agents", "60"])
    try:
        with server.client() as client:
            tick_rate(client, 0.5)  # past the start
            before = tick_rate(client, 2.0)
            with unread_streams(server, 200):
                watched = tick_rate(client, 2.5)
            after = tick_rate(client, 2.0)
        alone = (before + after) / 2  # around the streams, so a change in the machine's load weighs on both sides
        ratio = watched / alone
        print(f"\ntick rate without streams {alone:.0f}/s, with 200 unread streams {watched:.0f}/s: ratio {ratio:.2f}")
        assert ratio >= 0.5, f"200 unread streams slowed the world from {alone:.0f} to {watched:.0f} ticks/s"
    finally:
        code = server.stop()
    assert code == 0, server.output()
    assert "Traceback" not in server.output()


def test_a_stream_resumes_after_a_client_that_fell_behind(tmp_path: Path) -> None:
    """The ids of one stream are consecutive; a client asking from an id no longer kept is told how many it missed,
    then goes on from the oldest kept."""
    server = start_server(tmp_path, rate="0")
    try:
        with server.client() as client:
            wait_for(
                lambda: stream_seq(client) > 3 * 1024, timeout=90, what="a few thousand stream events"
            )  # slow when loaded
            with client.stream("GET", "/api/stream", headers={"Last-Event-ID": "1"}) as response:
                assert response.status_code == 200
                events = read_events(response, 50)
    finally:
        code = server.stop()
    assert code == 0, server.output()
    assert events[0][0] == "retry"
    missed = [json.loads(data)["count"] for kind, data in events if kind == "missed"]
    ids = [int(json.loads(data)["seq"]) for kind, data in events if kind not in ("retry", "missed")]
    assert missed, "the client was not told what it missed"
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert ids[0] == 1 + missed[0] + 1  # the oldest kept follows what was missed after id 1


def read_events(response: httpx.Response, count: int) -> list[tuple[str, str]]:
    """The first ``count`` events of a server-sent event stream as (event or "retry", data), comments skipped."""
    events: list[tuple[str, str]] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if "retry" in fields:
                events.append(("retry", fields["retry"]))
            elif "data" in fields:
                events.append((fields.get("event", "message"), fields["data"]))
            fields = {}
            if len(events) >= count:
                break
            continue
        if not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return events


# -- stopping ------------------------------------------------------------------------------------------------------


class Whisperers:
    """``count`` clients posting whispers one after another until told to stop; each keeps what was acknowledged."""

    def __init__(self, server: Server, count: int) -> None:
        self.server = server
        self.acked: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._post, args=(n,), daemon=True) for n in range(count)]

    def __enter__(self) -> Whisperers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=30.0)

    def _post(self, n: int) -> None:
        with httpx.Client(base_url=self.server.url, timeout=30.0, headers=self.server.auth()) as client:
            sent = 0
            while not self.stopping.is_set():
                text = f"whisper {n}-{sent}"
                sent += 1
                try:
                    response = client.post(f"/api/instances/{INSTANCE}/whispers", json={"text": text})
                except httpx.TransportError:
                    if self.server.proc.poll() is not None:
                        return
                    continue
                if response.status_code == 202:
                    with self._lock:
                        self.acked.append({"text": text, **response.json()})

    def count(self) -> int:
        with self._lock:
            return len(self.acked)


def stored_inputs(server: Server) -> dict[int, dict[str, Any]]:
    done = soulfra("history", "--db", server.db_url, "--instance", INSTANCE, "--limit", "1000000", "--json")
    assert done.returncode == 0, done.stderr
    return {int(row["seq"]): row for row in json.loads(done.stdout)["inputs"]}


@pytest.mark.slow
def test_sigterm_stops_with_streams_open_and_requests_in_flight(tmp_path: Path) -> None:
    server = start_server(tmp_path, rate="0", extra=["--agents", "30"])
    try:
        with unread_streams(server, 100), Whisperers(server, 20) as whisperers:
            wait_for(lambda: whisperers.count() >= 40, what="whispers acknowledged")
            server.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            try:
                code = server.proc.wait(timeout=STOP_BOUND_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the server did not stop within {STOP_BOUND_S} s of SIGTERM:\n{server.output()}")
            took = time.monotonic() - signalled
    finally:
        kill(server)
    print(f"\nstopped {took:.2f} s after SIGTERM, {len(whisperers.acked)} whispers acknowledged")
    assert code == 0, server.output()
    assert "Traceback" not in server.output()
    stored = stored_inputs(server)
    lost = [ack for ack in whisperers.acked if stored.get(ack["seq"], {}).get("text") != ack["text"]]
    assert not lost, f"{len(lost)} acknowledged whispers are not in the input log, e.g. {lost[:3]}"


def test_a_second_signal_ends_a_stuck_stop(tmp_path: Path) -> None:
    """Another process holds the database, so the world cannot be written and the stop that SIGTERM began cannot
    finish; a second SIGTERM ends the process at once, with a non-zero status and one line saying so. Until then
    the server goes on answering: only the world waits for the database, never the event loop."""
    server = start_server(tmp_path, rate="50")
    holder = sqlite3.connect(server.data / "soulfra.db", timeout=30.0, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # the server's next write waits for it (its busy timeout is 30 s)
        with server.client() as client:
            wait_for(stands_still(client), what="the world to be held by the database")
            assert answers(client)
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "soulfra: stopping" in server.output(), what="the stop to begin")
        assert server.proc.poll() is None, server.output()
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(timeout=STOP_BOUND_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"a second SIGTERM did not end the stuck stop:\n{server.output()}")
    finally:
        holder.rollback()
        holder.close()
        kill(server)
    assert code != 0
    assert "SIGTERM again while stopping: exiting now" in server.output()


def stands_still(client: httpx.Client, span: float = 1.0) -> Callable[[], bool]:
    """A check that holds once the runtime has stood at one tick for ``span`` seconds (at 50 ticks a second)."""
    first_seen: dict[int, float] = {}

    def check() -> bool:
        since = first_seen.setdefault(runtime_tick(client), time.monotonic())
        return time.monotonic() - since >= span

    return check


def answers(client: httpx.Client) -> bool:
    try:
        return client.get("/healthz", timeout=0.5).status_code == 200
    except httpx.TimeoutException:
        return False
