"""RuntimePlatform: runs one durable world tick by tick on an asyncio loop and takes its inputs.

It owns the world: every other platform sees it only through the events it publishes and the ops it serves.
It never serves the public. Inputs are stored before they are acknowledged (``DurableWorld.submit``). A tick that
raises stops this world alone, in state ``failed``: it takes no more input and never ticks again in this process.
The world ticks on the loop; its storage work runs off it, in its ``lane`` (ticks, inputs, snapshots, flushes in
the order asked), so that one world's commit never holds another world's ticks or a request.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from soulfra.bus.port import Bus
from soulfra.durable import DurableWorld, stamp_input, state_at
from soulfra.errors import (
    BusError,
    BusTimeoutError,
    ConflictError,
    InputError,
    InstanceFailedError,
    NoRespondersError,
    NotFoundError,
    SoulfraError,
    StorageError,
)
from soulfra.language.asker import MindAsker
from soulfra.limits import MAX_RATE, MIN_RATE
from soulfra.logs import rebind
from soulfra.metrics import Metrics
from soulfra.offload import Lane, off_loop
from soulfra.platforms.base import Op, Platform, control_subject, encode, events_subject, op_subject
from soulfra.platforms.replies import InputAck, RunState
from soulfra.platforms.run_state import RUN_STATES, TickFailure, run_state
from soulfra.platforms.runtime_log import InputTrail
from soulfra.platforms.runtime_reads import MAX_COMPACT_PAGE, MAX_FULL_PAGE, RuntimeReads
from soulfra.platforms.ticker import Ticker
from soulfra.projection import snapshot_json, vibe_to_json
from soulfra.store.ports import StoredInput
from soulfra.world import World
from soulfra.world.events import Event, event_to_json
from soulfra.world.model import WorldState

__all__ = [
    "MAX_COMPACT_PAGE", "MAX_FULL_PAGE", "MAX_INPUTS_PER_REQUEST", "RUN_STATES", "RuntimePlatform", "TickFailure",
    "run_state",
]  # fmt: skip

log = logging.getLogger(__name__)

KEPT_CAPTURES = 4  # captures waiting to be saved; an older one nobody saved is dropped
MAX_INPUTS_PER_REQUEST = 256


class _Capture:
    def __init__(self, capture_id: int, state: WorldState, view: dict[str, Any], pause_ns: int) -> None:
        self.id = capture_id
        self.state = state
        self.view = view
        self.pause_ns = pause_ns


class RuntimePlatform(RuntimeReads, Platform):
    """The tick loop. ``rate`` is ticks per second, or ``None`` for as fast as the world goes.

    ``pause`` stops the ticks of this world only; ``override`` stops every platform of the instance (broadcast on
    the control subject) and refuses inputs; ``resume`` lifts either.
    """

    name = "runtime"
    always = frozenset(
        {"status", "view", "agents", "agent", "pause", "resume", "override", "snapshot", "snapshots", "snapshot_info",
         "inputs", "agent_loop", "loop", "threads"}
    )  # fmt: skip
    mutating = frozenset({"whisper", "submit", "pause", "resume", "override", "snapshot", "capture", "save_capture"})

    def __init__(
        self,
        world: DurableWorld,
        bus: Bus,
        *,
        rate: float | None = None,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
        metrics: Metrics | None = None,
        asker: MindAsker | None = None,
    ) -> None:
        super().__init__(world.instance_id, bus)
        if rate is not None and not MIN_RATE <= rate <= MAX_RATE:  # also what keeps the tick period a finite int
            raise InputError(f"tick rate must be between {MIN_RATE} and {MAX_RATE:g} ticks a second, not {rate}")
        self.world = world
        self.lane = Lane()  # the order of this world's writes: whoever writes to it (or swaps it) takes its turn
        self.rate = rate
        self.paused = False
        self._clock_ns = clock_ns
        self._wake = asyncio.Event()  # set to end a blocked wait (paused or overridden)
        self._sleeping: asyncio.Future[None] | None = None  # the wait for the next tick, ended early by _nudge
        self._stopping = False
        self._captures: dict[int, _Capture] = {}
        self._captured = 0
        self._task: asyncio.Task[None] | None = None
        self.ticks_run = 0
        self.failure: TickFailure | None = None  # what stopped the tick loop, if it stopped by itself
        self.last_pause_ns: int | None = None
        self.trail = InputTrail(world.instance_id)  # logs each input accepted, and the commit of its tick
        self.metrics = metrics or Metrics()  # none given: counted in a registry of its own, which nobody scrapes
        world.metrics = self.metrics  # its snapshots are observed there
        label = self.metrics.instance_label(world.instance_id)
        self._ticks = self.metrics.ticks.labels(label)
        self._lag = self.metrics.tick_lag.labels(label)
        self._lease_lost = False  # counted in soulfra_leases_lost_total already
        self.asker = asker  # asks the model for the language agents' thoughts; None: they always fall back
        self.metrics.track_world(self, label)

    async def start(self) -> None:
        """Serve the runtime's ops; refuses to when another runtime of the same instance already answers on the bus,
        since two writers of one instance would interleave its input log."""
        try:
            await self.bus.request(op_subject(self.instance_id, "runtime", "status"), b"{}", timeout=1.0)
        except (NoRespondersError, BusTimeoutError):
            await super().start()
            return
        raise ConflictError(f"a runtime of {self.instance_id} is already running on this bus")

    # -- the loop ----------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def ticking(self) -> bool:
        """Whether the tick loop runs (``run_state`` is ``running``): what ``soulfra_world_running`` counts."""
        return run_state(self) == "running"

    def launch(self, *, ticks: int | None = None) -> asyncio.Task[None]:
        """Start the tick loop as a task (``ticks`` bounds it; ``None`` runs until ``shutdown``)."""
        self._refuse_if_failed("ticks")
        if self.running:
            raise ConflictError(f"the runtime of {self.instance_id} is already ticking")
        self._stopping = False
        with rebind(instance=self.instance_id):  # the loop's records are not about the request that launched it
            self._task = asyncio.get_running_loop().create_task(self._loop(ticks))
        return self._task

    async def shutdown(self) -> None:
        """Stop after the current tick, then flush the world's storage (whatever ended the loop)."""
        self._stopping = True
        self._nudge()
        try:
            if self._task is not None:
                await self._task
        finally:
            self._task = None
            try:
                await self._flush()
            finally:
                await self.stop()
            if self.asker is not None:
                await self.asker.close()

    def _nudge(self) -> None:
        """Wake the tick loop from whichever wait it is in (blocked, or between two ticks)."""
        self._wake.set()
        Ticker.wake(self._sleeping)

    async def _flush(self) -> None:
        await self.lane.run(self.world.flush)
        self.trail.committed(self.world.durable_tick)

    def replace_world(self, world: DurableWorld) -> None:
        """Carry on from another durable world of this instance (a revert's rebuilt one); pause the loop first."""
        if world.instance_id != self.instance_id:
            raise ConflictError(f"the runtime of {self.instance_id} cannot run {world.instance_id}")
        world.metrics = self.metrics
        self.world = world
        self.trail.forget()
        if self.asker is not None:
            self.asker.forget()
        self._nudge()

    def _blocked(self) -> bool:
        return self.paused or self.halted

    async def _loop(self, ticks: int | None) -> None:
        period_ns = None if self.rate is None else int(1e9 / self.rate)
        next_ns = self._clock_ns()
        done = 0
        if self.asker is not None:
            self.asker.reread_log()  # a restart's, a fork's, a revert's thoughts: asked unless their reply is logged
        while not self._stopping and (ticks is None or done < ticks):
            if self._blocked():
                self._wake.clear()
                await self._wake.wait()
                next_ns = self._clock_ns()
                continue
            if self.asker is not None:
                await self._hear(self.asker)
            async with self.lane.turn():
                if self._blocked():  # paused or stopped while this tick waited for its turn
                    continue
                tick = self.world.tick
                started = self._clock_ns()
                try:
                    events = await self._step()
                except Exception as exc:  # a bug in a mind or a daemon, or storage: this world stops, visibly
                    self._fail(exc, tick)
                    if isinstance(exc, StorageError):
                        self._storage_failed(exc)
                    else:  # the world raised halfway through a tick
                        await self._restore(tick)
                    return
            self.trail.committed(self.world.durable_tick)  # nothing to do unless a tick with inputs was committed
            if self.asker is not None:
                await self._hear(self.asker, collect=False)  # the thoughts the tick began: asked at once
            done += 1
            self.ticks_run += 1
            self.metrics.tick_duration.observe((self._clock_ns() - started) / 1e9)
            self._ticks.inc()
            try:
                await self._publish(tick, events)
            except Exception as exc:
                self._fail(exc, tick)
                return
            if period_ns is None:
                await asyncio.sleep(0)
                continue
            next_ns += period_ns
            delay = next_ns - self._clock_ns()
            self._lag.set(max(0, -delay) / 1e9)  # behind the schedule the next tick keeps (0 when on time)
            if delay <= 0:
                next_ns = self._clock_ns()  # behind: carry on without bursting to catch up
                await asyncio.sleep(0)
                continue
            await self._sleep(delay, period_ns)

    async def _sleep(self, delay_ns: int, period_ns: int) -> None:
        """Wait for the next tick, due in ``delay_ns`` (sooner if ``_nudge``d): on the loop's one ``Ticker``, with
        the other worlds due then, not on a timer of its own."""
        self._wake.clear()
        self._sleeping = Ticker.of(asyncio.get_running_loop()).wait(delay_ns / 1e9, period_ns / 1e9)
        await self._sleeping

    async def _hear(self, asker: MindAsker, *, collect: bool = True) -> None:
        """Between ticks: ask for the thoughts pending; before one (``collect``), submit the replies due at it."""
        await asker.between_ticks(self.world, self._submit_replies, collect=collect)

    async def _submit_replies(self, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), MAX_INPUTS_PER_REQUEST):
            await self.submit({"inputs": items[start : start + MAX_INPUTS_PER_REQUEST]})

    async def _step(self) -> list[Event]:
        """One tick, in the lane's turn: the world steps on the loop, and the write it calls for runs off it."""
        world = self.world
        events = world.world.step(world.inputs_due())
        write = world.record_tick(events)
        if write is not None:
            await off_loop(write)
        return events

    def _storage_failed(self, error: StorageError) -> None:
        """Count a storage failure, and a lost lease once (every write after the first fails the same way)."""
        self._lease_lost = self.metrics.storage_failed(error, lease_counted=self._lease_lost)

    def _fail(self, error: Exception, tick: int) -> None:
        self.failure = TickFailure.of(error, tick)
        log.exception(
            "instance %s failed at tick %d and stopped ticking (the other instances go on; restart to resume it "
            "from its last committed tick)", self.instance_id, tick, exc_info=error, extra={"tick": tick},
        )  # fmt: skip

    async def _publish(self, tick: int, events: list[Event]) -> None:
        try:
            await self.bus.publish(events_subject(self.instance_id), self._tick_message(tick, events))
        except BusError as exc:  # the world goes on; readers catch up from the next tick's message
            log.warning("events of tick %d of %s were not published: %s", tick, self.instance_id, exc.detail)

    async def _restore(self, tick: int) -> None:
        """Put back the state at the start of the tick that raised (a tick changes the state in place, so it may
        have left it half-done): rebuilt from what is stored, so that what the runtime serves and flushes from
        here on is the world as it stood. A storage failure leaves the state as it is: its tick was complete.

        Rebuilt off the loop (a replay of at most a snapshot interval and a group commit of ticks) in the failed
        tick's turn of the lane, so that no write, snapshot or fork gets in first, and the reads wait for it
        (``_settled``): none of them ever sees the half-done state."""
        try:
            self.world.world = await off_loop(_state_before, self.world, tick)
        except Exception:  # a second failure is logged; the first one already stopped the loop
            log.exception("the state of %s at tick %d could not be rebuilt after its failure", self.instance_id, tick)

    async def _settled(self) -> None:
        """Before a read of the state: once the world has failed, wait for its state to be rebuilt (``_restore``
        holds the lane until then)."""
        if self.failure is not None:
            async with self.lane.turn():
                pass

    def _refuse_if_failed(self, what: str) -> None:
        if self.failure is not None:
            raise InstanceFailedError(
                f"{self.instance_id} failed {self.failure.describe()} and takes no {what}; restart its server to "
                "resume it from its last committed tick"
            )

    def _tick_message(self, tick: int, events: list[Event]) -> bytes:
        """What the tick's readers get. ``at_ms`` is the wall-clock time (Unix ms) the tick was done and its write
        made: the platform's, never the world's (a world has no clock), carried so that a reader far down the line
        (a browser) can tell how long the tick took to reach it."""
        state = self.world.world.state
        return encode(
            {
                "instance": self.instance_id,
                "tick": tick,
                "after": state.tick,
                "at_ms": time.time_ns() // 1_000_000,
                "events": [event_to_json(e) for e in events],
                "vibe": vibe_to_json(state.vibe),
            }
        )

    # -- ops ----------------------------------------------------------------------------------------------------

    def ops(self) -> dict[str, Op]:
        return {
            "status": self.status,
            "view": self.view,
            "agents": self.agents,
            "agent": self.agent,
            "agent_loop": self.agent_loop,
            "loop": self.loop,
            "threads": self.threads,
            "whisper": self.whisper,
            "submit": self.submit,
            "inputs": self.inputs,
            "pause": self.pause,
            "resume": self.resume,
            "override": self.override,
            "snapshot": self.snapshot,
            "snapshots": self.snapshots,
            "snapshot_info": self.snapshot_info,
            "capture": self.capture,
            "save_capture": self.save_capture,
        }

    async def status(self, body: dict[str, Any]) -> dict[str, Any]:
        report = await super().status(body)
        await self._settled()
        state = self.world.world.state
        report.update(
            tick=state.tick,
            state=run_state(self),
            failure=None if self.failure is None else self.failure.to_json(),
            paused=self.paused,
            rate=self.rate,
            agents=state.size,
            loop=state.loop.index,
            ticks_run=self.ticks_run,
            last_pause_ns=self.last_pause_ns,
        )
        return report

    async def whisper(self, body: dict[str, Any]) -> dict[str, Any]:
        item = {key: value for key, value in body.items() if key in ("target", "text", "tone", "tick")}
        item["type"] = "whisper"
        item.setdefault("target", "*")
        return (await self.submit({"inputs": [item]}))["acks"][0]  # type: ignore[no-any-return]

    async def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Store inputs (whisper, possess, act, release, intervene); each ack names its sequence number and tick.
        Counted in ``soulfra_inputs_total``: each input stored under ``ok``, each refused under the error's code."""
        try:
            stored = await self._store_inputs(body.get("inputs"))
        except SoulfraError as exc:
            raw = body.get("inputs")
            self.metrics.inputs.labels(exc.code).inc(len(raw) if isinstance(raw, list) and raw else 1)
            if isinstance(exc, StorageError):
                self._storage_failed(exc)
            raise
        self.metrics.inputs.labels("ok").inc(len(stored))
        self.trail.accepted(stored)
        return {
            "instance": self.instance_id,
            "acks": [InputAck(seq=s.seq, tick=s.tick, type=s.input.type).to_json() for s in stored],
        }

    async def _store_inputs(self, raw: Any) -> list[StoredInput]:
        if not isinstance(raw, list) or not raw:
            raise InputError("'inputs' must be a non-empty list of input objects")
        if len(raw) > MAX_INPUTS_PER_REQUEST:
            raise InputError(f"at most {MAX_INPUTS_PER_REQUEST} inputs per request, not {len(raw)}")
        marks = all(isinstance(obj, dict) and obj.get("type") == "mark" for obj in raw)  # a mark changes nothing
        async with self.lane.turn():  # no tick between stamping, checking, storing and scheduling the inputs
            if not marks:
                self._refuse_if_failed("inputs")
            tick = self.world.tick
            items = []
            for n, obj in enumerate(raw):
                try:
                    items.append(stamp_input(dict(obj) if isinstance(obj, dict) else obj, tick))
                except InputError as exc:
                    raise type(exc)(f"input {n}: {exc.detail}") from None
            return await off_loop(self.world.submit, items)

    async def pause(self, body: dict[str, Any]) -> dict[str, Any]:
        self.paused = True
        await self._flush()  # after the tick under way, if any: the last one until a resume
        return RunState(instance=self.instance_id, tick=self.world.tick, paused=True).to_json()

    async def resume(self, body: dict[str, Any]) -> dict[str, Any]:
        was_halted = self.halted
        self.paused = False
        self.halted = False
        self.halted_at = None
        self._nudge()
        if was_halted:
            await self.bus.publish(
                control_subject(self.instance_id), encode({"kind": "resume", "tick": self.world.tick})
            )
        return RunState(instance=self.instance_id, tick=self.world.tick, paused=False, overridden=False).to_json()

    async def override(self, body: dict[str, Any]) -> dict[str, Any]:
        """Emergency stop: no tick runs after this returns; every platform is told on the control subject."""
        self.halted = True
        await self._flush()  # after the tick under way, if any: the last one
        self.halted_at = self.world.tick
        reason = str(body.get("reason", ""))[:500]
        await self.bus.publish(
            control_subject(self.instance_id), encode({"kind": "override", "tick": self.world.tick, "reason": reason})
        )
        return RunState(instance=self.instance_id, tick=self.world.tick, overridden=True).to_json()

    async def snapshot(self, body: dict[str, Any]) -> dict[str, Any]:
        kind = body.get("type", "manual")
        if kind not in ("manual", "unified"):
            raise InputError(f"snapshot type must be manual or unified, not {kind!r}")
        async with self.lane.turn():
            self._refuse_if_failed("snapshots")
            try:
                info = await off_loop(self.world.snapshot, kind)  # observed in the metrics by the world
            except StorageError as exc:
                self._storage_failed(exc)
                raise
        return snapshot_json(info)

    async def capture(self, body: dict[str, Any]) -> dict[str, Any]:
        """Stop between two ticks just long enough to copy the state and read the runtime's view of it; the
        reply carries that view and how long the tick loop was held (``pause_ns``). ``save_capture`` stores it."""
        self._refuse_if_failed("snapshots")
        collecting = gc.isenabled()
        gc.disable()  # a collection triggered by the copy's allocations would hold the ticks far longer
        try:
            started = self._clock_ns()
            state = self.world.world.state.copy()
            view = await self.view({})
            pause_ns = self._clock_ns() - started
        finally:
            if collecting:
                gc.enable()
        self._captured += 1
        self._captures[self._captured] = _Capture(self._captured, state, view, pause_ns)
        for stale in sorted(self._captures)[:-KEPT_CAPTURES]:
            del self._captures[stale]
        self.last_pause_ns = pause_ns
        return {"capture": self._captured, "tick": state.tick, "view": view, "pause_ns": pause_ns}

    async def save_capture(self, body: dict[str, Any]) -> dict[str, Any]:
        """Store a captured state as a snapshot (after the ticks have gone on: saving never holds them)."""
        self._refuse_if_failed("snapshots")
        key = body.get("capture")
        captured = self._captures.pop(key, None) if isinstance(key, int) else None
        if captured is None:
            raise NotFoundError(f"no capture {body.get('capture')!r} waiting on {self.instance_id}")
        kind = str(body.get("type", "unified"))
        if kind not in ("manual", "unified"):
            raise InputError(f"snapshot type must be manual or unified, not {kind!r}")
        async with self.lane.turn():
            try:
                info = await off_loop(self.world.save_state, captured.state, kind)
            except StorageError as exc:
                self._storage_failed(exc)
                raise
        return {"tick": captured.state.tick, "snapshot": snapshot_json(info)}


def _state_before(world: DurableWorld, tick: int) -> World:
    """The world at ``tick`` from what is stored: its state at the durable head, and a replay of its inputs since."""
    durable = world.durable_tick
    if durable > tick:
        raise ConflictError(f"{world.instance_id} was stored up to tick {durable}, past the failed tick {tick}")
    rebuilt = World(state_at(world.store, world.instance_id, durable))
    stored = world.store.inputs.read(world.instance_id, from_tick=durable, to_tick=tick)
    rebuilt.run_to(tick, (s.input for s in stored))
    return rebuilt
