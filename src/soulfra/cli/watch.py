"""``soulfra watch``: the command. What it runs (``soulfra.cli.watching``: httpx, asyncio, Rich's live display) is
imported when it runs, so that ``soulfra --help`` and the other commands never load it."""

from __future__ import annotations

from typing import Annotated

import typer

from soulfra.cli.server import DEFAULT_URL, InstanceOption, TokenOption, UrlOption

__all__ = ["register", "watch_command"]


def watch_command(
    url: UrlOption = DEFAULT_URL,
    instance: InstanceOption = None,
    rate: Annotated[float, typer.Option(min=0.2, max=10.0, help="Redraws per second, at most")] = 4.0,
    once: Annotated[bool, typer.Option("--once", help="Draw one frame to stdout and exit")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one frame as JSON and exit")] = False,
    _token: TokenOption = None,
) -> None:
    """Watch an instance of a running server live: its agents and moods, the vibe weather, the latest posts and
    rituals (the view of `soulfra run --live`). Ctrl-C ends it."""
    import asyncio  # noqa: PLC0415 - see the module's docstring

    from soulfra.cli.watching import watch  # noqa: PLC0415

    asyncio.run(watch(url, instance, rate=rate, once=once, as_json=as_json))


def register(app: typer.Typer) -> None:
    app.command("watch")(watch_command)
