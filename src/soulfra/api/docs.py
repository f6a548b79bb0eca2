"""The API's documentation page, ``/docs`` (Swagger UI), with every file it loads served by this server from the
fastapi-offline package: it works without internet and names no other host. The page carries its own
Content-Security-Policy, which lets it load only from this server and run only its one inline script (by hash).
Must not: reference another host, or serve any file of that package but the few listed in ``ASSETS``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from soulfra.errors import NotFoundError
from soulfra.offload import off_loop

__all__ = ["ASSETS", "ASSETS_PATH", "DOCS_PATH", "docs_router"]

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
# The files the page loads, by name, with their media types; each is a file of fastapi-offline's static folder.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
# Swagger UI's own parameters: no validator badge (by default it loads one from validator.swagger.io).
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _policy(html: str) -> str:
    """The page's Content-Security-Policy: scripts, styles, images and requests from this server only, and the
    page's inline script by its hash. Swagger UI sets inline styles and draws its icons as ``data:`` images."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def docs_router(title: str, openapi_url: str) -> APIRouter:
    """``/docs`` and the files under ``/docs/assets``; their access policies are in ``soulfra.api.access``."""
    router = APIRouter(include_in_schema=False)
    static = files("fastapi_offline") / "static"
    loaded: dict[str, bytes] = {}  # each file read once, on its first request (the script is 1.5 MB)

    @router.get(DOCS_PATH)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")  # behind a proxy that strips a prefix
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
        html = bytes(page.body).decode()
        return HTMLResponse(html, headers={"content-security-policy": _policy(html)})

    @router.get(ASSETS_PATH + "/{name}")
    async def asset(name: Annotated[str, Path(max_length=64)]) -> Response:
        kind = ASSETS.get(name)
        if kind is None:
            raise NotFoundError(f"no documentation file {name!r}")
        if name not in loaded:
            loaded[name] = await off_loop((static / name).read_bytes)
        return Response(loaded[name], media_type=kind, headers={"cache-control": "max-age=3600"})

    return router
