"""``soulfra watch``: the live view of ``run --live`` (``soulfra.cli.view``) for an instance of a running server.

The current state comes from plain GETs (status, agents, weather, recent echoes and ritual traces); the posts and
rituals after it from the instance's event stream, followed from the stream position the status named, so nothing
depends on whether a stream replays from its start. Agents and weather are read again at the view's rate (no event
carries moods). A dropped stream is resumed with ``Last-Event-ID``; ``missed`` and ``restarted`` refill the feeds
from the GETs. It only reads: nothing here changes the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import typer
from rich.console import Console, RenderableType
from rich.live import Live

from soulfra.cli.server import REQUEST_TIMEOUT, START_ONE, auth_headers, read_reply, unreachable
from soulfra.cli.view import AGENT_ROWS, AgentRow, Feeds, Frame, Weather, render
from soulfra.errors import ServerUnavailableError

__all__ = ["watch"]

NAMES = 1000  # agents whose names the first read learns (the feeds name the others by id)
RECENT = 64  # echoes and traces read to fill the feeds (most are neither posts nor rituals)
STREAM_READ_S = 30.0  # the server sends a heartbeat every 10 s: this long without a byte is a dead connection
GIVE_UP_S = 30.0  # a server unreachable this long ends the watch (exit 69)
POST_KINDS = frozenset({"post_made", "whisper_heard"})  # the kinds the posts feed shows; the rituals show the others


class _Watch:
    """One instance of one server as the view shows it, kept up to date by ``refresh`` and ``follow``."""

    def __init__(self, client: httpx.AsyncClient, url: str, instance: str) -> None:
        self.client = client
        self.url = url
        self.instance = instance
        self.base = f"/api/instances/{instance}"
        self.names: dict[str, str] = {}
        self.feeds = Feeds()
        self.frame = Frame(tick=0, loop=0, size=0, vibe=None, agents=(), instance=instance)
        self.runtime = ""  # what the frame notes of the runtime (paused, down...), empty when it runs
        self.stream = ""  # the stream's last error, until its next event
        self.last_id: int | None = None  # the last stream event taken (None: the surface did not say)
        self.seen = {"posts": -1, "rituals": -1}  # each feed holds every event up to this tick
        self.retry_s = 1.0  # the server's ``retry``
        self.lost_since: float | None = None

    async def get(self, path: str, **params: int) -> dict[str, Any]:
        try:
            response = await self.client.get(self.base + path, params=params)
        except httpx.HTTPError as exc:
            raise unreachable(self.url, exc, hint=START_ONE) from None
        return read_reply(self.url, response)

    async def start(self) -> None:
        """The current state; the stream is followed from the position the status names."""
        status = await self.get("/status")  # first: whatever the stream sends after it is newer than the GETs below
        surface = status["platforms"].get("surface", {})
        self.last_id = int(surface["stream_seq"]) if "stream_seq" in surface else None
        page, weather = await asyncio.gather(self.get("/agents", limit=NAMES), self.get("/vibe/weather", limit=1))
        self.names = {str(agent["id"]): str(agent["name"]) for agent in page["agents"]}
        self.show(status, page, weather)
        await self.refill()  # after the names, which its lines use

    async def refresh(self) -> None:
        """Read agents, weather and status again; an unreachable server is noted, and ends the watch in time."""
        try:
            status, page, weather = await asyncio.gather(
                self.get("/status"), self.get("/agents", limit=AGENT_ROWS), self.get("/vibe/weather", limit=1)
            )
        except ServerUnavailableError as exc:
            self.lost(exc)
            return
        self.lost_since = None
        self.show(status, page, weather)

    def show(self, status: Mapping[str, Any], page: Mapping[str, Any], weather: Mapping[str, Any]) -> None:
        runtime = status["platforms"]["runtime"]
        if "error" in runtime:
            self.runtime = f"runtime down: {runtime['error']['detail']}"
        else:
            self.runtime = "" if runtime.get("state") == "running" else f"runtime {runtime.get('state')}"
        rows = tuple(
            AgentRow(
                name=str(agent["name"]),
                mind=str(agent["mind"]),
                valence=float(agent["mood"]["valence"]),
                arousal=float(agent["mood"]["arousal"]),
                energy=int(agent["state"]["energy"]) / int(agent["state"]["scale"]),
                possessed_by=agent["state"]["possessed_by"],
            )
            for agent in page["agents"][:AGENT_ROWS]
        )
        self.frame = Frame(
            tick=int(page["tick"]), loop=int(runtime.get("loop", self.frame.loop)), size=int(page["total"]),
            vibe=Weather.from_json(weather["weather"]), agents=rows, instance=self.instance,
        )  # fmt: skip

    async def refill(self) -> None:
        """The feeds from the recent echoes and traces, which hold every event up to the tick each names."""
        echoes, traces = await asyncio.gather(
            self.get("/agents/echo", limit=RECENT), self.get("/ritual/traces", limit=RECENT)
        )
        self.feeds.clear()
        self.feeds.absorb(echoes["echoes"], self.names)
        self.feeds.absorb(traces["traces"], self.names)
        self.seen = {"posts": int(echoes["tick"]), "rituals": int(traces["tick"])}

    def absorb(self, item: Mapping[str, Any]) -> None:
        """A stream item, unless its feed already holds its tick (read by ``refill``)."""
        data = item.get("data")
        if not isinstance(data, dict):
            return
        feed = "posts" if item.get("kind") in POST_KINDS else "rituals"
        if int(item.get("tick", 0)) > self.seen[feed]:
            self.feeds.absorb([data], self.names)

    def lost(self, error: ServerUnavailableError) -> None:
        """The server did not answer: noted on the view until it does, and raised once that lasts ``GIVE_UP_S``."""
        now = time.monotonic()
        if self.lost_since is None:
            self.lost_since = now
        elif now - self.lost_since > GIVE_UP_S:
            raise ServerUnavailableError(f"{self.url} did not answer for {GIVE_UP_S:.0f} s: {error.detail}")

    def note(self) -> str:
        notes = [note for note in (self.runtime, self.stream) if note]
        if self.lost_since is not None:
            notes.append(f"{self.url} lost {time.monotonic() - self.lost_since:.0f} s ago; retrying")
        return "; ".join(notes)

    def render(self) -> RenderableType:
        return render(dataclasses.replace(self.frame, note=self.note()), self.feeds)

    def to_json(self) -> dict[str, Any]:
        frame = self.frame
        return {
            "instance": self.instance,
            "tick": frame.tick,
            "loop": frame.loop,
            "agents": frame.size,
            "vibe": None if frame.vibe is None else dataclasses.asdict(frame.vibe),
            "shown": [dataclasses.asdict(row) for row in frame.agents],
            "posts": list(self.feeds.posts),
            "rituals": list(self.feeds.rituals),
            "note": self.note(),
        }  # fmt: skip

    async def follow(self) -> None:
        """Follow the stream for good: reconnect after a drop, from the last event taken."""
        first = True
        while True:
            try:
                if not first:
                    await self._resume()
                first = False
                await self._stream()
            except (httpx.HTTPError, ServerUnavailableError) as exc:
                self.lost(exc if isinstance(exc, ServerUnavailableError) else unreachable(self.url, exc))
            else:  # the server ended the stream (it is stopping): as good as lost until it answers again
                self.lost(ServerUnavailableError(f"the server at {self.url} ended the stream"))
            await asyncio.sleep(self.retry_s)

    async def _resume(self) -> None:
        """Before a reconnection: a server whose stream numbers are now lower started again (a new process)."""
        surface = (await self.get("/status"))["platforms"].get("surface", {})
        seq = surface.get("stream_seq")
        if isinstance(seq, int) and self.last_id is not None and seq < self.last_id:
            self.last_id = seq
            await self.refill()

    async def _stream(self) -> None:
        params = {} if self.last_id is None else {"after": self.last_id}
        headers = {} if self.last_id is None else {"last-event-id": str(self.last_id)}
        timeout = httpx.Timeout(REQUEST_TIMEOUT, read=STREAM_READ_S)
        async with self.client.stream(
            "GET", self.base + "/events", params=params, headers=headers, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                read_reply(self.url, response)  # raises the refusal
            self.lost_since = None
            async for name, data, event_id in self._events(response):
                if name == "missed":
                    await self.refill()
                elif name == "restarted":  # a revert: the numbering starts again at 1
                    self.last_id = 0
                    await self.refill()
                elif name == "error":
                    self.stream = f"stream: {json.loads(data).get('detail', data)}"
                else:
                    self.stream = ""
                    if event_id is not None and event_id.isdigit():
                        self.last_id = int(event_id)
                    self.absorb(json.loads(data))

    async def _events(self, response: httpx.Response) -> AsyncIterator[tuple[str, str, str | None]]:
        """The server-sent events of ``response`` as (event, data, id); comments (heartbeats) skipped."""
        name, data, event_id = "message", list[str](), None
        async for line in response.aiter_lines():
            if not line:
                if data:
                    yield name, "\n".join(data), event_id
                name, data, event_id = "message", [], None
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value
            elif field == "retry" and value.isdigit():
                self.retry_s = int(value) / 1000


async def _default_instance(client: httpx.AsyncClient, url: str) -> str:
    try:
        response = await client.get("/api/instances")
    except httpx.HTTPError as exc:
        raise unreachable(url, exc, hint=START_ONE) from None
    return str(read_reply(url, response)["default"])


async def watch(url: str, instance: str | None, *, rate: float, once: bool, as_json: bool) -> None:
    async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=auth_headers(), timeout=REQUEST_TIMEOUT) as client:
        watch = _Watch(client, url, instance or await _default_instance(client, url))
        await watch.start()
        if as_json:
            typer.echo(json.dumps(watch.to_json()))
        elif once:
            Console().print(watch.render())
        else:
            await _live(watch, rate)


async def _live(watch: _Watch, rate: float) -> None:
    """Redraw at most ``rate`` times a second until Ctrl-C, which ends the watch cleanly (exit 0, as ``run
    --live`` does): SIGINT cancels this task wherever it waits, and the last frame stays on the screen."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        if task is not None:
            task.cancel()

    loop.add_signal_handler(signal.SIGINT, stop)
    follower = loop.create_task(watch.follow())
    interval = 1.0 / rate
    try:
        with Live(watch.render(), auto_refresh=False, console=Console()) as display:
            next_at = time.monotonic()
            while not follower.done():
                next_at = max(next_at + interval, time.monotonic())
                await asyncio.wait([follower], timeout=next_at - time.monotonic())
                if follower.done():
                    break
                await watch.refresh()
                display.update(watch.render(), refresh=True)
            follower.result()  # it ends only by raising: its error (an unknown instance, the server gone for good)
    except asyncio.CancelledError:
        if not stopped:
            raise
        if task is not None:
            task.uncancel()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
