"""``soulfra watch`` against a real ``soulfra up``: one frame (``--once``, ``--json``) of the server's default
instance, the live view followed until Ctrl-C, and the one-line refusals for no server and an unknown instance."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from .support import Server, environment, free_port, one_error_line, running_server, soulfra_at, wait_for

# The module's tests share one server: under pytest-xdist they all run in one worker.
pytestmark = pytest.mark.xdist_group("test_watch")

AGENTS = ("Cal Riven", "Arty", "Agent Zero")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WAIT_S = 20.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("watch"), rate="20") as running:
        with running.client() as client:  # a few ticks in, so that there is something to show
            wait_for(lambda: client.get("/readyz").json()["tick"] >= 10, what="tick 10")
        yield running


def test_once_draws_the_default_instance(server: Server) -> None:
    done = soulfra_at(server.home, "watch", "--url", server.url, "--once")
    assert done.returncode == 0, done.stderr
    assert re.search(r"Soulfra world-0 — tick \d+, loop \d+, 3 agents", done.stdout), done.stdout
    for text in (*AGENTS, "latest posts", "rituals", "temperature"):
        assert text in done.stdout


def test_json_is_one_frame_of_the_named_instance(server: Server) -> None:
    done = soulfra_at(server.home, "watch", "--url", server.url, "--instance", "world-0", "--json")
    assert done.returncode == 0, done.stderr
    frame = json.loads(done.stdout)
    assert (frame["instance"], frame["agents"]) == ("world-0", 3)
    assert [row["name"] for row in frame["shown"]] == list(AGENTS)
    assert frame["tick"] >= 10
    assert frame["vibe"]["condition"] in {"calm-bloom", "echo-storm", "trust-surge", "drift-wave", "chaos-bloom"}
    # the feeds hold what the server's surface already had, named as the view names agents
    assert all(re.match(r"\[\d+\] ", line) for line in frame["posts"] + frame["rituals"])
    assert frame["posts"], frame


def test_live_view_follows_the_stream_until_ctrl_c(server: Server) -> None:
    env = environment(server.home) | {"TTY_COMPATIBLE": "1", "TERM": "xterm"}  # frames drawn as on a terminal
    with subprocess.Popen(
        [sys.executable, "-m", "soulfra", "watch", "--url", server.url, "--rate", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
    ) as proc:  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        chunks: queue.Queue[bytes] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(proc.stdout, chunks), daemon=True)
        reader.start()
        seen: list[str] = []

        def text() -> str:
            while not chunks.empty():
                seen.append(chunks.get().decode(errors="replace"))
            return ANSI.sub("", "".join(seen))

        try:
            first = int(wait_for(lambda: re.search(r"tick (\d+)", text()), timeout=WAIT_S, what="a frame")[1])

            def streamed() -> bool:  # a post or ritual of a tick after the first frame: only the stream brings those
                return any(int(tick) > first for tick in re.findall(r"│ \[(\d+)\] ", text()))

            wait_for(streamed, timeout=WAIT_S, what="a post or ritual from the stream")
            assert all(name in text() for name in AGENTS)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=WAIT_S)
            reader.join(timeout=WAIT_S)
        stderr = proc.stderr.read().decode()
    assert code == 0, stderr
    assert "Traceback" not in stderr and "interrupted" not in stderr


def _pump(stdout: IO[bytes], chunks: queue.Queue[bytes]) -> None:
    while chunk := stdout.read1(65536):  # type: ignore[attr-defined]  # a BufferedReader's
        chunks.put(chunk)


def test_no_server_is_exit_69_in_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for mode in (["--once"], ["--json"], []):  # the live view too: it reads the current state first
        line = one_error_line(soulfra_at(tmp_path, "watch", "--url", url, *mode), 69)
        assert f"no Soulfra server at {url}" in line


def test_an_unknown_instance_is_exit_66_in_one_line(server: Server) -> None:
    line = one_error_line(soulfra_at(server.home, "watch", "--url", server.url, "-i", "world-404", "--once"), 66)
    assert "world-404" in line
