"""The local admin token: a single user on one machine types nothing to be let in.

``soulfra up`` keeps an admin token in ``<SOULFRA_HOME>/token`` (owner-only) and registers its hash in the database
it serves as the token ``local-admin``; the CLI's client commands send it when no other token is given. Must not:
ever write the token anywhere but that file, or bring back a ``local-admin`` an admin revoked.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from soulfra.errors import ConfigError, OutputError

if TYPE_CHECKING:
    from soulfra.security.tokens import TokenService

__all__ = ["LOCAL_ADMIN", "ensure_local_admin", "read_home_token", "token_file"]

log = logging.getLogger(__name__)

LOCAL_ADMIN = "local-admin"


def token_file(home: Path) -> Path:
    return home / "token"


def read_home_token(home: Path) -> str | None:
    """The token kept in ``home``, or None when there is none."""
    try:
        text = token_file(home).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the token file {token_file(home)}: {exc.strerror or exc}") from None
    return text or None


def _write_home_token(home: Path, token: str) -> None:
    path = token_file(home)
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        home.chmod(0o700)  # the home holds the installation key and this token: its owner's alone
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(token + "\n")
    except OSError as exc:
        raise OutputError(f"cannot write the token file {path}: {exc.strerror or exc}") from None


def ensure_local_admin(home: Path, tokens: TokenService) -> str | None:
    """Make sure the home's token is this database's ``local-admin``: made and written (mode 0600) if the home has
    none, registered if the database does not know it. Returns the token, or None when an admin revoked it (then
    the CLI needs ``--token``; a warning says so)."""
    # Imported here, not above: a client command reads the home's token (read_home_token) without the storage stack
    # that soulfra.security.tokens brings in.
    from soulfra.security.tokens import new_token, token_hash  # noqa: PLC0415

    secret = read_home_token(home)
    if secret is None:
        secret = new_token()
        _write_home_token(home, secret)
        log.info("wrote a new admin token to %s (owner only)", token_file(home))
    known = tokens.store.tokens.by_hash(token_hash(secret))
    if known is not None:
        if known.revoked_at is not None:
            log.warning("the token in %s (%s) was revoked: client commands need --token", token_file(home), known.name)
            return None
        return secret
    stale = [r for r in tokens.list() if r.name == LOCAL_ADMIN and r.revoked_at is None]
    if stale:  # another home's local admin: this home is the one serving now
        tokens.revoke(LOCAL_ADMIN)
    tokens.create(name=LOCAL_ADMIN, role="admin", by="soulfra up", secret=secret)
    return secret
