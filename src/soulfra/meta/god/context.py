"""GodContext: the part of the engine a god-command handler may use, and the helpers every handler shares.

It reaches the live instances, the store and the settings, launches a new or rebuilt world through the engine, and
notes a command in a world's log (``mark``). It never chooses a handler, audits, or takes the engine's lock: that
is ``PuppetMasterEngine.execute``'s job, done once around each handler.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from soulfra.durable import DurableWorld, free_id, state_at
from soulfra.errors import InputError, PlatformError
from soulfra.offload import off_loop
from soulfra.platforms.instance import FourPlatformInstance
from soulfra.platforms.replies import InputAck
from soulfra.store.ports import Store
from soulfra.world import World, parse_input
from soulfra.world.inputs import MAX_TEXT, Input
from soulfra.world.model import WorldState

if TYPE_CHECKING:
    from soulfra.meta.engine import EngineSettings
    from soulfra.meta.god.timers import FreezeTimers

__all__ = ["GodContext", "child_id"]


class Launch(Protocol):
    """``PuppetMasterEngine._launch``: bring an instance to life (from ``world`` if given) and keep it live."""

    def __call__(
        self,
        instance_id: str,
        *,
        world: DurableWorld | None = None,
        frozen: bool = False,
        rate: float | Literal["default"] | None = "default",
    ) -> Awaitable[FourPlatformInstance]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class GodContext:
    store: Store
    settings: EngineSettings
    live: dict[str, FourPlatformInstance]  # the engine's own mapping: a launch adds to it, a handler may pop from it
    launch: Launch
    check_room: Callable[[int], None]  # refuses when that many more instances would not fit among the live ones
    timers: FreezeTimers

    async def running(self, instance_id: str) -> FourPlatformInstance:
        """The live instance of that id; ``PlatformError`` if it is only stored, ``NotFoundError`` if unknown."""
        instance = self.live.get(instance_id)
        if instance is not None:
            return instance
        record = await off_loop(self.store.instances.get, instance_id)  # NotFoundError for an unknown id
        raise PlatformError(f"instance {instance_id} is {record.status} and not running; god commands need it live")

    async def submit(self, instance: FourPlatformInstance, inputs: list[dict[str, Any]]) -> tuple[InputAck, ...]:
        return await instance.bridge.submit(inputs)

    async def mark(self, instance_id: str, command: str, note: dict[str, Any]) -> None:
        """Note a command in a world's log (a ``Mark`` changes nothing), live or stored."""
        text = _note_text(note)
        instance = self.live.get(instance_id)
        if instance is not None:
            await self.submit(instance, [{"type": "mark", "command": command, "note": text}])
            return
        await off_loop(_mark_stored, self.store, instance_id, command, text)

    async def state_now(self, instance_id: str) -> WorldState:
        """The instance's state at its head, durably stored up to there: a live world's copy, else rebuilt."""
        instance = self.live.get(instance_id)
        if instance is not None:
            runtime = instance.runtime
            async with runtime.lane.turn():  # no tick between the flush and the copy
                await off_loop(runtime.world.flush)
                return runtime.world.world.state.copy()
        return await off_loop(_state_at_head, self.store, instance_id)

    def modifications(self, raw: list[dict[str, Any]], tick: int, state: WorldState) -> list[Input]:
        checker = World(state)
        items: list[Input] = []
        for n, obj in enumerate(raw):
            try:
                item = parse_input({**obj, "tick": tick})
                checker.check(item)
            except InputError as exc:
                raise type(exc)(f"modification {n}: {exc.detail}") from None
            items.append(item)
        return items


def _mark_stored(store: Store, instance_id: str, command: str, text: str) -> None:
    record = store.instances.get(instance_id)  # its lease is held for the command (``writer_of``)
    store.inputs.append(instance_id, [parse_input({"type": "mark", "tick": record.head_tick, "command": command,
                                                   "note": text})])  # fmt: skip


def _state_at_head(store: Store, instance_id: str) -> WorldState:
    return state_at(store, instance_id, store.instances.get(instance_id).head_tick)


def child_id(store: Store, base: str, suffix: str, reserved: set[str] | None = None) -> str:
    return free_id(store, f"{base[: 64 - len(suffix) - 5]}-{suffix}", reserved=reserved)


def _json(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _note_text(note: dict[str, Any], limit: int = MAX_TEXT) -> str:
    """``note`` as JSON of at most ``limit`` characters, for a mark. What does not fit is cut from the content,
    never from the encoding: a long list keeps its first items and counts the others (``<key>_more``), a long
    string keeps its beginning; the longest values are cut first."""
    fitted = dict(note)
    text = _json(fitted)
    for key in sorted(note, key=lambda k: -len(_json(note[k]))):
        if len(text) <= limit:
            return text
        value = note[key]
        if not isinstance(value, list | str):
            continue
        low, high = 0, len(value)  # the longest cut that fits (the encoding grows with it)
        while low < high:
            middle = (low + high + 1) // 2
            if len(_json(_cut(fitted, key, value, middle))) <= limit:
                low = middle
            else:
                high = middle - 1
        fitted = _cut(fitted, key, value, low)
        text = _json(fitted)
    if len(text) <= limit:
        return text
    return _json({"omitted": len(text)})  # nothing long enough to cut (many keys): only how long the note was


def _cut(note: dict[str, Any], key: str, value: list[Any] | str, n: int) -> dict[str, Any]:
    """``note`` with ``value`` cut to its first ``n`` items (and a list's count of the others) under ``key``."""
    if isinstance(value, str):
        return {**note, key: value[:n]}
    rest = {f"{key}_more": len(value) - n} if n < len(value) else {}
    return {**note, key: value[:n], **rest}
