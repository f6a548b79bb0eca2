"""Response models of an instance's runtime and mirror controls: health, status, acknowledgements, agents, the input
log and snapshots. Each mirrors what the runtime platform answers over the bus (``soulfra.platforms.runtime``) and
the JSON projections it uses (``soulfra.projection``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from soulfra.api.models.base import Closed, Open
from soulfra.api.models.surface import Weather

__all__ = [
    "Ack",
    "Agent",
    "AgentPage",
    "AgentReply",
    "Failure",
    "Health",
    "InputPage",
    "InstanceAck",
    "InstanceStatus",
    "LoggedInput",
    "NotReady",
    "Overridden",
    "Paused",
    "Ready",
    "Resumed",
    "Snapshot",
    "SnapshotDetail",
    "SnapshotList",
]


class Health(Closed):
    status: str


class Ready(Closed):
    status: str
    instance: str = Field(description="The default instance")
    tick: int


class NotReady(Closed):
    """Why the server is not ready: the error of the default runtime, or the instances that failed."""

    code: str
    detail: str
    instances: list[str] | None = Field(default=None, description="The failed instances, when that is the reason")


class Failure(Closed):
    """What stopped a failed instance: the tick that raised and the error."""

    tick: int
    type: str
    message: str
    code: str


class Ack(Closed):
    """A stored input's acknowledgement: its sequence number, the tick it applies at, its type."""

    seq: int
    tick: int
    type: str


class InstanceAck(Closed):
    """An input stored in ``instance``: its sequence number, the tick it applies at, its type."""

    instance: str
    seq: int
    tick: int
    type: str


class Paused(Closed):
    instance: str
    paused: bool
    tick: int


class Resumed(Closed):
    instance: str
    paused: bool
    overridden: bool
    tick: int


class Overridden(Closed):
    instance: str
    overridden: bool
    tick: int


class _PlatformStatus(Closed):
    platform: str
    instance: str
    halted: bool
    halted_at: int | None


class RuntimeStatus(_PlatformStatus):
    tick: int
    state: str = Field(description="running, paused, overridden, failed or idle")
    failure: Failure | None
    paused: bool
    rate: int | float | None = Field(description="Ticks per second; None: as fast as it goes")
    agents: int
    loop: int
    ticks_run: int
    last_pause_ns: int | None


class SurfaceStatus(_PlatformStatus):
    tick: int
    stream_seq: int
    traces: int
    history: int


class ProtocolStatus(_PlatformStatus):
    validations: int
    violations: int


class MirrorStatus(_PlatformStatus):
    tick: int
    cycle_every: int
    in_flight: int
    unified: int


class PlatformError(Closed):
    code: str
    detail: str


class PlatformDown(Closed):
    """A platform that did not answer: the error that stood in for its status."""

    platform: str
    error: PlatformError


class Platforms(Closed):
    runtime: RuntimeStatus | PlatformDown
    surface: SurfaceStatus | PlatformDown
    protocol: ProtocolStatus | PlatformDown
    mirror: MirrorStatus | PlatformDown


class InstanceStatus(Closed):
    instance: str
    platforms: Platforms


class Personality(Closed):
    name: str
    voice: str
    goals: list[str]
    traits: dict[str, int] = Field(description="Fixed point: divide by scale")
    scale: int


class AgentState(Closed):
    index: int
    valence: int
    arousal: int
    energy: int
    focus: int
    possessed_by: str | None
    memory: list[str]
    scale: int


class Mood(Closed):
    valence: float
    arousal: float


class Heard(Closed):
    tick: int
    text: str
    tone: str


class Agent(Open):
    """An agent as the API shows it: its stored personality and state (fixed point), and its mood and affinities
    as numbers. Open: an agent record may carry more than is named here."""

    id: str
    name: str
    mind: str
    personality: Personality
    state: AgentState
    mood: Mood
    affinity: dict[str, float]
    whisper: Heard | None = Field(description="The last whisper the agent heard")


class AgentPage(Closed):
    tick: int
    total: int
    offset: int
    agents: list[Agent]


class AgentBrief(Closed):
    """An agent as a live view draws it (``view=compact``): mood and energy as numbers, nothing heavier."""

    id: str
    name: str
    mind: str
    valence: float = Field(description="Mood valence, -1 (low) to 1 (glad)")
    arousal: float = Field(description="Mood arousal, 0 (still) to 1 (stirred)")
    energy: float = Field(description="Energy, 0 to 1")


class CompactAgentPage(Closed):
    tick: int
    total: int
    offset: int
    agents: list[AgentBrief]


class AgentReply(Closed):
    tick: int
    agent: Agent


class LoggedInput(Closed):
    seq: int
    tick: int
    input: dict[str, Any] = Field(description="The input object, as its type defines it")


class InputPage(Closed):
    inputs: list[LoggedInput]


class Snapshot(Closed):
    id: int
    tick: int
    type: str
    state_hash: str
    raw_size: int
    stored_size: int
    codec: str
    timestamp: str


class SnapshotList(Closed):
    snapshots: list[Snapshot]


class SnapshotDetail(Snapshot):
    agents: int
    loop: int
    vibe: Weather | None
