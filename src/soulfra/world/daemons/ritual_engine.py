"""RitualEngine: carries rituals through their stages and applies their effects.

gathering -> awaiting-blessing -> blessed -> performed -> sealed, or refused / lapsed. A ritual gathers once
``QUORUM`` of its invited agents have joined (or, after ``GATHER_TICKS``, with whoever came if at least two);
only a governor (or an operator acting through a possessed agent) may bless or refuse it; one left unjudged for
``BLESS_TICKS`` lapses. Only a blessed ritual is ever performed: its participants' moods lift and their mutual
affinities grow. A sealed, refused or lapsed ritual leaves the state; its record lives on in the events.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from soulfra.world import canonical
from soulfra.world.events import (
    Event,
    RitualBlessed,
    RitualGathered,
    RitualJoined,
    RitualLapsed,
    RitualPerformed,
    RitualProposed,
    RitualRefused,
    RitualSealed,
)
from soulfra.world.fixed import SCALE
from soulfra.world.model import AFFINITY_LIMIT, CHAOS, Ritual, Stage, WorldState

GATHER_TICKS = 12
BLESS_TICKS = 24
QUORUM_PERCENT = 67


def max_active(state: WorldState) -> int:
    return min(64, 2 + state.size // 200)


def bump_affinity(state: WorldState, agent: int, other: int, amount: int) -> None:
    """Raise ``agent``'s affinity for ``other``, keeping only the ``AFFINITY_LIMIT`` strongest ties."""
    row = state.affinity.get(agent)
    if row is None:
        row = state.affinity[agent] = {}
    value = row.get(other, 0) + amount
    value = value if value < SCALE else SCALE
    if len(row) == AFFINITY_LIMIT and other not in row and value < min(row.values()):
        return  # a new tie weaker than every held one: it would go at once, leaving the row as it was
    row[other] = value
    if len(row) > AFFINITY_LIMIT:
        _drop_weakest(row)


def _drop_weakest(row: dict[int, int]) -> None:
    """The weakest tie goes; of equally weak ones, the one to the highest-numbered agent."""
    values = list(row.values())
    weakest = min(values)
    if values.count(weakest) == 1:  # the usual case, found without a loop in Python
        del row[list(row)[values.index(weakest)]]
    else:
        del row[max([key for key, held in row.items() if held == weakest])]


