"""What every writer-lease adapter says alike: the server's own key, which keys are valid, and how a holder is named
in a refusal. No adapter here: ``lease`` (SQL) and ``memory`` (one process) each keep leases their own way.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC

from soulfra.errors import ConfigError
from soulfra.store.ports import LeaseInfo

__all__ = [
    "MAX_KEY",
    "PUPPET_MASTER_LEASE",
    "check_key",
    "describe_holder",
    "held_message",
    "lost_message",
    "this_process",
]

PUPPET_MASTER_LEASE = ":puppet-master"  # the server's own lease: one puppet master per database
MAX_KEY = 80
MAX_HOST = 255  # a lease names its holder's host by at most this many characters


def check_key(key: str) -> None:
    """``ConfigError`` unless ``key`` can name a lease."""
    if not key or len(key) > MAX_KEY:
        raise ConfigError(f"a lease key is 1 to {MAX_KEY} characters, not {len(key)}")


def this_process() -> tuple[int, str]:
    """The pid and the host a lease taken by this process names."""
    return os.getpid(), socket.gethostname()[:MAX_HOST]


def describe_holder(info: LeaseInfo) -> str:
    since = info.since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"pid {info.pid} on host {info.host} since {since}"


def held_message(key: str, info: LeaseInfo) -> str:
    """The refusal of a second writer of ``key``, naming the live one."""
    what = "this server's database" if key == PUPPET_MASTER_LEASE else f"instance {key}"
    return (
        f"{what} is already being run by {describe_holder(info)}; stop that process first "
        "(soulfra state, history, verify and export can read it meanwhile)"
    )


def lost_message(key: str, holder: LeaseInfo | None) -> str:
    """The refusal of a write by a store whose lease of ``key`` was taken over (by ``holder``, if known)."""
    by = f" by {describe_holder(holder)}" if holder is not None else ""
    return f"this process is no longer the writer of {key}: its lease was taken over{by}; it stops writing"
