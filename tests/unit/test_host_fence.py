"""A cluster host's fence reads its raylet's state: a process that has ended, reaped or not, or whose main thread
has exited while its other threads run on (listed ``<defunct>``, its children still under it), has ended."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soulfra.cluster.host import ended

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the fence reads /proc (Linux)")

# The main thread leaves by pthread_exit while a daemon thread sleeps on: the process lives, its leader a zombie.
LEADER_EXITS = """
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def _until_zombie(pid: int) -> None:
    deadline = time.monotonic() + 10
    while _state(pid) != "Z":
        assert time.monotonic() < deadline, f"process {pid} never became a zombie"
        time.sleep(0.02)


def test_a_running_process_has_not_ended() -> None:
    assert not ended(os.getpid())
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as child:
        try:
            assert not ended(child.pid)
        finally:
            child.kill()


def test_an_exited_process_has_ended_before_and_after_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    _until_zombie(child.pid)  # exited, not yet waited for
    assert ended(child.pid)
    child.wait()
    assert ended(child.pid)  # gone from /proc


def test_a_process_whose_main_thread_exited_has_ended_though_its_threads_run_on() -> None:
    with subprocess.Popen([sys.executable, "-c", LEADER_EXITS]) as child:
        try:
            _until_zombie(child.pid)
            assert len(os.listdir(f"/proc/{child.pid}/task")) == 2  # the sleeping thread still runs
            assert ended(child.pid)
        finally:
            child.kill()
