"""The dashboard's static files (our CSS and JS modules, the vendored htmx), read once from the package and served
from memory with a content hash: a name not in the package is 404, nothing outside ``static/`` can be named.
Must not: fetch or build anything at run time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

__all__ = ["Asset", "load_assets"]

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _walk(folder: Traversable, prefix: str) -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for entry in folder.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.update(_walk(entry, f"{name}/"))
            continue
        suffix = next((s for s in _TYPES if entry.name.endswith(s)), None)
        if suffix is None:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        found[name] = Asset(body=body, media_type=_TYPES[suffix], etag=etag)
    return found


def load_assets() -> dict[str, Asset]:
    """Every static file of the package, by its path under ``static/`` (``js/world.js``, ``vendor/htmx.min.js``)."""
    return _walk(resources.files("soulfra.dashboard") / "static", "")
