"""The mind plug-in point: what every mind can read (``View``) and must provide (``Mind``).

A mind has two halves. ``bulk`` updates the numeric state of *all* its agents at once, every tick, as integer
array arithmetic; ``decide`` runs Python logic for one agent, and only for agents that act this tick. Both must be
pure functions of what they are given: no clock, no global randomness, only the ``Stream`` or ``draws`` keyed by
(seed, tick, agent, purpose).
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import numpy as np

from soulfra.world.actions import Action, Post
from soulfra.world.fixed import HALF, SCALE
from soulfra.world.minds.voice import answer_whisper, whisper_topic
from soulfra.world.model import CHAOS, CURIOSITY, ORDER, WARMTH, I64Array, Ritual, Task, WorldState
from soulfra.world.rng import Purpose, Stream, U64Array, draw_rows, spread
from soulfra.world.vibe import PHASE_INFO


class View(Protocol):
    """The read side of a world that a mind may consult while deciding (the engine implements it)."""

    @property
    def state(self) -> WorldState: ...

    @property
    def tick(self) -> int: ...

    def topic_for(self, agent: int, rng: Stream) -> str:
        """A topic for this agent to talk about: the loop's themes first, else its goals, else the common ones."""

    def awaiting_blessing(self) -> tuple[Ritual, ...]:
        """Rituals that have gathered and wait for a governor, oldest first."""

    def invitations(self, agent: int) -> tuple[Ritual, ...]:
        """Gathering rituals this agent is invited to and has not joined, oldest first."""

    def task_for(self, agent: int) -> Task | None:
        """The task this agent holds, else the oldest unclaimed one, else None."""

    def has_room(self, kind: str) -> bool:
        """Whether one more open ``"ritual"`` or ``"task"`` fits under the world's bounds."""

    def weavable(self) -> tuple[int, int] | None:
        """Two open threads that share participants (younger, older), if any."""


class Mind:
    """Base of every mind. Subclasses set ``key`` and ``activity`` and implement ``choose``."""

    key: ClassVar[str] = "mind"
    activity: ClassVar[int] = 300_000  # chance per million to act in a tick, before energy and attention

    def bulk(self, state: WorldState, members: I64Array) -> None:
        drift_moods(state, members)

    def decide(self, view: View, agent: int, rng: Stream) -> Action:
        heard = view.state.whispers.get(agent)
        if heard is not None:
            return self.heed(view, agent, heard[1], heard[2])
        return self.choose(view, agent, rng)

    def heed(self, view: View, agent: int, text: str, tone: str) -> Action:
        """What the agent does with a whisper it heard: by default, it takes the whisper up in a thread."""
        voice = view.state.specs[agent].voice
        return Post(topic=whisper_topic(text), text=answer_whisper(voice, text, tone))

    def choose(self, view: View, agent: int, rng: Stream) -> Action:
        raise NotImplementedError


def drift_moods(state: WorldState, members: I64Array | None = None) -> None:
    """The built-in minds' mood dynamics: drift toward a trait- and loop-given baseline, with small noise.
    ``members`` are distinct agent indices; None is every agent, moved in place without gathering them."""
    MoodDrift(members)(state)


class MoodDrift:
    """``drift_moods`` over a fixed set of agents, called once a tick: the targets that depend on the agents'
    traits alone are kept, and computed again only when the traits differ from those they were computed from."""

    __slots__ = ("_kept", "_keys", "_members")

    def __init__(self, members: I64Array | None) -> None:
        self._members = members
        # each agent's part of its draws' keys (for every agent: made at the first call, again if the size differs)
        self._keys: U64Array = spread(np.arange(0, dtype=np.uint64) if members is None else members)
        self._kept: tuple[I64Array, tuple[I64Array, I64Array, I64Array]] | None = None  # (traits, their targets)

    def __call__(self, state: WorldState) -> None:
        members = self._members
        keys = self._keys
        if members is None:
            if len(keys) != state.size:
                keys = self._keys = spread(np.arange(state.size, dtype=np.uint64))
            traits = state.traits
            valence, arousal, energy, focus = state.valence, state.arousal, state.energy, state.focus
        elif members.size == 0:
            return
        else:
            traits = np.take(state.traits, members, axis=0)  # as ``traits[members]``, several times faster
            valence, arousal = state.valence[members], state.arousal[members]
            energy, focus = state.energy[members], state.focus[members]
        kept = self._kept
        # ``np.array_equal`` without its checks in Python, which cost a small world's tick more than the comparison
        if kept is None or kept[0].shape != traits.shape or not (kept[0] == traits).all():
            kept = self._kept = (traits.copy(), _targets(traits))
        lean_v, target_a, order = kept[1]
        # both noises from one pass over both purposes' draws: ``signed_noise(draws(...), amplitude)`` of each
        noise = (draw_rows(state.seed, state.tick, keys, _NOISE_PURPOSES) % _NOISE_SPANS).astype(np.int64)
        noise -= _NOISE_AMPLITUDES
        # ``>> k`` is ``// 2**k`` on int64 (an arithmetic shift floors), and cheaper
        valence = valence + ((lean_v + state.loop.baseline - valence) >> 5) + noise[0]
        arousal = arousal + ((target_a - arousal) >> 4) + noise[1]
        override = state.vibe_override
        if override is not None and state.tick < override.until:
            pull_v, pull_a = PHASE_INFO[override.condition].mood
            # at full intensity, an eighth of the way toward the condition's mood each tick
            valence += (pull_v - valence) * override.intensity // (8 * SCALE)
            arousal += (pull_a - arousal) * override.intensity // (8 * SCALE)
        energy = energy + (SCALE - energy) // 40
        focus = focus + (order - focus) // 20
        # ``np.clip``'s bounds as two ufuncs: the same integers, without clip's checks of the bounds in Python, which
        # cost a small world's tick more than the arithmetic (a cluster runs thousands of ten-agent worlds)
        np.maximum(valence, -SCALE, out=valence)
        np.maximum(arousal, 0, out=arousal)
        if members is None:
            np.minimum(valence, SCALE, out=state.valence)
            np.minimum(arousal, SCALE, out=state.arousal)
            state.energy[:] = energy
            state.focus[:] = focus
        else:
            state.valence[members] = np.minimum(valence, SCALE, out=valence)
            state.arousal[members] = np.minimum(arousal, SCALE, out=arousal)
            state.energy[members] = energy
            state.focus[members] = focus


_NOISE_PURPOSES = (Purpose.MOOD_VALENCE, Purpose.MOOD_AROUSAL)
_NOISE_AMPLITUDES = np.array([[15_000], [12_000]], dtype=np.int64)  # valence's, arousal's
_NOISE_SPANS = (2 * _NOISE_AMPLITUDES + 1).astype(np.uint64)


def _targets(traits: I64Array) -> tuple[I64Array, I64Array, I64Array]:
    """What mood drift reads of the traits: the valence target before the loop's baseline, the arousal target,
    and ``order`` (which focus drifts toward)."""
    lean_v = ((traits[:, WARMTH] - HALF) >> 1) - ((traits[:, CHAOS] - HALF) >> 2)
    target_a = (traits[:, CHAOS] >> 1) + traits[:, CURIOSITY] // 3
    return lean_v, target_a, traits[:, ORDER].copy()
