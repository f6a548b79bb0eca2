"""The README as a script: its shell examples, read in order and typed into one shell, as a user would.

``blocks`` reads the README's fenced blocks. ``Shell`` is one long-lived ``bash`` (with job control, so Ctrl-C reaches
a command run in the background the way it reaches one in a terminal) in a fresh directory with a fresh ``HOME``,
into which each command is typed; exports, ``cd`` and background jobs (``soulfra up &``) carry over from one command
to the next, as in a terminal. Each command's stdout, stderr and exit code are kept.

Commands that run until Ctrl-C (a server in the foreground, ``--ticks 0``, ``curl -N``) are started in the background,
left to run until they have shown they work (the server answers on its port, or the command has printed something),
then sent SIGINT, as a user would press Ctrl-C.

Blocks fenced as ``text`` are shown, not typed: sample output, and commands that need what a test run has not got
or should not start here: a container engine (``docker compose``), a Kubernetes cluster (``kubectl apply``), a Ray
cluster of several nodes (``soulfra cluster local`` and ``join``: ``test_cluster_cli.py`` and ``test_cluster_join.py``
run them), the local model answering for minutes (``soulfra model serve`` with a language world:
``test_local_model.py``), and Prometheus' ``promtool`` (``test_monitoring.py``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
COMMAND_TIMEOUT_S = 180.0
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# A command the user stops with Ctrl-C: a server in the foreground, a run with no end, a stream.
UNTIL_CTRL_C = re.compile(
    r"^(\w+=\S+ )*(soulfra (up|serve|watch)\b(?!.*--once)|soulfra run .*--ticks 0\b|curl .*-\w*N)"
)
SERVER = re.compile(r"^(\w+=\S+ )*soulfra (up|serve (api|meta))\b")  # says "serving on", then answers on a port
STOPPED = (0, 130)  # a command stopped with Ctrl-C ends cleanly, or says it was interrupted


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, the rest of its info string, its text and the line it starts on."""

    lang: str
    info: str
    body: str
    line: int


