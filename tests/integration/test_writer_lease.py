"""One writer per world, seen as a user sees it: a second ``soulfra up`` on one data directory and a second
``soulfra run --db`` on one instance refuse with one line naming the first; a killed writer's successor continues
with every acknowledged input; storage that fails under a live run ends it with the documented exit code.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import stat
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from soulfra.durable import DurableWorld
from soulfra.errors import LeaseHeldError
from soulfra.store import SqlStore
from soulfra.world import DEFAULT_WORLD

from .support import (
    ACK_TIMEOUT,
    RunningWorld,
    free_port,
    one_error_line,
    parsed,
    small_tmpfs,
    soulfra,
    soulfra_process,
    soulfra_processes,
    start_server,
)

SEED = 3


def _rows(url: str) -> tuple[int, int]:
    """How many instances and inputs the database holds."""
    store = SqlStore.open(url, migrate=False)
    try:
        records = store.instances.list_instances()
        return len(records), sum(store.inputs.count(r.id) for r in records)
    finally:
        store.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_second_server_on_one_data_directory_refuses_and_a_killed_one_is_succeeded(tmp_path: Path) -> None:
    server = start_server(tmp_path / "a")
    try:
        with server.client() as client:
            ack = client.post("/api/instances/world-0/whispers", json={"text": "first", "target": "arty"}).json()
        before = _rows(server.db_url)
        second = soulfra_process(
            "up", "--host", "127.0.0.1", "--port", str(free_port()), "--data", str(server.data), home=server.home
        )
        line = one_error_line(second, 75)
        assert f"already being run by pid {server.proc.pid} on host {socket.gethostname()} since " in line
        assert _rows(server.db_url) == before  # the refused server wrote nothing
        assert _mode(server.data) == 0o700
        for name in ("soulfra.db", "soulfra.db-wal"):
            assert _mode(server.data / name) == 0o600, name
        assert _mode(server.data / "soulfra.db.leases") == 0o700
    finally:
        server.proc.send_signal(signal.SIGKILL)  # no flush, no release: the lock dies with the process
        server.proc.wait(timeout=ACK_TIMEOUT)
    successor = start_server(tmp_path / "a", log="successor.log")
    try:
        with successor.client() as client:
            logged = client.get("/api/instances/world-0/inputs").json()["inputs"]
        assert [(i["seq"], i["input"]["text"]) for i in logged] == [(ack["seq"], "first")]
    finally:
        assert successor.stop() == 0
    assert parsed(soulfra("verify", "--db", successor.db_url, "--json"))["ok"]


def test_a_server_whose_default_world_another_process_runs_refuses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    world = RunningWorld(f"sqlite:///{data / 'soulfra.db'}", seed=0, rate="20")
    try:
        world.send({"type": "whisper", "target": "arty", "text": "held"})
        assert "ack" in world.read("a whisper to the held world")
        refused = soulfra_process("up", "--host", "127.0.0.1", "--port", str(free_port()), "--data", str(data))
        # A first start of an installation logs the admin token it made, and its audit row (INFO, as JSON lines off a
        # terminal), before it meets the lease; the refusal is the one line that is not a log record.
        logged = [row for row in refused.stderr.splitlines() if not row.startswith('{"time": ')]
        line = one_error_line(subprocess.CompletedProcess(refused.args, refused.returncode, refused.stdout,
                                                          "\n".join(logged) + "\n"), 75)  # fmt: skip
        assert f"instance world-0 is already being run by pid {world.proc.pid} " in line
    finally:
        world.kill()


def test_a_second_run_of_one_instance_refuses_and_a_killed_one_is_succeeded(db_url: str) -> None:
    world = RunningWorld(db_url, seed=SEED, rate="50")
    try:
        world.send({"type": "whisper", "target": "arty", "text": "kept"})
        ack = world.read("the first whisper")
        assert "ack" in ack, ack
        world.send({"type": "whisper", "target": "arty", "text": "too far", "tick": 2**62})
        refused = world.read("a whisper past the horizon")
        assert refused["code"] == "invalid_input", refused
        assert "past the world's tick" in refused["detail"]
        second = soulfra("run", "--db", db_url, "--seed", str(SEED), "--ticks", "5")
        line = one_error_line(second, 75)
        assert f"instance world-{SEED} is already being run by pid {world.proc.pid} " in line
    finally:
        world.kill()
    resumed = parsed(soulfra("run", "--db", db_url, "--seed", str(SEED), "--ticks", "10", "--json"))
    assert resumed["instance"] == f"world-{SEED}"
    history = parsed(soulfra("history", "--db", db_url, "--json"))
    assert [(i["seq"], i["text"]) for i in history["inputs"]] == [(ack["ack"], "kept")]
    assert parsed(soulfra("verify", "--db", db_url, "--json"))["ok"]


# -- storage failing under a live run -------------------------------------------------------------------------------


class Proxy:
    """A TCP relay on loopback to the database server, cut at will: the database gone from under a running writer."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if not self.open:
                    client.close()
                    return
                upstream = socket.create_connection(self.target)
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self.lock:
            self.open = False
            with contextlib.suppress(OSError):
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            self.listener.close()
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets.clear()


