"""SurfacePlatform: the read-only public face, projected from the runtime's events and never changing a world.

It keeps vibe weather and its history, each agent's recent echoes, the ritual traces, and a numbered live stream
that readers follow from any position they have seen (``stream`` with ``after``). Projecting a tick never waits for
a reader: readers wait on a ``Changed`` signal, which holds no lock, so a reader cancelled mid-wait leaves nothing
behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from soulfra.bus.port import Bus, Message
from soulfra.errors import BusError, InputError
from soulfra.platforms.base import Op, Platform, decode, decode_tick, encode, events_subject, int_field, op_subject

__all__ = ["CHANNELS", "Changed", "SurfacePlatform"]

RITUAL_KINDS = frozenset(
    {"ritual_proposed", "ritual_joined", "ritual_gathered", "ritual_blessed", "ritual_refused", "ritual_lapsed",
     "ritual_performed", "ritual_sealed", "ritual_injected"}
)  # fmt: skip
ECHO_KINDS = frozenset({"post_made", "whisper_heard", "operator_acted", "artifact_produced"})

# The live channels of the public stream, by world event kind (the wider Soulfra documents' names).
CHANNELS: dict[str, str] = {
    "vibe_shifted": "vibe:shift",
    "vibe_altered": "vibe:shift",
    "post_made": "agent:reflection",
    "whisper_heard": "agent:reflection",
    "operator_acted": "agent:reflection",
    "artifact_produced": "agent:reflection",
    "ritual_performed": "ritual:performed",
    "ritual_sealed": "ritual:performed",
    "loop_sealed": "loop:completed",
    "anomaly": "anomaly:detected",
    "unified_snapshot": "mirror:snapshot",
}


class Changed:
    """A lock-free "something changed" signal: ``notify`` wakes every waiter at once; ``wait_until`` returns when a
    condition holds or its timeout passes. Unlike ``asyncio.Condition`` there is no lock to re-acquire after a wait,
    so a waiter cancelled at any point (a stream client gone, a timeout) cannot leave the signal unusable."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        if self._event.is_set():
            return
        self._event.set()  # wakes the waiters of this round; later ones wait on a new event
        self._event = asyncio.Event()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Whether ``predicate()`` holds, waiting up to ``timeout`` seconds for it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._event.wait()
        return predicate()


