"""``/docs`` works without internet: the page and every file it loads come from this server, anonymously, and its
Content-Security-Policy lets it load nothing from anywhere else. ``/redoc`` is gone (ReDoc links to its maker's
site on every page)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from soulfra.meta.engine import EngineSettings

from .support import api_in_process, client_for

pytestmark = pytest.mark.anyio


class _Links(HTMLParser):
    """Every ``src`` and ``href`` of a page, and the text of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.inline: list[str] = []
        self._in_inline = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.links += [value for name, value in attrs if name in ("src", "href") and value is not None]
        self._in_inline = tag == "script" and "src" not in found

    def handle_endtag(self, tag: str) -> None:
        self._in_inline = False

    def handle_data(self, data: str) -> None:
        if self._in_inline:
            self.inline.append(data)


@pytest.fixture
async def anonymous(tmp_path: Path, anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_in_process(tmp_path, "a", EngineSettings()) as (app, _engine, _admin), client_for(app) as client:
        yield client


async def test_every_file_the_docs_page_loads_is_this_server_s(anonymous: httpx.AsyncClient) -> None:
    page = await anonymous.get("/docs")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "://" not in page.text  # no URL with a host anywhere in it, the inline script's included
    parsed = _Links()
    parsed.feed(page.text)
    assert len(parsed.links) >= 2  # the script and the stylesheet at least
    for link in parsed.links:
        parts = urlsplit(link)
        assert (parts.scheme, parts.netloc) == ("", ""), link
        assert link.startswith("/"), link
        loaded = await anonymous.get(link)
        assert loaded.status_code == 200, (link, loaded.text)
        assert loaded.content, link
    assert "url: '/openapi.json'" in page.text  # and the document it shows is this server's too
    assert (await anonymous.get("/openapi.json")).status_code == 200


async def test_the_docs_page_s_policy_allows_only_this_server_and_its_own_script(
    anonymous: httpx.AsyncClient,
) -> None:
    page = await anonymous.get("/docs")
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    parsed = _Links()
    parsed.feed(page.text)
    assert len(parsed.inline) == 1
    digest = base64.b64encode(hashlib.sha256(parsed.inline[0].encode()).digest()).decode()
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == f"'self' 'sha256-{digest}'"  # the inline script that starts Swagger UI runs
    assert policy["connect-src"] == "'self'"  # the OpenAPI document, and "Try it out"
    sources = " ".join(policy.values())
    assert not re.search(r"https?:|//|\*", sources), sources  # no other host, scheme or wildcard


@pytest.mark.parametrize("path", ["/redoc", "/docs/oauth2-redirect", "/docs/assets/redoc.standalone.js"])
async def test_no_other_documentation_page_or_file_is_served(anonymous: httpx.AsyncClient, path: str) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
