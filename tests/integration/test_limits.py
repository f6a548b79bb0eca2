"""Limits at the edge, against a real ``soulfra up``: bodies over their route's bound are refused (413) before they
are read when declared, and as soon as they pass the bound when not; a body that stops arriving is refused (408);
the server's memory grows by no more than a few MB during each. Names and ids in world files are bounded the same
on SQLite and PostgreSQL.

Each refusal's peak memory growth is printed (``pytest -s``): the peak resident size of the server process (its
high-water mark, reset before the request where Linux allows it) minus its resident size before the request.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
from sqlalchemy import create_engine, inspect

from soulfra.store import SqlStore

from .support import Server, assert_problem, one_error_line, running_server, small_tmpfs, soulfra

# The module's tests share an expensive module-scoped fixture: under pytest-xdist they all run in one worker.
pytestmark = pytest.mark.xdist_group("test_limits")

MIB = 1 << 20
RSS_BOUND = 16 * MIB  # what a refused request may cost the server, at most (its peak, not what it keeps)
UPLOAD_BOUND = 32 * MIB  # the server's --max-upload in these tests
ANSWER_DEADLINE_S = 20.0
HUGE = 100 * MIB
PACKAGE = "application/vnd.soulfra.package+zip"
PACKAGE_HEADERS = {"content-type": PACKAGE}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    flags = ["--max-upload", str(UPLOAD_BOUND), "--body-timeout", "1"]
    with running_server(tmp_path_factory.mktemp("limits"), extra=flags) as running:
        with running.client() as client:  # every route below once, so that growth is not first-use
            instance = client.get("/api/instances").json()["default"]
            client.post(f"/api/instances/{instance}/whispers", json={"text": "warm"}).raise_for_status()
            client.post("/api/import", content=b"not a package")
        yield running


@pytest.fixture(scope="module")
def whispers(server: Server) -> str:
    with server.client() as client:
        return f"/api/instances/{client.get('/api/instances').json()['default']}/whispers"


# -- a client that can stop sending, or never start ---------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    sent: int  # bytes of the body the client had sent when the answer came
    closed: bool  # the server closed the connection after its answer


def exchange(server: Server, head: bytes, body: Iterable[bytes] = ()) -> Reply:
    """Send ``head``, then ``body`` piece by piece until the server answers; read its answer."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_DEADLINE_S) as sock:
        sock.sendall(head)
        sent = 0
        for piece in body:
            if select.select([sock], [], [], 0)[0]:
                break  # the answer (or the close) is there: stop sending, as a client reading its socket would
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        data, closed = b"", False
        deadline = time.monotonic() + ANSWER_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                part = sock.recv(1 << 16)
            except ConnectionResetError:
                closed = True
                break
            except TimeoutError:
                break
            if not part:
                closed = True
                break
            data += part
    header, _, payload = data.partition(b"\r\n\r\n")
    assert header.startswith(b"HTTP/1.1 "), f"no answer within {ANSWER_DEADLINE_S} s (sent {sent} bytes): {data!r}"
    return Reply(status=int(header.split()[1]), body=json.loads(payload), sent=sent, closed=closed)


def request_head(path: str, *, length: int | None, token: str) -> bytes:
    """A POST's head, with the route's content type and ``token``."""
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    content_type = PACKAGE if path == "/api/import" else "application/json"
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Authorization: Bearer {token}\r\n{framing}\r\n\r\n"
    ).encode()


def chunked(total: int, piece: int = 64 << 10) -> Iterator[bytes]:
    """``total`` bytes of a JSON-looking body in chunked transfer encoding, then its last chunk."""
    yield b'5\r\n{"a":\r\n'
    filler = b" " * piece
    for _ in range(0, total, piece):
        yield f"{piece:x}\r\n".encode() + filler + b"\r\n"
    yield b"0\r\n\r\n"


@contextlib.contextmanager
def memory_growth(server: Server, what: str) -> Iterator[None]:
    """Assert that the server's peak resident size during the block stays within ``RSS_BOUND`` of where it was."""
    process = psutil.Process(server.proc.pid)
    peak = _resettable_peak(process)
    before = process.memory_info().rss
    yield
    after = _peak(process) if peak else process.memory_info().rss
    growth = max(0, after - before)
    print(f"\n{what}: server RSS grew by {growth / MIB:.1f} MiB ({'peak' if peak else 'after'})")
    assert growth < RSS_BOUND, f"{what}: the server grew by {growth / MIB:.1f} MiB"


