"""Deterministic phrasing: what an agent says, from its voice, its mood and a topic."""

from __future__ import annotations

from functools import lru_cache

from soulfra.world.rng import Stream

TOPICS = (
    "trust", "memory", "the harbor", "tides", "lanterns", "the archive", "thresholds", "silence",
    "signals", "gardens", "maps", "echoes",
)  # fmt: skip
RITUAL_NAMES = (
    "lantern vigil", "tide blessing", "echo circle", "threshold rite", "archive reading", "garden wake",
    "signal fire", "silent hour",
)  # fmt: skip
VOICES = ("measured", "lyrical", "terse", "warm", "wry", "curious")

_BRIGHT = (
    "feels like an opening",
    "is holding us together",
    "keeps getting clearer",
    "deserves a celebration",
)
_DARK = ("worries me", "is fraying at the edges", "has gone quiet in a bad way", "needs watching")
_EVEN = ("is worth another look", "keeps coming back", "could go either way", "is where we are")

_FRAMES = {
    "measured": "On {topic}: it {claim}.",
    "lyrical": "{Topic}, {topic} — it {claim}, like light through water.",
    "terse": "{Topic}. {Claim}.",
    "warm": "Friends, {topic} {claim}; let us stay close.",
    "wry": "So {topic} {claim}. Of course it does.",
    "curious": "What if {topic} {claim}? I want to know more.",
}


def compose(voice: str, topic: str, valence: int, rng: Stream) -> str:
    bank = _BRIGHT if valence > 200_000 else _DARK if valence < -200_000 else _EVEN
    return _phrase(voice, topic, bank[rng.below(len(bank))])


@lru_cache(maxsize=4096)  # a pure function of few distinct arguments, called for most posts
def _phrase(voice: str, topic: str, claim: str) -> str:
    frame = _FRAMES.get(voice, _FRAMES["measured"])
    return frame.format(topic=topic, Topic=topic.capitalize(), claim=claim, Claim=claim.capitalize())


def answer_whisper(voice: str, text: str, tone: str) -> str:
    return f"({voice}, {tone}) I heard: “{text[:120]}” — and I will act on it."


def whisper_topic(text: str) -> str:
    """The topic a whisper is about: the first listed topic it mentions, else its first words."""
    lowered = text.lower()
    for topic in TOPICS:
        if topic in lowered:
            return topic
    words = lowered.split()[:3]
    return " ".join(words) if words else "silence"
