"""The integration tests' ways to run Soulfra: ``soulfra`` commands in this process (through the real ``main``, so
exit codes and one-line errors are the user's) or as subprocesses where a real process is the point (signals, stdin,
two writers at once), and ``soulfra up`` on a free loopback port with its own data directory and its own installation
(``SOULFRA_HOME``), stopped by its own PID.

Every wait has a deadline; a server that does not become ready, or does not stop, fails the test with its output.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import pytest
from typer.testing import CliRunner

from soulfra.cli import main

T = TypeVar("T")
Result = subprocess.CompletedProcess[str]

READY_DEADLINE_S = 30.0
STOP_DEADLINE_S = 20.0
CLI_TIMEOUT_S = 60.0
ACK_TIMEOUT = 30.0  # seconds to wait for one line from a live run (a cold start on a loaded machine included)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], T | None], *, timeout: float = 15.0, what: str = "a condition") -> T:
    """Poll ``predicate`` until it returns something other than None/False, within a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def environment(home: Path) -> dict[str, str]:
    """The environment of a process of the installation at ``home``; no server URL leaks in from outside."""
    env = {key: value for key, value in os.environ.items() if key != "SOULFRA_URL"}
    env["SOULFRA_HOME"] = str(home)
    return env


# -- the CLI in this process -------------------------------------------------------------------------------------


def soulfra(*args: str, stdin: str | None = None, home: Path | None = None) -> Result:
    """One ``soulfra`` command run in this process through ``main``, as the installed command runs it: its exit code,
    stdout and stderr. ``stdin`` is its input (None: empty); with ``home`` it is a command of the installation there
    and no server URL leaks in from outside (as in ``environment``)."""
    env: dict[str, str | None] = {} if home is None else {"SOULFRA_URL": None, "SOULFRA_HOME": str(home)}
    # Typer's runner swaps stdin, stdout, stderr and the environment for the call and puts them back after it.
    with CliRunner().isolation(input=stdin, env=env) as (out, err, _):
        try:
            main(list(args))
        except SystemExit as exit_:  # main always ends with sys.exit
            code = exit_.code
        else:
            pytest.fail(f"soulfra {shlex.join(args)} returned without an exit code")
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return subprocess.CompletedProcess(list(args), code if isinstance(code, int) else 1, stdout, stderr)


def soulfra_each(*commands: Sequence[str]) -> list[Result]:
    """Several ``soulfra`` commands, one after another in this process; their results in order."""
    return [soulfra(*args) for args in commands]


def soulfra_at(home: Path, *args: str) -> Result:
    """One ``soulfra`` command of the installation at ``home``, in this process."""
    return soulfra(*args, home=home)


def soulfra_each_at(home: Path, *commands: Sequence[str]) -> list[Result]:
    """Several ``soulfra`` commands of the installation at ``home``, one after another; their results in order."""
    return [soulfra(*args, home=home) for args in commands]


# -- the CLI as processes ------------------------------------------------------------------------------------------


def soulfra_processes(*commands: Sequence[str], env: dict[str, str] | None = None) -> list[Result]:
    """Run several ``soulfra`` processes at once (stdin closed) in ``env`` (None: this process's environment);
    their results in the order given."""
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-m", "soulfra", *args],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
            for args in commands
        ]
        results = []
        try:
            for args, proc in zip(commands, procs, strict=True):
                stdout, stderr = proc.communicate(timeout=CLI_TIMEOUT_S)
                results.append(subprocess.CompletedProcess(list(args), proc.returncode, stdout, stderr))
        finally:
            for proc in procs:  # after a timeout, none is left behind
                if proc.poll() is None:
                    proc.kill()
        return results