@pytest.mark.postgres
def test_a_live_run_whose_database_goes_away_exits_69(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    proxy = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    through = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    world = RunningWorld(through, seed=SEED, rate="100")
    try:
        world.send({"type": "whisper", "target": "arty", "text": "before"})
        assert "ack" in world.read("a whisper before the cut")
        proxy.cut()
        world.send({"type": "whisper", "target": "arty", "text": "after"})
        assert "refused" in world.exit_line(69)
    finally:
        world.kill()


def test_a_live_run_on_a_full_disk_exits_74(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", "600k") as disk:
        url = f"sqlite:///{disk / 'w.db'}"
        world = RunningWorld(url, seed=SEED, rate="2000", snapshot_every="1")
        try:
            world.send({"type": "whisper", "target": "arty", "text": "before"})
            assert "ack" in world.read("a whisper before the disk fills")
            assert "full" in world.exit_line(74, timeout=ACK_TIMEOUT * 4)  # a snapshot every tick fills 600 KiB
        finally:
            world.kill()


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--ticks", "5"],
        ["state"],
        ["history"],
        ["verify"],
        ["db", "upgrade"],
        ["export", "--all", "--output", "{tmp}/never.soulpkg"],
    ],
    ids=lambda c: c[0] if c[0] != "db" else "db-upgrade",
)
def test_every_database_command_says_69_in_one_line_when_the_database_is_unreachable(
    command: list[str], tmp_path: Path
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"  # nothing listens there
    args = [arg.format(tmp=tmp_path) for arg in command]
    line = one_error_line(soulfra(*args, "--db", url), 69)
    assert "refused" in line


def test_two_writers_starting_at_once_on_a_new_database_are_one_writer(db_url: str) -> None:
    """Both migrate the new database at once (one waits for the other), then one runs and the other is refused
    or, if the first has finished by then, continues after it."""
    run = ["run", "--db", db_url, "--seed", str(SEED), "--ticks", "30", "--json"]
    first, second = soulfra_processes(run, run)
    assert sorted([first.returncode, second.returncode]) in ([0, 0], [0, 75]), (first.stderr, second.stderr)
    for done in (first, second):
        if done.returncode == 75:
            assert "is already being run by pid" in one_error_line(done, 75)
    report = parsed(soulfra("verify", "--db", db_url, "--json"))
    assert report["ok"]
    assert report["ticks"] == 30 * [first.returncode, second.returncode].count(0)


def test_twins_made_at_once_leave_one_instance(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two makers of one seed's world that both found none and both made one (the race two ``run --db`` on a new
    database can hit): the later twin is deleted and its maker opens the first instead, refused while the first's
    maker runs it and continuing it once that has stopped."""
    first_store, second_store = SqlStore.open(db_url), SqlStore.open(db_url)  # two writers, each with its leases
    try:
        first = DurableWorld.open_or_create(first_store, SEED, DEFAULT_WORLD)
        for _ in range(5):
            first.step()
        first.flush()
        real_find = second_store.instances.find
        looked: list[int] = []

        def find_before_the_first_was_made(seed: int) -> list[object]:
            looked.append(seed)
            return [] if len(looked) == 1 else list(real_find(seed))

        monkeypatch.setattr(second_store.instances, "find", find_before_the_first_was_made)
        with pytest.raises(LeaseHeldError):
            DurableWorld.open_or_create(second_store, SEED, DEFAULT_WORLD)
        assert looked == [SEED, SEED]  # it made a twin, then looked again
        assert [r.id for r in real_find(SEED)] == [first.instance_id]  # the twin is gone
        assert second_store.leases.held() == []

        first.close()
        first_store.leases.release(first.instance_id)
        looked.clear()  # the same race again, now that the first one's maker has stopped
        again = DurableWorld.open_or_create(second_store, SEED, DEFAULT_WORLD)
        assert (again.instance_id, again.tick) == (first.instance_id, 5)  # the first, continued where it stopped
        assert [r.id for r in real_find(SEED)] == [first.instance_id]
    finally:
        first_store.close()
        second_store.close()
