"""The end of every closed dispatch in the world: a ``match`` over a union of types ends in ``unhandled``."""

from __future__ import annotations

from typing import Never, NoReturn


def unhandled(item: Never, kind: str) -> NoReturn:
    """The end of a closed dispatch over ``Input`` or ``Action``, typed as ``typing.assert_never`` is: mypy rejects
    the call wherever ``item`` may still be one of the union's types, so a type added to the union and not given its
    own ``case`` fails the type check. At run time (only code that bypasses the types gets here) it raises a
    ``TypeError`` naming the stray type, where ``assert_never`` would raise a bare ``AssertionError``; an object that
    is no known input or action is never skipped and never treated as another one."""
    raise TypeError(f"{type(item).__module__}.{type(item).__qualname__} is not a world {kind} type")
