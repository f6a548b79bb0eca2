"""Every command that prints a result takes ``--json`` (the servers, which print a log, and a joining cluster node
are the exception)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer.main

from soulfra.cli.commands import app

SERVERS = {("up",), ("cluster", "local"), ("cluster", "join"), ("model", "serve")} | {
    ("serve", name) for name in ("meta", "api", "runtime", "surface", "protocol", "mirror")
}


def leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if hasattr(command, "commands"):  # a group
        for name, sub in command.commands.items():
            yield from leaves(sub, (*path, name))
    else:
        yield path, command


def test_every_command_but_the_servers_takes_json() -> None:
    found = dict(leaves(typer.main.get_command(app)))
    assert len(found) >= 40 and found.keys() >= SERVERS
    without = {path for path, command in found.items() if "--json" not in {o for p in command.params for o in p.opts}}
    assert without == SERVERS