def soulfra_process(*args: str, stdin: str | None = None, home: Path | None = None) -> Result:
    """One ``soulfra`` process; ``stdin`` is its input (None: stdin closed), ``home`` its installation (None: this
    process's environment)."""
    env = None if home is None else environment(home)
    if stdin is None:
        return soulfra_processes(args, env=env)[0]
    return subprocess.run(
        [sys.executable, "-m", "soulfra", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
        env=env,
    )


def parsed(done: Result) -> dict[str, Any]:
    """The JSON a successful command printed."""
    assert done.returncode == 0, (done.args, done.stderr)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def one_error_line(done: Result, code: int | None = None) -> str:
    """A command refused with exit code ``code`` (any but 0 if not given) and one ``soulfra: error:`` line on
    stderr, no traceback."""
    if code is None:
        assert done.returncode != 0, (done.args, done.stdout, done.stderr)
    else:
        assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("soulfra: error: "), lines[0]
    return lines[0]


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (a disk that fills up); the test is skipped where mounting is not
    allowed (it needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# -- a live run ----------------------------------------------------------------------------------------------------


class RunningWorld:
    """``soulfra run --db`` in a subprocess, fed live inputs on stdin; its stdout lines arrive on a queue."""

    def __init__(self, url: str, *, seed: int, rate: str = "500", snapshot_every: str = "50") -> None:
        args = ["run", "--db", url, "--seed", str(seed), "--ticks", "0", "--inputs", "-", "--rate", rate]
        args += ["--snapshot-every", snapshot_every]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "soulfra", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.sent = 0
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stdout: IO[str]) -> None:
        for line in stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()
        self.sent += 1

    def read(self, context: str) -> dict[str, Any]:
        """The next line the run prints, waiting at most ``ACK_TIMEOUT`` seconds."""
        try:
            line = self.lines.get(timeout=ACK_TIMEOUT)
        except queue.Empty:
            self.kill()
            pytest.fail(f"{context}: no line from the run within {ACK_TIMEOUT} s")
        if line is None:
            code = self.proc.wait(timeout=ACK_TIMEOUT)
            stderr = self.proc.stderr.read() if self.proc.stderr is not None else ""
            self.kill()
            pytest.fail(f"{context}: the run ended early (exit {code}): {stderr}")
        result: dict[str, Any] = json.loads(line)
        return result

    def exit_line(self, code: int, *, timeout: float = ACK_TIMEOUT) -> str:
        """Wait for the run to end by itself with exit ``code`` and a last stderr line ``soulfra: error: ...``,
        never a traceback or an interpreter abort; returns that line."""
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the run did not end within {timeout} s")
        assert self.proc.stderr is not None
        stderr = self.proc.stderr.read()
        assert status == code, stderr
        assert "Traceback" not in stderr
        assert "Fatal Python error" not in stderr
        line = stderr.strip().splitlines()[-1]
        assert line.startswith("soulfra: error: "), stderr
        return line

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed."""
        self.proc.kill()
        self.proc.wait(timeout=ACK_TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(BrokenPipeError):  # stdin held lines the dead process never read
                    stream.close()


# -- the API -------------------------------------------------------------------------------------------------------


def assert_problem(response: httpx.Response, status: int, code: str) -> str:
    """An error answer: ``status`` and a body of exactly ``code`` and a non-empty ``detail``, which it returns."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "detail"}
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return str(body["detail"])


# -- the server ----------------------------------------------------------------------------------------------------


@dataclass
class Server:
    """A ``soulfra up`` process: data in ``data``, its installation in ``home``, its output in ``log``."""

    proc: subprocess.Popen[bytes]
    url: str
    data: Path
    home: Path
    log: Path
    request_timeout: float = 15.0  # of the clients made by ``client()``

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.data / 'soulfra.db'}"

    @property
    def token(self) -> str:
        """The admin token ``soulfra up`` keeps in its home (the one the CLI sends by default)."""
        return (self.home / "token").read_text().strip()

    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def client(self, *, anonymous: bool = False) -> httpx.Client:
        """A client of this server sending the home's admin token (``anonymous``: no credentials)."""
        headers = {} if anonymous else self.auth()
        return httpx.Client(base_url=self.url, timeout=self.request_timeout, headers=headers)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM this server's own PID and wait for it to exit; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_DEADLINE_S)
            pytest.fail(f"the server did not exit within {STOP_DEADLINE_S} s of SIGTERM:\n{self.output()}")


def start_server(
    root: Path,
    *,
    log: str = "server.log",
    rate: str = "20",
    request_timeout: float = 15.0,
    extra: Sequence[str] = (),
) -> Server:
    """``soulfra up`` on a free loopback port, data in ``root/data``, its installation in ``root/home``, its output
    appended to ``root/<log>``, with ``extra`` flags; returns once it is ready."""
    port = free_port()
    data, home, log_path = root / "data", root / "home", root / log
    root.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as sink:
        command = ["up", "--host", "127.0.0.1", "--port", str(port), "--data", str(data), "--rate", rate, *extra]
        proc = subprocess.Popen(
            [sys.executable, "-m", "soulfra", *command], stdout=sink, stderr=sink, env=environment(home)
        )
    server = Server(
        proc=proc, url=f"http://127.0.0.1:{port}", data=data, home=home, log=log_path, request_timeout=request_timeout
    )
    deadline = time.monotonic() + READY_DEADLINE_S
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode} before it was ready:\n{server.output()}")
            with contextlib.suppress(httpx.TransportError):
                if client.get("/readyz").status_code == 200:
                    return server
            if time.monotonic() > deadline:
                server.stop()
                pytest.fail(f"the server was not ready within {READY_DEADLINE_S} s:\n{server.output()}")
            time.sleep(0.05)


@contextlib.contextmanager
def running_server(
    root: Path,
    *,
    rate: str = "20",
    request_timeout: float = 15.0,
    extra: Sequence[str] = (),
    slow_stop_ok: bool = False,
) -> Iterator[Server]:
    """A ``start_server`` stopped on the way out, which must exit cleanly (code 0). ``slow_stop_ok``: a stop that
    took longer than the server's stop timeout and ended the process at once, as documented (code 1 and its line),
    is accepted too: for a server left holding many large worlds by a test."""
    server = start_server(root, rate=rate, request_timeout=request_timeout, extra=extra)
    try:
        yield server
    finally:
        code = server.stop()
        forced = code == 1 and "the stop did not complete within" in server.output()
        assert code == 0 or (slow_stop_ok and forced), f"the server exited with {code}:\n{server.output()}"
