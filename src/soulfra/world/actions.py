"""What a mind (or an operator, through a possessed agent) decides an agent does in one tick."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True, slots=True, kw_only=True)
class Post:
    topic: str
    text: str
    thread: int = 0  # 0: the open thread on ``topic``, opened if there is none


@dataclass(frozen=True, slots=True, kw_only=True)
class Weave:
    thread: int
    into: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeRitual:
    name: str
    invited: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinRitual:
    ritual: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Bless:
    ritual: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Refuse:
    ritual: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AssignTask:
    goal: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Work:
    task: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Rest:
    pass


# The closed set of actions: the engine matches on it exhaustively, so a type added here fails mypy until handled.
Action: TypeAlias = Post | Weave | ProposeRitual | JoinRitual | Bless | Refuse | AssignTask | Work | Rest
REST = Rest()
