"""``soulfra run --db`` stopped by Ctrl-C (SIGINT) or SIGTERM while it draws its progress bar or its live view on a
terminal: it ends after the tick under way, says where it stopped, exits 0 (as the README documents), and the same
command goes on from that tick. A real process on a pseudo-terminal, since only a terminal shows the bar."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from .support import environment, soulfra

WAIT_S = 60.0
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def _read(primary: int, deadline: float) -> bytes | None:
    """What the terminal shows next (None: the process closed it), waiting until ``deadline``."""
    ready, _, _ = select.select([primary], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        return b""
    try:
        return os.read(primary, 65536)
    except OSError:  # EIO: every writer of the terminal has gone
        return None


def _interrupted(args: tuple[str, ...], home: Path, signum: signal.Signals, *, live: bool) -> tuple[int, str, str]:
    """Run ``soulfra ARGS`` with stderr (and with ``live`` stdout too) on a terminal, send ``signum`` once it has
    drawn a tick; its exit code, stdout (when not on the terminal) and what its terminal showed (escapes removed)."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    drawn = re.compile(rb"\btick ([1-9]\d*)\b" if live else rb"ticking\S*\s.*?\b([1-9]\d*)/100000")
    shown = b""
    with subprocess.Popen(
        [sys.executable, "-m", "soulfra", *args],
        stdin=subprocess.DEVNULL,
        stdout=secondary if live else subprocess.PIPE,
        stderr=secondary,
        env={**environment(home), "TERM": "xterm", "COLUMNS": "200"},
    ) as proc:
        os.close(secondary)
        try:
            deadline = time.monotonic() + WAIT_S
            while not drawn.search(ANSI.sub(b"", shown)):
                assert time.monotonic() < deadline, shown
                chunk = _read(primary, deadline)
                assert chunk is not None, shown  # the run ended before it was interrupted
                shown += chunk
            proc.send_signal(signum)
            deadline = time.monotonic() + WAIT_S
            while (chunk := _read(primary, deadline)) is not None:
                assert time.monotonic() < deadline, shown
                shown += chunk
            stdout = "" if proc.stdout is None else proc.stdout.read().decode()
            code = proc.wait(timeout=WAIT_S)
        finally:
            os.close(primary)
            if proc.poll() is None:
                proc.kill()
    return code, stdout, ANSI.sub(b"", shown).decode(errors="replace").replace("\r", "")


STOPPED = re.compile(
    r"^soulfra: stopped at tick (\d+) of (\S+), every tick up to it stored; "
    r"run again with the same --db and --seed to go on from there$",
    re.MULTILINE,
)


@pytest.mark.parametrize(
    ("signum", "live"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGTERM, True)],
    ids=["bar-SIGINT", "bar-SIGTERM", "live-SIGINT", "live-SIGTERM"],
)
def test_a_kept_run_on_a_terminal_stops_after_a_tick_and_the_same_command_goes_on(
    tmp_path: Path, signum: signal.Signals, live: bool
) -> None:
    db = f"sqlite:///{tmp_path / 'worlds.db'}"
    world = ("--seed", "4") if live else ("--seed", "4", "--agents", "1000")  # a bar needs 200,000 agent-steps
    drawn = ("--live", "--rate", "0") if live else ("--json",)
    args = ("run", *world, "--ticks", "100000", *drawn, "--db", db)
    code, stdout, shown = _interrupted(args, tmp_path, signum, live=live)
    assert code == 0, shown
    stopped = STOPPED.search(shown)
    assert stopped is not None, shown
    tick, instance = int(stopped[1]), stopped[2]
    assert 0 < tick < 100_000
    if not live:  # the report says the same
        report = json.loads(stdout)
        assert (report["tick"], report["ticks"], report["start_tick"], report["instance"]) == (tick, tick, 0, instance)
    assert "Traceback" not in shown and "Aborted" not in shown
    again = soulfra("run", *world, "--ticks", "2", "--json", "--db", db, home=tmp_path)
    assert again.returncode == 0, again.stderr
    continued = json.loads(again.stdout)
    assert (continued["instance"], continued["start_tick"], continued["tick"]) == (instance, tick, tick + 2)