def blocks(text: str) -> list[Block]:
    return [
        Block(m.group(1), m.group(2).strip(), m.group(3), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


@dataclass(frozen=True)
class Command:
    """One command of a block (its continuation lines joined) and, in a ``console`` block, the output shown under it."""

    text: str
    expected: tuple[str, ...] = ()


def commands(block: Block) -> list[Command]:
    """The commands of a ``sh`` block (every line, ``\\`` continuations joined, comments and blanks dropped) or of
    a ``console`` block (the ``$ `` lines, each with the output lines shown under it)."""
    found: list[Command] = []
    pending = ""
    lines = block.body.splitlines()
    for line in lines:
        if block.lang == "console":
            if line.startswith("$ "):
                found.append(Command(line[2:]))
            elif found and line.strip():
                found[-1] = Command(found[-1].text, (*found[-1].expected, line))
            continue
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        found.append(Command(pending + line.strip()))
        pending = ""
    return found


def bare(command: str) -> str:
    """The command without its trailing comment (an unquoted ``#`` after a space) and surrounding space."""
    quote = ""
    for index, char in enumerate(command):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or command[index - 1].isspace()):
            return command[:index].strip()
    return command.strip()


def matches(expected: str, actual: str) -> bool:
    """Whether the shown line ``expected`` is a line of ``actual``, ``…`` standing for any text."""
    pattern = ".*".join(re.escape(part) for part in expected.strip().split("…"))
    return re.search(rf"^\s*{pattern}\s*$", actual, re.MULTILINE) is not None


@dataclass
class Ran:
    command: str
    code: int
    out: str
    err: str
    stopped: bool = False  # sent Ctrl-C by the shell


@dataclass
class Shell:
    """One ``bash`` the README's commands are typed into, in ``cwd``, with ``env``."""

    cwd: Path
    env: dict[str, str]
    log: Path = field(init=False)
    count: int = 0

    def __post_init__(self) -> None:
        self.log = self.cwd.parent / "shell"
        self.log.mkdir()
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=self.cwd, env=self.env, stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self._type("set -m")  # job control: a job in the background gets Ctrl-C as it would in a terminal

    def _type(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def _files(self, n: int) -> tuple[Path, Path, Path, Path]:
        return tuple(self.log / f"{n}.{kind}" for kind in ("out", "err", "rc", "pid"))  # type: ignore[return-value]

    def run(self, command: str) -> Ran:
        """Type ``command`` and wait for it; a command that runs until Ctrl-C gets one once it has shown it works."""
        self.count += 1
        out, err, rc, pid = self._files(self.count)
        line = bare(command)
        if UNTIL_CTRL_C.match(line) and not line.endswith("&"):
            self._type(f"{{ {line}\n}} >{out} 2>{err} & echo $! >{pid}.tmp; mv {pid}.tmp {pid}")
            job = int(self._wait(pid, f"{command} to start"))
            self._until_working(command, line, job, out, err)
            os.killpg(job, signal.SIGINT)
            self._type(f"wait {job}; echo $? >{rc}.tmp; mv {rc}.tmp {rc}")
        else:
            self._type(f"{{ {line}\n}} >{out} 2>{err}; echo $? >{rc}.tmp; mv {rc}.tmp {rc}; (exit $(cat {rc}))")
        code = int(self._wait(rc, command))
        if line.endswith("&") and SERVER.match(line):
            self._until_serving(command, line, out, err)
        stopped = UNTIL_CTRL_C.match(line) is not None and not line.endswith("&")
        return Ran(command, code, out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8"), stopped)

    def _wait(self, path: Path, what: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"README: timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)
        return path.read_text(encoding="utf-8").strip()

    def _until_working(self, command: str, line: str, job: int, out: Path, err: Path) -> None:
        """Until the command in the background job ``job`` shows it works: a server answers on its port; anything
        else has run for a few seconds (printing something, if it prints before it is stopped, two seconds before
        that)."""
        if SERVER.match(line):
            self._until_serving(command, line, out, err)
            return
        deadline = time.monotonic() + 3.0
        while not (out.exists() and out.stat().st_size) and not (err.exists() and err.stat().st_size):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(2.0)
        if not _alive(job):
            raise AssertionError(f"README: {command!r} ended before it was stopped: {err.read_text()}")

    def _until_serving(self, command: str, line: str, out: Path, err: Path) -> None:
        port = re.search(r"--(?:metrics-)?port\s+(\d+)", line)
        address = ("127.0.0.1", int(port.group(1)) if port else int(self.env.get("SOULFRA_PORT", "8000")))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "serving on" not in (said := err.read_text(encoding="utf-8") if err.exists() else ""):
            if "soulfra: error:" in said:
                raise AssertionError(f"README: {command!r} did not start: {said}")
            if time.monotonic() > deadline:
                raise AssertionError(f"README: {command!r} did not serve in {READY_TIMEOUT_S} s: {err.read_text()}")
            time.sleep(0.05)
        while True:  # the line comes as the server binds; it answers a moment later
            try:
                socket.create_connection(address, timeout=5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> dict[int, int]:
        """End the shell after sending Ctrl-C to every job still in the background; each job's exit code."""
        codes: dict[int, int] = {}
        for job in _jobs(self.process.pid):
            os.killpg(job, signal.SIGINT)
        self._type("for job in $(jobs -p); do wait $job; echo $job $?; done >" + str(self.log / "jobs"))
        self._type("exit")
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for job in _jobs(self.process.pid):
                os.killpg(job, signal.SIGKILL)
            self.process.kill()
            raise
        jobs = self.log / "jobs"
        if not jobs.exists():
            raise AssertionError(f"README: the shell ended before the README did (exit {self.process.returncode})")
        for row in jobs.read_text(encoding="utf-8").splitlines():
            pid, code = row.split()
            codes[int(pid)] = int(code)
        return codes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _jobs(shell: int) -> list[int]:
    """The process groups of the shell's background jobs: its children that lead a group of their own."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == shell and int(fields[2]) == int(entry.name):
            found.append(int(entry.name))
    return found
