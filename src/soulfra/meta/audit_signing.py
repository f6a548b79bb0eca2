"""The audit chain's head signed with the installation key: the recorder every process that writes to a database
uses, so that a cut-off tail shows against a head kept outside the database (``head_file_for``)."""

from __future__ import annotations

import logging
from pathlib import Path

from soulfra.errors import SoulfraError
from soulfra.meta.keys import KeyRing
from soulfra.security.audit import AuditRecorder, head_file_for
from soulfra.store.ports import Store

__all__ = ["signed_recorder"]

log = logging.getLogger(__name__)


def signed_recorder(store: Store, url: str, home: Path) -> AuditRecorder:
    """A recorder for the database at ``url`` that signs its chain's head with the key in ``home`` and keeps the
    signed head in the database and beside a SQLite file. An installation key that cannot be read or made leaves
    the head unsigned (logged): the change is still recorded, and still chained."""
    try:
        signer = KeyRing(home).signer()
    except SoulfraError as exc:
        log.warning("the audit chain's head is not signed: %s", exc.detail)
        return AuditRecorder(store)
    return AuditRecorder(store, signer=signer, head_file=head_file_for(url))
