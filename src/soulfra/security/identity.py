"""Identities and roles: who asks, and what their role lets them do.

Roles are ordered, each including the one before: ``viewer`` reads everything but the audit log; ``operator`` also
whispers, pauses and resumes, overrides, takes snapshots, and possesses, acts through and releases agents;
``puppet-master`` also runs every god command, exports, imports and creates instances; ``admin`` also manages tokens,
deletes instances, sets protocol rules and reads the audit log. An identity may be scoped to some instances: the
others do not exist for it.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable
from dataclasses import dataclass

from soulfra.errors import InputError, PermissionDeniedError

__all__ = ["ANONYMOUS", "ROLES", "Identity", "check_role", "cli_identity", "process_identity", "rank"]

ROLES: tuple[str, ...] = ("viewer", "operator", "puppet-master", "admin")
_RANK = {"anonymous": 0, **{role: n for n, role in enumerate(ROLES, start=1)}}


def rank(role: str) -> int:
    """A role's place in the order (anonymous 0, viewer 1 ... admin 4); an unknown role ranks lowest."""
    return _RANK.get(role, 0)


def check_role(role: str) -> str:
    """``role`` if it is one of ``ROLES``; InputError naming them otherwise."""
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return role


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """Who a request or command comes from. ``kind``: ``token`` (an API token's name), ``process`` (Soulfra acting
    by itself: a freeze timer, a CLI command on a database it opened) or ``anonymous``. ``instances`` None: every
    instance; otherwise only those."""

    name: str
    role: str
    kind: str = "token"
    instances: frozenset[str] | None = None

    def allows(self, role: str) -> bool:
        """Whether this identity's role includes ``role``."""
        return rank(self.role) >= rank(role)

    def sees(self, instance_id: str) -> bool:
        return self.instances is None or instance_id in self.instances

    def may_create(self, what: str) -> None:
        """PermissionDeniedError for an identity scoped to some instances: whatever it made would lie outside its
        scope, so making instances (``what``: create, import, clone...) takes an unscoped one."""
        if self.instances is not None:
            raise PermissionDeniedError(
                f"{self.name} is scoped to {', '.join(sorted(self.instances))} and cannot {what}; "
                "that needs a token that is not scoped to instances"
            )

    def to_json(self) -> dict[str, object]:
        scope = None if self.instances is None else sorted(self.instances)
        return {"name": self.name, "role": self.role, "kind": self.kind, "instances": scope}


ANONYMOUS = Identity(name="anonymous", role="anonymous", kind="anonymous")


def process_identity(name: str, role: str = "admin", instances: Iterable[str] | None = None) -> Identity:
    """Soulfra itself acting as ``name`` (``freeze-timer``, ``cli``...): a process of the installation, which the
    operating system's file permissions already let in."""
    return Identity(name=name, role=role, kind="process", instances=None if instances is None else frozenset(instances))


def cli_identity() -> Identity:
    """A ``soulfra`` command working on a database it opened itself, as ``cli:<operating system user>``: whoever
    can open the database file may do anything to it, so it acts as an admin."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the password database
        user = "unknown"
    return process_identity(f"cli:{user}")
