"""soulfra.api: the HTTP API (FastAPI app factory) and the gateway it talks to the platforms through."""

from __future__ import annotations

from soulfra.api.app import create_app
from soulfra.api.gateway import Gateway

__all__ = ["Gateway", "create_app"]