class SurfacePlatform(Platform):
    name = "surface"
    always = frozenset({"status", "weather", "echoes", "traces", "stream", "view"})

    def __init__(
        self,
        instance_id: str,
        bus: Bus,
        *,
        history: int = 128,
        traces: int = 256,
        stream: int = 1024,
        echoes: int = 8,
        recent: int = 256,
    ) -> None:
        super().__init__(instance_id, bus)
        self.tick = 0
        self.weather: dict[str, Any] | None = None
        self.history: deque[dict[str, Any]] = deque(maxlen=history)
        self._history_json: deque[bytes] = deque(maxlen=history)  # each history entry, encoded once
        self.traces: deque[dict[str, Any]] = deque(maxlen=traces)
        self.echoes: dict[str, deque[dict[str, Any]]] = {}
        self.possessed: dict[str, str] = {}
        self._possession: deque[tuple[int, dict[str, str]]] = deque(maxlen=history)  # (tick, possessed) on change
        self.names: dict[str, str] = {}
        self._echo_depth = echoes
        self._recent: deque[dict[str, Any]] = deque(maxlen=recent)  # every agent's echoes, newest last
        # Each domain's version is bumped when it changes; a cached reply (without its tick) holds for one version.
        self._versions = {"weather": 0, "echoes": 0, "traces": 0}
        self._cache: dict[tuple[str, Any], tuple[int, bytes]] = {}
        self._stream: deque[dict[str, Any]] = deque(maxlen=stream)
        self._seq = 0
        self._changed = Changed()

    async def start(self) -> None:
        await super().start()
        await self.listen(
            self.bus.subscribe(events_subject(self.instance_id), self._on_tick),
            self.bus.subscribe(events_subject(self.instance_id) + ".>", self._on_platform_event),
        )
        await self.hydrate()

    async def hydrate(self, timeout: float = 2.0) -> bool:
        """Take the runtime's current view, so a surface started late is not empty; False if no runtime answered."""
        try:
            reply = await self.bus.request(op_subject(self.instance_id, "runtime", "view"), b"{}", timeout=timeout)
        except BusError:
            return False
        view = decode(reply)
        for domain in self._versions:
            self._versions[domain] += 1
        if int(view["tick"]) >= self.tick:
            self.tick = int(view["tick"])
            self.weather = view["vibe"]
            self.possessed = dict(view["possessed"])
            self.names.update({a["id"]: a["name"] for a in view["agents"]})
            if self.weather is not None and not self.history:
                self._remember_weather(self.tick, self.weather)
        return True

    # -- projections --------------------------------------------------------------------------------------------

    async def _on_tick(self, message: Message) -> None:
        body = decode_tick(message.payload)
        after = int(body["after"])
        if after <= self.tick and self._seq:
            return  # a repeat (a replayed stream) of what is already projected
        at_ms = body.get("at_ms")
        for event in body["events"]:
            self._project(event, at_ms)
        vibe = body.get("vibe")
        if vibe != self.weather:
            self._versions["weather"] += 1
            if vibe is not None:
                self._remember_weather(after, vibe)
        if not self._possession or self._possession[-1][1] != self.possessed:
            self._possession.append((after, dict(self.possessed)))
        self.weather = vibe
        self.tick = after
        self._changed.notify()

    async def _on_platform_event(self, message: Message) -> None:
        body = decode(message.payload)
        kind = str(body.get("kind", "event"))
        self._push(kind, int(body.get("tick", self.tick)), body, time.time_ns() // 1_000_000)
        self._changed.notify()

    def _remember_weather(self, tick: int, vibe: dict[str, Any]) -> None:
        entry = {"tick": tick, **vibe}
        self.history.append(entry)
        self._history_json.append(encode(entry))

    def _project(self, event: dict[str, Any], at_ms: int | None = None) -> None:
        kind = event["kind"]
        tick = int(event["tick"])
        if kind in ECHO_KINDS:
            agent = str(event.get("agent", "*"))
            echo = {"tick": tick, "kind": kind, **{k: v for k, v in event.items() if k not in ("kind", "tick")}}
            self.echoes.setdefault(agent, deque(maxlen=self._echo_depth)).append(echo)
            self._recent.append({"agent": agent, **echo})
            self._versions["echoes"] += 1
        elif kind in RITUAL_KINDS or kind in ("loop_sealed", "seed_applied"):
            self.traces.append(event)
            self._versions["traces"] += 1
        if kind == "agent_possessed":
            self.possessed[event["agent"]] = event.get("operator", "puppet-master")
        elif kind == "agent_released":
            self.possessed.pop(event["agent"], None)
        self._push(kind, tick, event, at_ms)

    def _push(self, kind: str, tick: int, data: dict[str, Any], at_ms: int | None) -> None:
        """Number an event for the stream. ``at_ms``: when its tick was done (the runtime's wall clock, Unix ms) or,
        for a platform's own event, when it arrived here; left out when unknown (a message from an older runtime)."""
        self._seq += 1
        channel = CHANNELS.get(kind, "world:event")
        item = {"seq": self._seq, "tick": tick, "channel": channel, "kind": kind, "data": data}
        if at_ms is not None:
            item["at_ms"] = at_ms
        self._stream.append(item)

    # -- ops ----------------------------------------------------------------------------------------------------

    def ops(self) -> dict[str, Op]:
        return {
            "status": self.status,
            "weather": self.read_weather,
            "echoes": self.read_echoes,
            "traces": self.read_traces,
            "stream": self.read_stream,
            "view": self.view,
        }

    async def status(self, body: dict[str, Any]) -> dict[str, Any]:
        report = await super().status(body)
        report.update(tick=self.tick, stream_seq=self._seq, traces=len(self.traces), history=len(self.history))
        return report

    def _cached(self, domain: str, key: Any, build: Callable[[], dict[str, Any]]) -> bytes:
        """``{"tick": ..., **build()}`` encoded. Public reads repeat far more often than their domain changes, so the
        encoding of ``build()`` is kept until it does; only the tick in front is new each time."""
        version = self._versions[domain]
        cached = self._cache.get((domain, key))
        if cached is None or cached[0] != version:
            cached = self._cache[(domain, key)] = (version, encode(build()))
        return b'{"tick":%d,' % self.tick + cached[1][1:]

    async def read_weather(self, body: dict[str, Any]) -> bytes:
        limit = int_field(body, "limit", 32, 1, 256)  # at most what is retained comes back
        return self._cached("weather", limit, lambda: {"weather": self.weather, "history": list(self.history)[-limit:]})

    async def read_echoes(self, body: dict[str, Any]) -> dict[str, Any] | bytes:
        agent = body.get("agent")
        if agent is not None:
            if not isinstance(agent, str):
                raise InputError("'agent' must be a string")
            if agent not in self.echoes:  # not cached: any string may be asked for, and the cache must stay small
                return {"tick": self.tick, "agent": agent, "echoes": []}
            return self._cached("echoes", agent, lambda: {"agent": agent, "echoes": list(self.echoes[agent])})
        limit = int_field(body, "limit", 50, 1, 1000)
        return self._cached("echoes", limit, lambda: {"echoes": list(self._recent)[-limit:]})

    async def read_traces(self, body: dict[str, Any]) -> bytes:
        limit = int_field(body, "limit", 100, 1, 512)
        return self._cached("traces", limit, lambda: {"traces": list(self.traces)[-limit:]})

    async def read_stream(self, body: dict[str, Any]) -> dict[str, Any]:
        """Stream items with ``seq > after``; waits up to ``wait_ms`` for the first one. ``missed`` counts items that
        fell out of the buffer before the reader came back."""
        after = int_field(body, "after", 0, 0, 1 << 62)
        wait_ms = int_field(body, "wait_ms", 0, 0, 30_000)
        limit = int_field(body, "limit", 256, 1, 4096)
        if self._seq <= after and wait_ms:
            await self._changed.wait_until(lambda: self._seq > after, wait_ms / 1000)
        # The buffer holds consecutive numbers ending at ``_seq``; walk it from the nearer end, so a reader that is
        # up to date costs what it reads, not the length of the buffer.
        newer = max(0, min(len(self._stream), self._seq - after))
        if newer <= len(self._stream) // 2:
            items = list(itertools.islice(reversed(self._stream), newer))[::-1][:limit]
        else:
            start = len(self._stream) - newer
            items = list(itertools.islice(self._stream, start, start + limit))
        first = items[0]["seq"] if items else self._seq + 1
        return {"seq": self._seq, "missed": max(0, first - after - 1), "items": items}

    async def view(self, body: dict[str, Any]) -> dict[str, Any]:
        """The surface's view as of tick ``tick`` (after the ticks before it ran): waits up to ``wait_ms`` until it
        has projected that far, then answers from its history, so it may already be further on."""
        tick = int_field(body, "tick", self.tick, 0, 1 << 62)
        wait_ms = int_field(body, "wait_ms", 1000, 0, 30_000)
        if self.tick < tick:
            await self._changed.wait_until(lambda: self.tick >= tick, wait_ms / 1000)
        weather = _as_of(((e["tick"], e) for e in self.history), tick, self.weather)
        if weather is not None and "tick" in weather:
            weather = {k: v for k, v in weather.items() if k != "tick"}
        possessed = _as_of(iter(self._possession), tick, self.possessed)
        return {"tick": min(self.tick, tick), "weather": weather, "possessed": dict(possessed or {})}


def _as_of(entries: Iterator[tuple[int, Any]], tick: int, current: Any) -> Any:
    """The last value recorded at or before ``tick``; ``current`` when nothing was recorded yet."""
    found = current
    for at, value in entries:
        if at > tick:
            break
        found = value
    return found
