"""The tick: ``World.step`` advances a ``WorldState`` by one tick, given that tick's inputs, and returns its events.

Order within a tick, fixed forever for a format version: the loop seed is applied (first tick of a loop), inputs
are applied in log order, every mind's ``bulk`` moves moods, the agents that act this tick are drawn (whispered-to
agents always act; possessed ones never act on their own; a language agent drawn starts thinking instead, and acts
when its reply is due: see ``minds.language``), each decides and acts in index order, the daemons run
(rituals advance, threads are woven and closed), the vibe is read, the tick counter advances and the loop digest
absorbs the tick's events; on a loop's last tick the loop is sealed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from functools import partial

import numpy as np

from soulfra.errors import InputError
from soulfra.world import canonical, tasks
from soulfra.world.actions import (
    Action,
    AssignTask,
    Bless,
    JoinRitual,
    Post,
    ProposeRitual,
    Refuse,
    Rest,
    Weave,
    Work,
)
from soulfra.world.applying import InputHandling
from soulfra.world.daemons import FinalExportDaemon, LoopReseedDaemon, RitualEngine, ThreadWeaver
from soulfra.world.daemons.ritual_engine import bump_affinity
from soulfra.world.dispatch import unhandled
from soulfra.world.encoding import state_hash
from soulfra.world.events import Event, MindDecided, VibeShifted, event_row
from soulfra.world.fixed import HALF, SCALE
from soulfra.world.genesis import DEFAULT_WORLD, WorldSpec, genesis
from soulfra.world.inputs import Input, MindReply
from soulfra.world.minds import MINDS, Mind
from soulfra.world.minds.base import MoodDrift
from soulfra.world.minds.language import decision_action, think
from soulfra.world.model import MEMORY_LIMIT, WARMTH, I64Array, VibeReading, WorldState
from soulfra.world.rng import Purpose, Stream, below_array, draws_spread, spread, tick_key
from soulfra.world.vibe import HISTORY, PHASE_INFO, classify, forecast
from soulfra.world.viewing import Viewing

ATTENTION = 512  # about this many agents' worth of activity per tick, however large the world
WHISPER_TTL = 30
ACT_COST = 40_000
REST_GAIN = 60_000


class World(InputHandling, Viewing):
    """One running world. Implements the mind ``View``; ``state`` is owned by it between steps."""

    def __init__(self, state: WorldState, minds: Mapping[str, Mind] = MINDS) -> None:
        self.state = state
        self._minds = [minds[spec.mind] for spec in state.specs]
        by_mind: dict[str, list[int]] = {}
        for i, spec in enumerate(state.specs):
            by_mind.setdefault(spec.mind, []).append(i)
        self._bulk = bulk_plan([(minds[key], members) for key, members in sorted(by_mind.items())], state.size)
        self._activity = np.array([mind.activity for mind in self._minds], dtype=np.int64)
        self._keys = spread(np.arange(state.size, dtype=np.uint64))  # for ``draws_spread``
        self._language = frozenset(i for i, spec in enumerate(state.specs) if spec.model)
        self._replies: dict[int, MindReply] = {}  # this tick's recorded replies, by agent (never kept across ticks)
        self._weaver = ThreadWeaver()
        self._rituals = RitualEngine()
        self._reseed = LoopReseedDaemon()
        self._export = FinalExportDaemon()
        self.acted = 0  # how many agents decided in the last tick (derived, not part of the state)
        self._start_viewing()

    @classmethod
    def create(cls, seed: int, spec: WorldSpec = DEFAULT_WORLD, *, agents: int = 0, mind: str | None = None) -> World:
        return cls(genesis(seed, spec, extra_agents=agents, mind=mind))

    # -- the read side (View) -------------------------------------------------------------------------------

    @property
    def tick(self) -> int:
        return self.state.tick

    def state_hash(self) -> str:
        return state_hash(self.state)

    # -- the tick -------------------------------------------------------------------------------------------

    def run_to(self, tick: int, inputs: Iterable[Input] = (), *, on_tick: Callable[[int], None] | None = None) -> None:
        """Step until ``tick`` with each input at the tick it is stamped for (a replay); ``InputError`` for an input
        stamped before the current tick. Inputs stamped at ``tick`` or later are left for later."""
        due = schedule(inputs, self.state.tick)
        while self.state.tick < tick:
            self.step(due.get(self.state.tick, ()))
            if on_tick is not None:
                on_tick(self.state.tick)

    def step(self, inputs: Iterable[Input] = ()) -> list[Event]:
        """Advance one tick with the inputs stamped for it; returns the tick's events."""
        state = self.state
        tick = state.tick
        events: list[Event] = []
        self._reseed.apply(state, events)
        forced: set[int] = set()
        self._replies.clear()
        for item in inputs:
            if item.tick != tick:
                raise InputError(f"input stamped for tick {item.tick} offered at tick {tick}")
            self._apply_input(item, events, forced)
        for bulk in self._bulk:
            bulk(state)
        active = self._draw_active(forced)
        due: frozenset[int] = frozenset()
        if self._language:
            active, due = think(state, self._language, active)
        self.acted = len(active)
        decide_key = tick_key(state.seed, tick, Purpose.DECIDE)
        self._begin_deciding()
        try:
            for agent in active:
                heard = state.whispers.get(agent)
                if heard is not None and tick - heard[0] > WHISPER_TTL:
                    del state.whispers[agent]
                if agent in due and self._speak(agent, events):
                    continue
                action = self._minds[agent].decide(self, agent, Stream.for_agent(decide_key, agent))
                self._act(agent, action, events, operator=False)
        finally:
            self._end_deciding()
        self._rituals.advance(state, events)
        self._weaver.maintain(state, events)
        self._read_vibe(len(active), events)
        state.tick = tick + 1
        loop = state.loop
        loop.digest = hashlib.blake2b(
            loop.digest + canonical.encode(tuple(map(event_row, events))), digest_size=32
        ).digest()
        if state.tick - loop.start >= state.loop_length:
            expired = [a for a, heard in state.whispers.items() if state.tick - heard[0] > WHISPER_TTL]
            for agent in expired:
                del state.whispers[agent]
            self._export.seal(state, state_hash, events)
        return events

    def _draw_active(self, forced: set[int]) -> list[int]:
        state = self.state
        size = state.size
        chance = self._activity * (HALF + state.energy // 2) // SCALE * (HALF + state.arousal // 2) // SCALE
        if size > ATTENTION:  # (``chance * size // size`` is ``chance``: a small world skips it)
            chance = chance * ATTENTION // size
        roll = below_array(draws_spread(state.seed, state.tick, self._keys, Purpose.ACTIVATE), SCALE)
        mask = roll < chance
        if state.possessed:
            mask[list(state.possessed)] = False
        active = mask.nonzero()[0].tolist()  # ``np.flatnonzero`` of a 1-D mask, without its Python wrapper
        if forced:
            active = sorted(set(active) | {a for a in forced if a not in state.possessed})
        return active

    def _speak(self, agent: int, events: list[Event]) -> bool:
        """A due language agent acts on its recorded reply: True if it did, False (with the reason in a
        ``MindDecided`` event) if it falls back to its built-in mind."""
        state = self.state
        spec = state.specs[agent]
        reply = self._replies.pop(agent, None)
        action_name = ""
        if reply is None:
            outcome, detail = "no-reply", f"no reply was recorded by tick {state.tick}"
        elif reply.decision is None:
            outcome, detail = reply.outcome, "the recorded call gave no decision"
        else:
            action_name = reply.decision.action
            action = decision_action(state, agent, reply.decision)
            reason = action if isinstance(action, str) else self._act(agent, action, events, operator=False)
            if reason is None:
                events.append(
                    MindDecided(tick=state.tick, agent=spec.id, model=reply.model, outcome="reply",
                                action=action_name, detail="")
                )  # fmt: skip
                return True
            outcome, detail = "not-done", reason
        model = spec.model if reply is None else reply.model
        events.append(
            MindDecided(tick=state.tick, agent=spec.id, model=model, outcome=outcome, action=action_name, detail=detail)
        )
        return False

    def _act(self, agent: int, action: Action, events: list[Event], *, operator: bool) -> str | None:
        """Carry out one action through the daemons; returns why it could not be done, or None."""
        state = self.state
        reason: str | None = None
        summary: str | None = None
        match action:
            case Post():
                previous = self._weaver.post(state, agent, action.topic, action.text, events, action.thread)
                if previous >= 0 and previous != agent:
                    amount = 10_000 + int(state.traits[agent, WARMTH]) // 20
                    bump_affinity(state, agent, previous, amount)
                    bump_affinity(state, previous, agent, amount)
                summary = f"post:{action.topic}"
            case Weave():
                if not self._weaver.weave(state, action.thread, action.into, events):
                    reason = "no such pair of open threads"
            case ProposeRitual():
                if not self.has_room("ritual"):
                    reason = "the world already holds as many rituals as it can"
                else:
                    ritual = self._rituals.propose(state, agent, action.name, action.invited, events)
                    summary = f"ritual:{ritual.id}"
            case JoinRitual():
                reason = self._rituals.join(state, agent, action.ritual, events)
            case Bless() | Refuse():
                if not operator and state.specs[agent].mind != "governor":
                    reason = "only a governor judges rituals"
                else:
                    refusal = action.reason if isinstance(action, Refuse) else None
                    reason = self._rituals.judge(state, agent, action.ritual, refusal, events)
            case AssignTask():
                if not self.has_room("task"):
                    reason = "the task board is full"
                else:
                    required = 3 + Stream(state.seed, state.tick, agent, Purpose.RITUAL).below(4)
                    tasks.assign(state, agent, action.goal, required, events)
            case Rest():
                state.energy[agent] = min(SCALE, int(state.energy[agent]) + REST_GAIN)
                state.whispers.pop(agent, None)
                return None
            case Work():
                reason = tasks.work(state, agent, action.task, events)
            case _:
                unhandled(action, "action")
        if not isinstance(action, Post):  # it may have changed rituals or tasks
            self._touched(action)
        if reason is not None:
            return reason
        state.energy[agent] = max(0, int(state.energy[agent]) - ACT_COST)
        state.whispers.pop(agent, None)
        memory = state.memory.get(agent, ())
        summary = summary or type(action).__name__.lower()
        state.memory[agent] = (*memory[-(MEMORY_LIMIT - 1) :], f"{state.tick}:{summary}")
        return None

    def _read_vibe(self, acted: int, events: list[Event]) -> None:
        state = self.state
        size = state.size
        temperature = int(state.valence.sum()) // size
        arousal = int(state.arousal.sum()) // size
        spread = int(np.abs(state.valence - temperature).sum()) // size
        history = (*state.vibe_history, (temperature, arousal, spread))[-HISTORY:]
        override = state.vibe_override
        if override is not None and state.tick < override.until:
            condition, pressure = override.condition, override.intensity
        else:
            state.vibe_override = None
            condition, pressure = classify(temperature, arousal, spread)
        info = PHASE_INFO[condition]
        previous = state.vibe
        state.vibe = VibeReading(
            condition=condition, temperature=temperature, pressure=pressure,
            wind=min(SCALE, acted * SCALE // min(size, ATTENTION)), forecast=forecast(history),
            frequency=info.frequency, colour=info.colour, emotion=info.emotion, narrative=info.narrative,
        )  # fmt: skip
        state.vibe_history = history
        if previous is not None and previous.condition != condition:
            events.append(
                VibeShifted(tick=state.tick, condition=condition, previous=previous.condition, pressure=pressure)
            )


def bulk_plan(groups: list[tuple[Mind, list[int]]], size: int) -> list[Callable[[WorldState], None]]:
    """Each mind's ``bulk`` over its agents, in the order given; neighbouring minds that keep the built-in mood
    dynamics are moved in one call (each agent's drift reads only its own numbers, so merging changes nothing),
    without gathering them when they are every agent."""
    plan: list[tuple[Mind | None, list[int]]] = []
    for mind, members in groups:
        if type(mind).bulk is Mind.bulk:
            if plan and plan[-1][0] is None:
                plan[-1][1].extend(members)
            else:
                plan.append((None, list(members)))
        else:
            plan.append((mind, members))
    steps: list[Callable[[WorldState], None]] = []
    for custom, members in plan:
        array = np.array(sorted(members), dtype=np.int64)
        if custom is not None:
            steps.append(partial(_bulk_of, custom, array))
        else:
            everyone = len(members) == size and bool((array == np.arange(size)).all())
            steps.append(MoodDrift(None if everyone else array))
    return steps


def _bulk_of(mind: Mind, members: I64Array, state: WorldState) -> None:
    mind.bulk(state, members)


def schedule(inputs: Iterable[Input], start: int = 0) -> dict[int, list[Input]]:
    """Group inputs by the tick they apply at, keeping log order; refuses inputs stamped before ``start``."""
    by_tick: dict[int, list[Input]] = {}
    for item in inputs:
        if item.tick < start:
            raise InputError(f"input for tick {item.tick} comes after the world has reached tick {start}")
        by_tick.setdefault(item.tick, []).append(item)
    return by_tick
