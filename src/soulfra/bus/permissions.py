"""What each Soulfra process may say and hear on NATS, and the nats-server ``authorization`` block that grants it.

One user per platform of the services topology (runtime, surface, protocol, mirror), a ``control`` user for the
processes that send commands (the API processes, CLI tools), and a ``meta`` user for the puppet master, which hosts
worlds with their four platforms and serves the API's calls on ``soulfra-meta.<op>``. Each gets only the subjects
its code uses: a platform serves ``soulfra.<instance>.<platform>.<op>`` (``platforms/base.py``), hears the override on
``soulfra.<instance>.control``, and asks the other platforms only for the ops listed here; the runtime alone
publishes the world's events and the override broadcast, the mirror its notes on ``...events.mirror``.
``tests/unit/test_bus_permissions.py`` runs the four platforms and checks every subject they touch against this
table; docs/nats-security.md shows ``nats_authorization()``'s output, held equal by the same test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from soulfra.bus.port import subject_matches

__all__ = ["ROLES", "Permissions", "nats_authorization", "password_variable", "role_permissions", "user_name"]

PLATFORM_ROLES = ("runtime", "surface", "protocol", "mirror")
ROLES = (*PLATFORM_ROLES, "control", "meta")
META_OPS = "soulfra-meta.*"  # the puppet master's calls (soulfra.meta.service), served by ``soulfra serve meta``
EVENT_STREAM = "SOULFRA_EVENTS"  # soulfra.bus.nats.EVENT_STREAM (not imported: this module loads no NATS client)
INBOX = "_INBOX.>"  # where replies to this connection's requests (JetStream's acknowledgements too) arrive


@dataclass(frozen=True, slots=True, kw_only=True)
class Permissions:
    """The subjects one user may publish to and subscribe to; ``allow_responses`` lets it answer the requests it
    receives (once each, on the reply subject the requester gave), which is all a server of ops needs."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool = False

    def may_publish(self, subject: str) -> bool:
        return any(subject_matches(pattern, subject) for pattern in self.publish)

    def may_subscribe(self, subject: str) -> bool:
        """``subject`` may be a pattern: it must be covered by an allowed one (as nats-server checks it)."""
        return any(_covers(pattern, subject) for pattern in self.subscribe)


def user_name(role: str) -> str:
    """The NATS user of ``role``: ``soulfra-runtime``, ..., ``soulfra-control``."""
    return f"soulfra-{role}"


def password_variable(role: str) -> str:
    """The variable that holds ``role``'s password in the config (nats-server reads it from its environment)."""
    return f"SOULFRA_NATS_{role.upper()}_PASSWORD"


def role_permissions(instance: str = "*") -> dict[str, Permissions]:
    """Each role's permissions, for one instance id or (``*``) for every instance."""

    def op(platform: str, name: str = "*") -> str:
        return f"soulfra.{instance}.{platform}.{name}"

    events, control = f"soulfra.{instance}.events", f"soulfra.{instance}.control"
    stream_setup = (f"$JS.API.STREAM.CREATE.{EVENT_STREAM}", f"$JS.API.STREAM.UPDATE.{EVENT_STREAM}")

    def platform(name: str, *, publish: tuple[str, ...] = (), hears: tuple[str, ...] = ()) -> Permissions:
        return Permissions(
            publish=(*publish, op(name, "status"), *stream_setup),  # its own status: the process's readiness probe
            subscribe=(op(name), control, *hears, INBOX),
            allow_responses=True,
        )

    roles = {
        # The world's events and the override broadcast; asks its own status before serving (one runtime per instance).
        "runtime": platform("runtime", publish=(events, control)),
        "surface": platform("surface", publish=(op("runtime", "view"),), hears=(events, f"{events}.>")),
        "protocol": platform("protocol"),
        # The unified snapshot asks all three others; the trace collector follows the runtime's events.
        "mirror": platform(
            "mirror",
            publish=(
                f"{events}.mirror",
                op("runtime", "view"),
                op("runtime", "capture"),
                op("runtime", "save_capture"),
                op("surface", "view"),
                op("protocol", "validate"),
            ),
            hears=(events,),
        ),
        # Commands to every platform and reads of the event stream; never the control subject (only a runtime that
        # has really stopped announces the override there).
        "control": Permissions(
            publish=(
                *(op(p) for p in PLATFORM_ROLES),
                META_OPS,
                *stream_setup,
                f"$JS.API.STREAM.INFO.{EVENT_STREAM}",
                f"$JS.API.STREAM.MSG.GET.{EVENT_STREAM}",
            ),
            subscribe=(events, f"{events}.>", INBOX),
        ),
    }
    # The puppet master hosts worlds with their four platforms, asks them as the API does, and serves the API's calls.
    roles["meta"] = Permissions(
        publish=_union(*(roles[r].publish for r in (*PLATFORM_ROLES, "control"))),
        subscribe=_union(*(roles[r].subscribe for r in (*PLATFORM_ROLES, "control")), (META_OPS,)),
        allow_responses=True,
    )
    return roles


def nats_authorization(passwords: Mapping[str, str] | None = None, *, instance: str = "*") -> str:
    """The nats-server ``authorization { ... }`` block for the services topology: one user per role.

    ``passwords`` maps a role to its password as written in the config; by default each is a variable reference
    (``$SOULFRA_NATS_RUNTIME_PASSWORD``) that nats-server resolves from its environment, so the file holds no secret.
    """
    given = dict(passwords or {})
    lines = ["authorization {", "  users = ["]
    for role, allowed in role_permissions(instance).items():
        password = given.get(role, "$" + password_variable(role))
        lines += [
            "    {",
            f'      user: "{user_name(role)}"',
            f"      password: {password}",
            "      permissions: {",
            f"        publish: {{ allow: {_list(allowed.publish)} }}",
            f"        subscribe: {{ allow: {_list(allowed.subscribe)} }}",
        ]
        if allowed.allow_responses:
            lines.append("        allow_responses: true")
        lines += ["      }", "    }"]
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def _union(*groups: tuple[str, ...]) -> tuple[str, ...]:
    """The subjects of every group, each once, in first-seen order."""
    return tuple(dict.fromkeys(subject for group in groups for subject in group))


def _list(subjects: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{s}"' for s in subjects) + "]"


def _covers(pattern: str, subject: str) -> bool:
    """Whether every subject matching ``subject`` (itself maybe a pattern) also matches ``pattern``."""
    want, have = pattern.split("."), subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or have[i] == ">" or (part != "*" and (have[i] == "*" or part != have[i])):
            return False
    return len(want) == len(have)
