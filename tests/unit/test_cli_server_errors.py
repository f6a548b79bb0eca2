"""A client command says what went wrong with the server it was pointed at: nothing listening means no server; a
server that takes the connection and then stays silent, or answers with something that is not HTTP, is reported as
that, never as "no Soulfra server". Each is one line on stderr and exit code 69.

The servers here are plain sockets on a free loopback port, run by a thread of the test.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from soulfra.cli import EXIT_CODES, main
from soulfra.cli import server as cli_server
from soulfra.errors import ServerUnavailableError


class SocketServer:
    """Accepts connections on 127.0.0.1 and does ``reply`` with each (the connection stays open until ``close``)."""

    def __init__(self, reply: Callable[[socket.socket], None]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._reply = reply
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # the listener was closed: the test is over
                return
            self._accepted.append(connection)
            self._reply(connection)

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept() (close alone does not)
        self._listener.close()
        for connection in self._accepted:
            connection.close()
        self._thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket], None]], SocketServer]]:
    started: list[SocketServer] = []

    def start(reply: Callable[[socket.socket], None]) -> SocketServer:
        started.append(SocketServer(reply))
        return started[-1]

    yield start
    for server in started:
        server.close()


def _fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == EXIT_CODES[ServerUnavailableError] == 69
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_silent_server_is_a_timeout_not_a_missing_server(
    serve: Callable[[Callable[[socket.socket], None]], SocketServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli_server, "REQUEST_TIMEOUT", 0.3)
    silent = serve(lambda connection: None)  # takes the connection, never answers
    line = _fails(["status", "--instance", "w", "--url", silent.url], capsys)
    assert line == (
        f"soulfra: error: the server at {silent.url} took the connection but did not answer in time (ReadTimeout)"
    )


def test_a_server_that_does_not_speak_http_is_reported_as_such(
    serve: Callable[[Callable[[socket.socket], None]], SocketServer], capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = serve(lambda connection: connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"))
    line = _fails(["pause", "--instance", "w", "--url", garbage.url], capsys)
    assert line.startswith(f"soulfra: error: the exchange with the server at {garbage.url} failed (RemoteProtocolError")
    assert "no Soulfra server" not in line


def test_nothing_listening_is_no_server(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    line = _fails(["status", "--instance", "w", "--url", url], capsys)
    assert line == f"soulfra: error: no Soulfra server at {url} (ConnectError); start one with `soulfra up`"
