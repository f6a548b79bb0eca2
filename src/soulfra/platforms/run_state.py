"""How a runtime is doing, as its status and the metrics tell it: running, paused, overridden, failed or idle
(``run_state``), and what stopped a failed one (``TickFailure``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from soulfra.errors import SoulfraError

if TYPE_CHECKING:
    from soulfra.platforms.runtime import RuntimePlatform

__all__ = ["RUN_STATES", "TickFailure", "run_state"]

MAX_FAILURE_MESSAGE = 500  # characters of an exception's message kept in the status


@dataclass(frozen=True, slots=True, kw_only=True)
class TickFailure:
    """What stopped a runtime's tick loop by itself: the tick it was running and the error (``code`` is the
    error's own for a Soulfra error, such as a storage failure, and ``internal_error`` for any other exception)."""

    tick: int
    type: str
    message: str
    code: str

    @classmethod
    def of(cls, error: BaseException, tick: int) -> TickFailure:
        message = error.detail if isinstance(error, SoulfraError) else str(error)
        if len(message) > MAX_FAILURE_MESSAGE:
            message = message[: MAX_FAILURE_MESSAGE - 3] + "..."
        code = error.code if isinstance(error, SoulfraError) else "internal_error"
        return cls(tick=tick, type=type(error).__name__, message=message, code=code)

    def to_json(self) -> dict[str, Any]:
        return {"tick": self.tick, "type": self.type, "message": self.message, "code": self.code}

    def describe(self) -> str:
        return f"at tick {self.tick} ({self.type}: {self.message})"


RUN_STATES = ("running", "paused", "overridden", "failed", "idle")


def run_state(runtime: RuntimePlatform) -> str:
    """What a runtime is doing, one of ``RUN_STATES`` (its status op's ``state``, and ``soulfra_instances``')."""
    if runtime.failure is not None:
        return "failed"
    if runtime.halted:
        return "overridden"
    if runtime.paused:
        return "paused"
    return "running" if runtime.running else "idle"
