"""The god-mode parts of the dashboard against the real app in process: the merge and packages pages answer
puppet-masters only (under the pages' CSP), the merge page offers every merge domain with its default policy and
only the instances the caller sees, and a world page renders the god panel by role: none for a viewer, possession
only for an operator, every command for a puppet-master."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from soulfra.dashboard.routes import CSP
from soulfra.meta.merge import DEFAULT_POLICIES, DOMAINS

from .test_dashboard_access import System, _system, sign_in

pytestmark = pytest.mark.anyio


@pytest.fixture
async def system(tmp_path: Path, anyio_backend: str) -> AsyncIterator[System]:
    async for built in _system(tmp_path):
        yield built


@contextlib.asynccontextmanager
async def browser_of(system: System, role: str, instances: list[str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """A browser signed in with a new token of ``role``."""
    async with system.browser() as browser:
        name = f"who-{role}-{secrets.token_hex(3)}"
        assert (await sign_in(browser, system.token(role, name, instances=instances))).status_code == 303
        yield browser


async def test_the_merge_and_packages_pages_answer_puppet_masters_only(system: System) -> None:
    for role, status in (("viewer", 403), ("operator", 403), ("puppet-master", 200), ("admin", 200)):
        async with browser_of(system, role) as browser:
            for path in ("/merge", "/packages"):
                page = await browser.get(path)
                assert page.status_code == status, (role, path, page.text)
                if status == 200:
                    assert page.headers["content-security-policy"] == CSP
                    assert 'name="csrf-token"' in page.text
            home = await browser.get("/")
            assert ('href="/merge"' in home.text) == (status == 200)


async def test_the_merge_page_offers_every_domain_and_the_instances_the_caller_sees(system: System) -> None:
    async with browser_of(system, "puppet-master") as browser:
        page = (await browser.get("/merge")).text
    for domain in DOMAINS:
        select = re.search(rf'id="policy-{domain}"[^>]*>(.*?)</select>', page, re.S)
        assert select is not None, domain
        assert re.findall(r"<option selected>(\w+)</option>", select.group(1)) == [DEFAULT_POLICIES[domain]]
    assert 'value="a"' in page and 'value="b"' in page
    async with browser_of(system, "puppet-master", instances=["a"]) as scoped:
        seen = (await scoped.get("/merge")).text
    assert 'value="a"' in seen and 'value="b"' not in seen


async def test_a_world_page_shows_the_god_panel_by_role(system: System) -> None:
    expected = {
        "viewer": (False, False),
        "operator": (True, False),
        "puppet-master": (True, True),
    }
    for role, (possession, commands) in expected.items():
        async with browser_of(system, role) as browser:
            page = (await browser.get("/worlds/a")).text
        assert ('id="possess-form"' in page) == possession, role
        for form in ("clone-form", "fork-form", "intervene-form", "link-form", "freeze-duration"):
            assert (f'id="{form}"' in page) == commands, (role, form)