class RitualEngine:
    def propose(
        self, state: WorldState, agent: int, name: str, invited: tuple[int, ...], events: list[Event]
    ) -> Ritual:
        intensity = (int(state.traits[agent, CHAOS]) + int(state.arousal[agent])) // 2
        ritual = Ritual(
            id=state.take_id("ritual"), name=name, proposer=agent, invited=invited, joined=(agent,),
            stage=Stage.GATHERING, proposed=state.tick, stage_tick=state.tick, intensity=intensity,
        )  # fmt: skip
        state.rituals[ritual.id] = ritual
        ids = tuple(state.specs[i].id for i in invited)
        events.append(
            RitualProposed(tick=state.tick, ritual=ritual.id, name=name, agent=state.specs[agent].id, invited=ids)
        )
        return ritual

    def inject(self, state: WorldState, name: str, participants: tuple[int, ...], *, blessed: bool) -> Ritual:
        ritual = Ritual(
            id=state.take_id("ritual"), name=name, proposer=participants[0], invited=participants,
            joined=participants, stage=Stage.BLESSED if blessed else Stage.AWAITING, proposed=state.tick,
            stage_tick=state.tick, intensity=int(state.arousal[list(participants)].sum()) // len(participants),
        )  # fmt: skip
        state.rituals[ritual.id] = ritual
        return ritual

    def join(self, state: WorldState, agent: int, ritual_id: int, events: list[Event]) -> str | None:
        """Add ``agent`` to a gathering ritual; returns why not, or None."""
        ritual = state.rituals.get(ritual_id)
        if ritual is None or ritual.stage != Stage.GATHERING:
            return "no such gathering ritual"
        if agent not in ritual.invited or agent in ritual.joined:
            return "not invited, or already joined"
        ritual = replace(ritual, joined=(*ritual.joined, agent))
        events.append(RitualJoined(tick=state.tick, ritual=ritual_id, agent=state.specs[agent].id))
        if len(ritual.joined) * 100 >= len(ritual.invited) * QUORUM_PERCENT:
            ritual = self._gathered(state, ritual, events)
        state.rituals[ritual_id] = ritual
        return None

    def judge(
        self, state: WorldState, agent: int, ritual_id: int, reason: str | None, events: list[Event]
    ) -> str | None:
        """Bless (``reason`` None) or refuse a ritual awaiting blessing; returns why not, or None."""
        ritual = state.rituals.get(ritual_id)
        if ritual is None or ritual.stage != Stage.AWAITING:
            return "no such ritual awaiting blessing"
        who = state.specs[agent].id
        if reason is None:
            state.rituals[ritual_id] = replace(ritual, stage=Stage.BLESSED, stage_tick=state.tick, blessed_by=agent)
            events.append(RitualBlessed(tick=state.tick, ritual=ritual_id, agent=who))
        else:
            del state.rituals[ritual_id]
            state.loop.refused += 1
            events.append(RitualRefused(tick=state.tick, ritual=ritual_id, agent=who, reason=reason))
        return None

    def advance(self, state: WorldState, events: list[Event]) -> None:
        for ritual in sorted(state.rituals.values(), key=lambda r: r.id):
            age = state.tick - ritual.stage_tick
            if ritual.stage == Stage.GATHERING and age >= GATHER_TICKS:
                if len(ritual.joined) >= 2:
                    state.rituals[ritual.id] = self._gathered(state, ritual, events)
                else:
                    self._lapse(state, ritual, "too few gathered", events)
            elif ritual.stage == Stage.AWAITING and age >= BLESS_TICKS:
                self._lapse(state, ritual, "no governor judged it", events)
            elif ritual.stage == Stage.BLESSED:
                self._perform(state, ritual, events)

    def _gathered(self, state: WorldState, ritual: Ritual, events: list[Event]) -> Ritual:
        ids = tuple(state.specs[i].id for i in ritual.joined)
        events.append(RitualGathered(tick=state.tick, ritual=ritual.id, participants=ids))
        return replace(ritual, stage=Stage.AWAITING, stage_tick=state.tick)

    def _lapse(self, state: WorldState, ritual: Ritual, reason: str, events: list[Event]) -> None:
        del state.rituals[ritual.id]
        events.append(RitualLapsed(tick=state.tick, ritual=ritual.id, reason=reason))

    def _perform(self, state: WorldState, ritual: Ritual, events: list[Event]) -> None:
        members = list(ritual.joined)
        lift = 60_000 + ritual.intensity // 10
        state.valence[members] = np.minimum(state.valence[members] + lift, SCALE)
        state.arousal[members] = np.minimum(state.arousal[members] + ritual.intensity // 8, SCALE)
        for agent in members:
            for other in members:
                if other != agent:
                    bump_affinity(state, agent, other, 80_000)
        ids = tuple(state.specs[i].id for i in members)
        events.append(RitualPerformed(tick=state.tick, ritual=ritual.id, name=ritual.name, participants=ids))
        record = (ritual.id, ritual.name, ids, ritual.proposed, state.tick, state.specs[ritual.blessed_by].id
                  if ritual.blessed_by >= 0 else "")  # fmt: skip
        digest = hashlib.blake2b(canonical.encode(record), digest_size=16).hexdigest()
        del state.rituals[ritual.id]
        state.loop.performed += 1
        events.append(RitualSealed(tick=state.tick, ritual=ritual.id, name=ritual.name, digest=digest))