def _resettable_peak(process: psutil.Process) -> bool:
    """Reset the process's resident high-water mark (Linux: ``clear_refs``); whether that worked."""
    try:
        Path(f"/proc/{process.pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return _peak(process) > 0


def _peak(process: psutil.Process) -> int:
    try:
        status = Path(f"/proc/{process.pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# -- bodies over their bound ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "code"),
    [("whispers", "body_too_large"), ("/api/instances", "body_too_large"), ("/api/import", "package_too_large")],
)
def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(
    server: Server, whispers: str, route: str, code: str
) -> None:
    path = whispers if route == "whispers" else route
    with memory_growth(server, f"declared {HUGE >> 20} MiB to {route}"):
        reply = exchange(
            server, request_head(path, length=HUGE, token=server.token)
        )  # the client sends no byte of the body
    assert reply.status == 413, reply
    assert reply.body["code"] == code
    assert str(HUGE) in reply.body["detail"]
    assert reply.closed


@pytest.mark.parametrize(("route", "code"), [("whispers", "body_too_large"), ("/api/import", "package_too_large")])
def test_a_chunked_body_over_the_limit_is_refused_once_it_passes_it(
    server: Server, whispers: str, route: str, code: str
) -> None:
    path = whispers if route == "whispers" else route
    with memory_growth(server, f"chunked {HUGE >> 20} MiB to {route}"):
        reply = exchange(server, request_head(path, length=None, token=server.token), chunked(HUGE))
    assert reply.status == 413, reply
    assert reply.body["code"] == code
    assert reply.sent < HUGE // 2, f"the answer came only after {reply.sent} bytes"
    assert reply.closed


def test_a_body_that_stops_arriving_is_refused_with_408(server: Server, whispers: str) -> None:
    for path in (whispers, "/api/import"):
        with memory_growth(server, f"a stalled body to {path}"):
            reply = exchange(server, request_head(path, length=1000, token=server.token), [b'{"text": "half a whisp'])
        assert reply.status == 408, reply
        assert reply.body["code"] == "body_timeout"
        assert "stopped arriving" in reply.body["detail"]
        assert reply.closed


def test_bodies_within_their_bounds_are_served(server: Server, whispers: str) -> None:
    with server.client() as client:
        ack = client.post(whispers, json={"text": "still heard"})
        assert ack.status_code == 202, ack.text
        # a world file near the 1,000,000 characters the model allows is more than the JSON bound, and allowed
        world = '[world]\nname = "padded"\n' + "#" * 900_000 + "\n"
        created = client.post("/api/instances", json={"id": "padded", "world": world, "rate": 1})
        assert created.status_code == 201, created.text
        assert client.delete("/api/instances/padded").status_code == 200
        over = client.post(whispers, json={"text": "x" * 400, "target": "*", "pad": "y" * (70 << 10)})
        assert_problem(over, 413, "body_too_large")


# -- package imports through a spooled upload ----------------------------------------------------------------------


def test_a_package_import_is_spooled_and_bounded(server: Server) -> None:
    with server.client() as client:
        source = client.get("/api/instances").json()["default"]
        package = client.get(f"/api/instances/{source}/export", params={"compact": True})
        assert package.status_code == 200, package.text
        imported = client.post(
            "/api/import", params={"as_id": "spooled", "start": False}, content=package.content, headers=PACKAGE_HEADERS
        )
        assert imported.status_code == 201, imported.text
        assert [item["id"] for item in imported.json()["imported"]] == ["spooled"]
        assert client.get("/api/instances/spooled").status_code == 200
        # streamed without a length, the same package goes through the same spool
        streamed = client.post(
            "/api/import",
            params={"as_id": "spooled-2", "start": False},
            content=iter([package.content]),
            headers=PACKAGE_HEADERS,
        )
        assert streamed.status_code == 201, streamed.text
        over = client.post("/api/import", content=package.content + b"\0" * UPLOAD_BOUND, headers=PACKAGE_HEADERS)
        assert_problem(over, 413, "package_too_large")
        # an upload within the bound is read from its spooled file, never held whole in memory
        junk = b"PK\x03\x04" + b"\0" * (UPLOAD_BOUND * 3 // 4)
        with memory_growth(server, f"an upload of {len(junk) >> 20} MiB read from its spool"):
            assert_problem(client.post("/api/import", content=junk, headers=PACKAGE_HEADERS), 422, "package_invalid")
    assert [path.name for path in server.data.iterdir() if path.name.startswith("tmp")] == []  # nothing spooled stays


# -- names and ids in world files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("world", "fragment"),
    [
        (f'[world]\nname = "{"n" * 999_000}"\n', "world.name is 999000 characters, over the limit of 200"),
        (f'[[agents]]\nid = "{"a" * 65}"\nmind = "executor"\n', "(at most 64 characters)"),
        (f'[[agents]]\nid = "{"a" * 999_000}"\nmind = "executor"\n', "(999000 characters)"),
    ],
    ids=["world-name", "agent-id", "huge-agent-id"],
)
def test_a_world_file_over_a_storage_bound_is_refused_on_every_backend(
    db_url: str, tmp_path: Path, world: str, fragment: str
) -> None:
    path = tmp_path / "world.toml"
    path.write_text(world)
    line = one_error_line(soulfra("run", "--world", str(path), "--db", db_url, "--ticks", "3"), 65)
    assert fragment in line
    assert len(line) < 400
    assert _stored_instances(db_url) == []


def _stored_instances(db_url: str) -> list[str]:
    engine = create_engine(db_url)
    try:
        if not inspect(engine).has_table("instances"):
            return []
    finally:
        engine.dispose()
    store = SqlStore.open(db_url)
    try:
        return [record.id for record in store.instances.list_instances()]
    finally:
        store.close()


def test_a_created_instance_over_a_storage_bound_is_refused(server: Server) -> None:
    with server.client() as client:
        world = f'[world]\nname = "{"n" * 300}"\n'
        detail = assert_problem(
            client.post("/api/instances", json={"id": "long", "world": world}), 422, "invalid_input"
        )
        assert "world.name is 300 characters, over the limit of 200" in detail
        assert client.get("/api/instances/long").status_code == 404


def test_an_upload_that_would_fill_the_data_disk_is_refused(tmp_path: Path) -> None:
    """The worlds commit to the same disk the upload is spooled on: an upload never takes its last 256 MiB."""
    with small_tmpfs(tmp_path / "disk", "258m") as disk, running_server(disk) as small, small.client() as client:
        answer = client.post("/api/import", content=b"x" * (4 << 20), headers=PACKAGE_HEADERS)
        detail = assert_problem(answer, 503, "storage_error")
        assert "would leave less than 256 MiB free on the server's disk" in detail
        assert client.get("/readyz").status_code == 200  # the worlds go on
