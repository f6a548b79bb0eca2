"""The base of every response model: a closed body, so that a field the server sends but the model does not name
fails the tests (a ``ResponseValidationError``) instead of silently leaving the answer. Open bodies say so."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Closed", "Open"]


class Closed(BaseModel):
    """A body whose fields are all named here."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """A body with the fields named here and others that vary with its kind (an event, a trace, a stored record)."""

    model_config = ConfigDict(extra="allow")
