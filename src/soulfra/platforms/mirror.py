"""MirrorPlatform: snapshot cycles, the unified snapshot of all four platforms, the trace collector and anomalies.

The mirror never runs agents. It keeps the ritual timeline from the runtime's events, builds each loop's seed from
the loop's traces with the world's own ``collect_seed`` (and reports a divergence from the seed the world applied),
and takes unified snapshots: the runtime held between two ticks, every platform's view at that tick, conflicts
resolved by rule, the runtime's pause recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from soulfra.bus.port import Bus, Message
from soulfra.errors import BusError, InputError, NotFoundError
from soulfra.offload import Lane, off_loop
from soulfra.platforms.base import (
    BY,
    Op,
    Platform,
    by_field,
    decode,
    decode_tick,
    encode,
    events_subject,
    int_field,
    issuer,
    op_subject,
    rid_field,
)
from soulfra.platforms.watch import Found, MoodWatch, ThreadWatch
from soulfra.security.identity import process_identity
from soulfra.store.ports import Store
from soulfra.world.daemons.final_export import collect_seed
from soulfra.world.model import LoopTrace

__all__ = ["RESOLUTION", "MirrorPlatform"]

log = logging.getLogger(__name__)

# Which platform's view wins each shared domain of a unified snapshot (the seed's rules).
RESOLUTION = {"agents": "runtime", "ritual_timeline": "mirror", "vibe_weather": "surface", "validation": "protocol"}
ENDED = frozenset({"ritual_sealed", "ritual_refused", "ritual_lapsed"})
REFUSALS_FOR_ANOMALY = 3


MIRROR = process_identity("mirror", "operator")  # who asks for a scheduled unified snapshot


class MirrorPlatform(Platform):
    name = "mirror"
    always = frozenset({"status", "unified_list", "unified_get", "timeline", "seeds", "anomalies", "witness"})
    mutating = frozenset({"unified"})

    def __init__(
        self,
        instance_id: str,
        bus: Bus,
        store: Store | None = None,
        *,
        cycle_every: int = 0,
        timeout: float = 2.0,
        timeline: int = 256,
        seeds: int = 16,
    ) -> None:
        super().__init__(instance_id, bus)
        if cycle_every < 0:
            raise InputError("cycle_every must be 0 (off) or a number of ticks")
        self.store = store
        self.cycle_every = cycle_every
        self.timeout = timeout
        self.tick = 0
        self.in_flight: dict[int, str] = {}  # ritual id -> name, for rituals not yet sealed, refused or lapsed
        self.timeline: deque[dict[str, Any]] = deque(maxlen=timeline)
        self._in_flight_at: deque[tuple[int, list[int]]] = deque(maxlen=timeline)  # (tick, in-flight ids) on change
        self.seeds: deque[dict[str, Any]] = deque(maxlen=seeds)
        self.anomalies: deque[dict[str, Any]] = deque(maxlen=256)
        self.unified: deque[dict[str, Any]] = deque(maxlen=64)
        self.sealed: deque[dict[str, Any]] = deque(maxlen=64)  # the loop seals seen, for a mirror without a store
        self._threads = ThreadWatch()
        self._mood = MoodWatch()
        self._trace: LoopTrace | None = None  # None until the mirror has seen a loop from its start
        self._expected: dict[str, Any] | None = None
        self._refusals = 0
        self._caught_up = asyncio.Condition()
        self._busy = asyncio.Lock()
        self._cycles: set[asyncio.Task[Any]] = set()
        self._unwritten: list[tuple[int, str, dict[str, Any]]] = []  # (tick, kind, data) records to store
        self._writes = Lane()  # the mirror's records reach the store in the order it made them

    async def start(self) -> None:
        await super().start()
        await self.listen(self.bus.subscribe(events_subject(self.instance_id), self._on_tick))
        try:
            view = decode(await self.bus.request(self._runtime("view"), b"{}", timeout=self.timeout))
        except BusError:
            return
        self.tick = max(self.tick, int(view["tick"]))
        self.in_flight.update({int(k): "" for k in view.get("rituals", {})})

    async def stop(self) -> None:
        """Stop serving, after the scheduled snapshots and anomaly notes in flight are cancelled."""
        for task in list(self._cycles):
            task.cancel()
        await asyncio.gather(*self._cycles, return_exceptions=True)
        await super().stop()

    def _runtime(self, op: str) -> str:
        return op_subject(self.instance_id, "runtime", op)

    # -- the trace collector ------------------------------------------------------------------------------------

    async def _on_tick(self, message: Message) -> None:
        body = decode_tick(message.payload)
        after = int(body["after"])
        if after <= self.tick and self.tick:
            return
        for event in body["events"]:
            self._collect(event)
        for found in [*self._threads.feed(after, body["events"]), *self._mood.feed(after, body.get("vibe"))]:
            self._found(found)
        now = sorted(self.in_flight)
        if not self._in_flight_at or self._in_flight_at[-1][1] != now:
            self._in_flight_at.append((after, now))
        self.tick = after
        async with self._caught_up:
            self._caught_up.notify_all()
        if self.cycle_every and not self.halted and after % self.cycle_every == 0:
            self._spawn(self._cycle())
        if self._unwritten:
            records, self._unwritten = self._unwritten, []
            await self._writes.run(self._write, records)

    def _write(self, records: list[tuple[int, str, dict[str, Any]]]) -> list[int]:
        """Store records (off the loop); their ids. A mirror without a store keeps them in memory only."""
        if self.store is None:
            return []
        return [
            self.store.rituals.record(self.instance_id, tick=tick, kind=kind, data=data) for tick, kind, data in records
        ]

    async def _cycle(self) -> None:
        try:
            await self.take_unified({"reason": "cycle"})
        except Exception:
            log.exception("scheduled unified snapshot of %s failed", self.instance_id)

    def _collect(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        trace = self._trace
        if kind in ("ritual_proposed", "ritual_injected"):
            self.in_flight[int(event["ritual"])] = str(event.get("name", ""))
        if kind.startswith("ritual_"):
            self.timeline.append(event)
        if kind in ENDED:
            self.in_flight.pop(int(event["ritual"]), None)
        if kind == "ritual_refused":
            self._refusals += 1
            if self._refusals == REFUSALS_FOR_ANOMALY:
                self._anomaly("ritual-refused-repeatedly", event["tick"], f"{self._refusals} rituals refused in a row")
        elif kind == "ritual_sealed":
            self._refusals = 0
        if kind == "seed_applied":
            self._check_seed(event)
            self._trace = LoopTrace(index=int(event["loop"]), start=int(event["tick"]), digest=b"")
            return
        if trace is None:
            if kind == "loop_sealed":
                self.sealed.append(event)
            return
        if kind == "post_made":
            trace.posts += 1
            trace.topics[event["topic"]] = trace.topics.get(event["topic"], 0) + 1
        elif kind == "ritual_sealed":
            trace.performed += 1
        elif kind == "ritual_refused":
            trace.refused += 1
        elif kind == "artifact_produced":
            trace.artifacts += 1
        elif kind == "loop_sealed":
            self.sealed.append(event)
            seed = collect_seed(trace, 0)
            record = {"loop": seed.loop, "from_loop": trace.index, "themes": list(seed.themes),
                      "intentions": list(seed.intentions), "posts": trace.posts, "performed": trace.performed,
                      "refused": trace.refused, "artifacts": trace.artifacts, "tick": int(event["tick"])}  # fmt: skip
            self.seeds.append(record)
            self._expected = record
            self._unwritten.append((int(event["tick"]), "loop_seed", record))

    def _check_seed(self, event: dict[str, Any]) -> None:
        expected = self._expected
        self._expected = None
        if expected is None or expected["loop"] != event["loop"]:
            return
        if expected["themes"] != list(event["themes"]) or expected["intentions"] != list(event["intentions"]):
            self._anomaly(
                "seed-divergence",
                event["tick"],
                f"loop {event['loop']} applied themes {event['themes']} and intentions {event['intentions']}; "
                f"its traces give {expected['themes']} and {expected['intentions']}",
            )

    def _found(self, found: Found) -> None:
        """Record and publish an anomaly one of the watches found (``soulfra.platforms.watch``)."""
        self._anomaly(found.anomaly, found.tick, found.detail, found.data)

    def _anomaly(self, kind: str, tick: int, detail: str, data: dict[str, Any] | None = None) -> None:
        anomaly = {"kind": "anomaly", "anomaly": kind, "tick": int(tick), "detail": detail, **(data or {})}
        self.anomalies.append(anomaly)
        self._unwritten.append((int(tick), "anomaly", anomaly))
        self._spawn(self.bus.publish(events_subject(self.instance_id) + ".mirror", encode(anomaly)))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` beside the event handler, kept so that ``stop`` can cancel it."""
        task = asyncio.get_running_loop().create_task(work)
        self._cycles.add(task)
        task.add_done_callback(self._cycles.discard)

    # -- ops ----------------------------------------------------------------------------------------------------

    def ops(self) -> dict[str, Op]:
        return {
            "status": self.status,
            "unified": self.take_unified,
            "unified_list": self.list_unified,
            "unified_get": self.get_unified,
            "timeline": self.read_timeline,
            "seeds": self.read_seeds,
            "anomalies": self.read_anomalies,
            "witness": self.read_witness,
        }

    async def status(self, body: dict[str, Any]) -> dict[str, Any]:
        report = await super().status(body)
        report.update(
            tick=self.tick, cycle_every=self.cycle_every, in_flight=len(self.in_flight), unified=len(self.unified)
        )
        return report

    async def read_timeline(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"tick": self.tick, "in_flight": sorted(self.in_flight), "timeline": list(self.timeline)[-100:]}

    async def read_seeds(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"tick": self.tick, "seeds": list(self.seeds)}

    async def read_anomalies(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"tick": self.tick, "anomalies": list(self.anomalies)}

    async def read_witness(self, body: dict[str, Any]) -> dict[str, Any]:
        """The latest ``limit`` sealed loops (their digests and state hashes), oldest first, from the store when
        there is one (every seal since the instance began), else from those this mirror saw; with their seeds."""
        limit = int_field(body, "limit", 32, 1, 1000)
        stored = [] if self.store is None else await off_loop(self._stored_seals, self.store)
        sealed = (stored or list(self.sealed))[-limit:]  # traces kept at level "none" store no seals
        return {"tick": self.tick, "sealed": sealed, "seeds": list(self.seeds)}

    def _stored_seals(self, store: Store) -> list[dict[str, Any]]:
        records = store.rituals.read(self.instance_id, kinds=["loop_sealed"])
        return [{**r.data, "kind": r.kind, "tick": r.tick} for r in records]

    async def list_unified(self, body: dict[str, Any]) -> dict[str, Any]:
        rows = await off_loop(self._stored_unified)
        return {"unified": [{k: r[k] for k in ("id", "tick", "system_hash", "pause_ns", "conflicts")} for r in rows]}

    async def get_unified(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = body.get("id")
        rows = await off_loop(self._stored_unified)
        if wanted == "latest" and rows:
            return rows[-1]
        for row in rows:
            if row["id"] == wanted:
                return row
        raise NotFoundError(f"{self.instance_id} has no unified snapshot {wanted!r}")

    def _stored_unified(self) -> list[dict[str, Any]]:
        if self.store is None:
            return list(self.unified)
        records = self.store.rituals.read(self.instance_id, kinds=["unified_snapshot"])
        return [{**r.data, "id": r.id} for r in records]

    async def take_unified(self, body: dict[str, Any]) -> dict[str, Any]:
        """The active platform merge: the runtime captured between two ticks, the surface's and the mirror's views
        as of that tick, the captured state stored and validated by the protocol, conflicts resolved by rule."""
        async with self._busy:
            started = time.perf_counter_ns()
            by = {BY: body[BY] if issuer(body) is not None else by_field(MIRROR)}  # a scheduled one is the mirror's
            captured = await self._ask("runtime", "capture", by)
            tick = int(captured["tick"])
            surface_view = await self._ask("surface", "view", {"tick": tick, "wait_ms": int(self.timeout * 1000)})
            mirror_view = await self._view_at(tick)
            saved = await self._ask(
                "runtime", "save_capture", {"capture": captured["capture"], "type": "unified", **by}
            )
            snapshot = saved["snapshot"]
            protocol_view = await self._ask("protocol", "validate", {"subject": "snapshot", "snapshot": snapshot["id"]})
            record = resolve(
                tick=tick, runtime=captured["view"], surface=surface_view, protocol=protocol_view, mirror=mirror_view
            )
            record.update(
                instance=self.instance_id,
                snapshot=snapshot,
                pause_ns=int(captured["pause_ns"]),
                took_ns=time.perf_counter_ns() - started,
            )
            if self.store is not None:
                (record["id"],) = await self._writes.run(self._write, [(tick, "unified_snapshot", record)])
            else:
                record["id"] = len(self.unified) + 1
            self.unified.append(record)
            note = {"kind": "unified_snapshot", "tick": tick, "id": record["id"], "system_hash": record["system_hash"]}
            await self.bus.publish(events_subject(self.instance_id) + ".mirror", encode(note))
            return record

    async def _view_at(self, tick: int) -> dict[str, Any]:
        """The mirror's ritual timeline as of ``tick``, once it has collected that far."""
        async with self._caught_up:
            await asyncio.wait_for(self._caught_up.wait_for(lambda: self.tick >= tick), self.timeout)
        in_flight = sorted(self.in_flight)
        for at, ids in reversed(self._in_flight_at):
            if at <= tick:
                in_flight = ids
                break
        return {"tick": tick, "in_flight": in_flight}

    async def _ask(self, platform: str, op: str, body: dict[str, Any]) -> dict[str, Any]:
        subject = op_subject(self.instance_id, platform, op)
        return decode(await self.bus.request(subject, encode({**body, **rid_field()}), timeout=self.timeout))


def resolve(
    *, tick: int, runtime: dict[str, Any], surface: dict[str, Any], protocol: dict[str, Any], mirror: dict[str, Any]
) -> dict[str, Any]:
    """Merge the four views of one tick: detect where they disagree and let each domain's owner win."""
    conflicts: list[dict[str, Any]] = []

    def settle(domain: str, values: dict[str, Any]) -> Any:
        winner = RESOLUTION[domain]
        distinct = {json.dumps(v, sort_keys=True) for v in values.values()}
        if len(distinct) > 1:
            conflicts.append({"domain": domain, "values": values, "winner": winner})
        return values[winner]

    possessed = settle("agents", {"runtime": runtime["possessed"], "surface": surface["possessed"]})
    in_flight = settle(
        "ritual_timeline", {"runtime": sorted(int(k) for k in runtime["rituals"]), "mirror": mirror["in_flight"]}
    )
    weather = settle("vibe_weather", {"runtime": runtime["vibe"], "surface": surface["weather"]})
    validation = settle("validation", {"runtime": {"valid": True, "violations": []}, "protocol": _verdict(protocol)})
    merged = {
        "tick": tick,
        "agents": {"count": runtime["agent_count"], "possessed": possessed},
        "ritual_timeline": {"in_flight": in_flight},
        "vibe_weather": weather,
        "validation": validation,
    }
    system_hash = hashlib.blake2b(json.dumps(merged, sort_keys=True).encode(), digest_size=32).hexdigest()
    views = {"runtime": runtime, "surface": surface, "protocol": protocol, "mirror": mirror}
    return {"tick": tick, "system_hash": system_hash, "merged": merged, "conflicts": conflicts, "views": views}


def _verdict(protocol: dict[str, Any]) -> dict[str, Any]:
    return {"valid": bool(protocol.get("valid")), "violations": list(protocol.get("violations", []))}
