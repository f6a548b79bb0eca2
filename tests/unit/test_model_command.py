"""``soulfra model serve`` checks what it is asked before it starts llama.cpp's server: a model open to the network
without a key, a missing model file, nonsense thread counts and a port in use are each one line and exit code 2, and
the server's command line carries what was asked (one thread by default, the key never on the command line)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from soulfra.cli import EXIT_USAGE, main
from soulfra.cli.model import LOCAL_MODEL, server_argv
from soulfra.errors import ConfigError


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return path


def _with_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if llama-cpp-python[server] were installed (the fast suite does not need it)."""
    import importlib.util  # noqa: PLC0415

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name in {"llama_cpp", "uvicorn"} else real(name, *a)
    )


def test_the_server_runs_on_one_thread_under_the_local_models_name(
    model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_server(monkeypatch)
    argv = server_argv(model_file, host="127.0.0.1", port=8080, threads=1, context=2048, api_key=None)
    assert argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    flags = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert flags == {
        "--model": str(model_file),
        "--model_alias": LOCAL_MODEL,
        "--host": "127.0.0.1",
        "--port": "8080",
        "--n_ctx": "2048",
        "--n_threads": "1",
        "--n_threads_batch": "1",
    }


@pytest.mark.parametrize(
    ("host", "api_key", "threads", "context", "refusal"),
    [
        ("0.0.0.0", None, 1, 2048, "would open the model to the network with no key"),  # noqa: S104 -- refused
        ("10.1.2.3", None, 1, 2048, "would open the model to the network with no key"),
        ("127.0.0.1", None, 0, 2048, "--threads must be 1 or more"),
        ("127.0.0.1", None, 1, 16, "--context 256 or more"),
    ],
)
def test_what_cannot_be_served_is_refused_before_anything_starts(
    model_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    api_key: str | None,
    threads: int,
    context: int,
    refusal: str,
) -> None:
    _with_server(monkeypatch)
    with pytest.raises(ConfigError, match=refusal):
        server_argv(model_file, host=host, port=8080, threads=threads, context=context, api_key=api_key)


def test_beyond_loopback_a_key_is_required_and_kept_off_the_command_line(
    model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_server(monkeypatch)
    argv = server_argv(model_file, host="10.1.2.3", port=8080, threads=1, context=2048, api_key="k3y")
    assert argv[argv.index("--host") + 1] == "10.1.2.3"
    assert "k3y" not in argv


def test_a_missing_model_file_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(SystemExit) as exited:
        main(["model", "serve", "--model-file", str(missing)])
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"--model-file {missing}: no such file" in err


def test_a_port_in_use_is_one_line_and_exit_2(
    model_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_server(monkeypatch)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exited:
            main(["model", "serve", "--model-file", str(model_file), "--port", str(port)])
    assert exited.value.code == EXIT_USAGE
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
