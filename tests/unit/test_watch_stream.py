"""How ``soulfra watch`` follows an instance's stream, against a scripted server (httpx's mock transport): it starts
from the position the status names (never a replay), takes nothing twice that its first reads already hold, refills
its feeds on ``missed`` and ``restarted``, and resumes a dropped stream with ``Last-Event-ID``. The live view it
draws is the one ``run --live`` draws (``soulfra.cli.view``), which shows posts as text, never as markup."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from rich.console import Console

from soulfra.cli import watching as watch_module
from soulfra.cli.view import Feeds, Frame, render
from soulfra.cli.watching import _Watch
from soulfra.errors import ServerUnavailableError

BASE = "/api/instances/world-0"
AGENTS = [{"id": "arty", "name": "Arty"}, {"id": "cal-riven", "name": "Cal Riven"}]


def _agent(agent: dict[str, str]) -> dict[str, Any]:
    state = {"energy": 500_000, "scale": 1_000_000, "possessed_by": None}
    return {**agent, "mind": "orchestrator", "mood": {"valence": 0.25, "arousal": 0.5}, "state": state}


def _post(tick: int, text: str) -> dict[str, Any]:
    return {"kind": "post_made", "tick": tick, "agent": "arty", "thread": 1, "topic": "maps", "text": text}


def _item(seq: int, event: dict[str, Any]) -> str:
    item = {"seq": seq, "tick": event["tick"], "channel": "agent:reflection", "kind": event["kind"], "data": event}
    return f"id: {seq}\nevent: agent:reflection\ndata: {json.dumps(item)}\n\n"


class Server:
    """Answers the routes ``watch`` reads; ``streams`` are the bodies of successive ``/events`` requests (an
    exception: the connection breaks there). The status's stream position follows what was sent, but for a server
    that ``restarts`` after its first stream: it numbers from 1 again."""

    def __init__(self, streams: list[str | Exception], *, restarts: bool = False) -> None:
        self.streams = streams
        self.restarts = restarts
        self.requests: list[httpx.Request] = []
        self.refills = 0
        self.stream_seq = 5

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix(BASE)
        replies: dict[str, Callable[[], Any]] = {
            "/status": lambda: {
                "platforms": {"runtime": {"state": "running", "loop": 2}, "surface": {"stream_seq": self.stream_seq}}
            },
            "/agents": lambda: {"tick": 10, "total": 2, "agents": [_agent(agent) for agent in AGENTS]},
            "/vibe/weather": lambda: {"tick": 10, "weather": None, "history": []},
            "/agents/echo": self._echoes,
            "/ritual/traces": lambda: {"tick": 10, "traces": []},
        }
        if path == "/events":
            body = self.streams.pop(0) if self.streams else httpx.ConnectError("gone")  # the script is over
            if isinstance(body, Exception):
                raise body
            self.stream_seq = max([self.stream_seq, *map(int, re.findall(r"^id: (\d+)$", body, re.MULTILINE))])
            if self.restarts:
                self.stream_seq, self.restarts = 2, False
            return httpx.Response(200, text="retry: 10\n\n" + body, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=replies[path]())

    def _echoes(self) -> dict[str, Any]:
        self.refills += 1
        return {"tick": 10, "echoes": [{**_post(9, f"read {self.refills}"), "agent": "arty"}]}

    def stream_requests(self) -> list[httpx.Request]:
        return [request for request in self.requests if request.url.path.endswith("/events")]


def _watching(server: Server, run: Callable[[_Watch], Any]) -> _Watch:
    async def main() -> _Watch:
        async with httpx.AsyncClient(transport=httpx.MockTransport(server), base_url="http://soulfra") as client:
            watch = _Watch(client, "http://soulfra", "world-0")
            await watch.start()
            await run(watch)
            return watch

    return asyncio.run(main())


def test_the_stream_starts_where_the_status_said_and_skips_what_the_reads_hold() -> None:
    server = Server([_item(6, _post(10, "already read")) + _item(7, _post(11, "new")) + _item(8, _post(12, "newer"))])
    watch = _watching(server, lambda watch: watch._stream())
    (request,) = server.stream_requests()
    assert request.url.params["after"] == "5"
    assert list(watch.feeds.posts) == [
        "[9] Arty in #maps: read 1",
        "[11] Arty in #maps: new",
        "[12] Arty in #maps: newer",
    ]
    assert watch.last_id == 8
    assert watch.retry_s == 0.01
    assert (watch.frame.tick, watch.frame.loop, watch.frame.size) == (10, 2, 2)
    assert [row.name for row in watch.frame.agents] == ["Arty", "Cal Riven"]
    assert watch.frame.agents[0].energy == 0.5


def test_missed_and_restarted_refill_the_feeds_and_restarted_numbers_from_one() -> None:
    missed = 'event: missed\ndata: {"count": 40}\n\n'
    restarted = 'event: restarted\ndata: {"reason": "revert"}\n\n'
    server = Server([_item(6, _post(11, "before")) + missed + _item(50, _post(20, "after")) + restarted])
    watch = _watching(server, lambda watch: watch._stream())
    assert server.refills == 3  # the first read, then one for each
    assert watch.last_id == 0
    assert list(watch.feeds.posts) == ["[9] Arty in #maps: read 3"]


def test_a_dropped_stream_is_resumed_from_the_last_event_taken() -> None:
    server = Server([_item(6, _post(11, "one")) + _item(7, _post(12, "two")), httpx.ReadError("dropped"), ""])

    async def follow(watch: _Watch) -> None:
        task = asyncio.create_task(watch.follow())
        while len(server.stream_requests()) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    watch = _watching(server, follow)
    first, second, third = server.stream_requests()
    assert "last-event-id" in first.headers  # the status's position: the same as after=5
    assert (second.headers["last-event-id"], third.headers["last-event-id"]) == ("7", "7")
    assert watch.lost_since is not None  # noted on the view until the server answers again
    assert "lost" in watch.note()


def test_a_server_that_started_again_is_followed_from_its_new_numbers() -> None:
    server = Server([_item(6, _post(11, "one")), ""], restarts=True)

    async def follow(watch: _Watch) -> None:
        task = asyncio.create_task(watch.follow())
        while len(server.stream_requests()) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    _watching(server, follow)
    assert server.stream_requests()[1].url.params["after"] == "2"
    assert server.refills == 2


def test_posts_are_text_not_markup() -> None:
    feeds = Feeds()
    feeds.absorb([_post(3, "[/oops] [bold]not bold[/bold]")], {"arty": "Arty"})
    console = Console(width=100, record=True)
    console.print(render(Frame(tick=3, loop=0, size=0, vibe=None, agents=()), feeds))
    assert "[/oops] [bold]not bold[/bold]" in console.export_text()


def test_a_server_gone_for_good_ends_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch_module, "GIVE_UP_S", 0.0)  # the second failure in a row is past the deadline
    server = Server([httpx.ConnectError("refused"), httpx.ConnectError("refused")])

    async def follow(watch: _Watch) -> None:
        watch.retry_s = 0.0  # no stream ever said how long to wait
        await watch.follow()

    with pytest.raises(ServerUnavailableError, match=r"http://soulfra did not answer for 0 s: no Soulfra server"):
        _watching(server, follow)
