"""The dashboard's audit and health views in a real browser against a real ``soulfra up`` at 1,000 agents: an admin
sees both (the chain verified, rows filtered by actor and outcome, readiness, no failed instance, the writer leases
with this server holding them); a viewer's page has no audit link, and the page and the verification route refuse
it with 403. A row edited behind the server's back shows as a broken chain naming the row. Over the same server,
the transport: a large JSON read is gzipped, the live stream is not, and its events carry the tick's ``at_ms``.

Chromium, the page checks and the screenshots are as ``test_dashboard.py``'s (its fixtures are reused here).
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import test_dashboard as dashboard
from .support import Server, running_server
from .test_dashboard import Watched, sign_in, until

# test_dashboard's fixtures, bound here so this module uses them with its own server: Chromium, a watched page,
# the screenshots' directory
browser = dashboard.browser
watched = dashboard.watched
shots = dashboard.shots

pytestmark = [pytest.mark.xdist_group("test_dashboard_admin"), pytest.mark.timeout(240)]

DEFAULT = "world-0"
AGENTS = "997"  # with Cal Riven, Arty and Agent Zero: the 1,000 agents the screenshots ask for


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("dashboard-admin"), rate="5", extra=["--agents", AGENTS]) as running:
        yield running


def _viewer(server: Server, name: str) -> str:
    with server.client() as client:
        made = client.post("/api/tokens", json={"name": name, "role": "viewer"})
        assert made.status_code == 201, made.text
        return str(made.json()["token"])


def _cells(watched: Watched, column: int) -> list[str]:
    return watched.page.eval_on_selector_all(  # type: ignore[no-any-return]
        f"#audit-rows tr td:nth-child({column})", "cells => cells.map(c => c.textContent)"
    )


def test_an_admin_sees_the_audit_log_verified_and_filtered(watched: Watched, server: Server, shots: Path) -> None:
    with server.client() as client:  # a refused change is audited too: something to filter on
        assert client.post(f"/api/instances/{DEFAULT}/whispers", json={"text": "for the audit"}).status_code == 202
        assert client.post(f"/api/instances/{DEFAULT}/whispers", json={"text": ""}).status_code == 422
    sign_in(watched, server.token)
    page = watched.page
    assert page.locator("#nav-audit").count() == 1 and page.locator("#nav-health").count() == 1
    page.click("#nav-audit")
    until(page, "document.getElementById('chain-status')?.classList.contains('chain-ok')")
    assert page.inner_text("#chain-status").startswith("verified: ")
    until(page, "document.querySelectorAll('#audit-rows tr').length > 0")
    page.fill("#audit-filter input[name=outcome]", "ok")
    page.click("#audit-filter button[type=submit]")
    until(  # the first load said "rows shown" too: wait for the filtered rows themselves
        page,
        "document.querySelectorAll('#audit-rows tr').length > 0 && "
        "[...document.querySelectorAll('#audit-rows tr td:nth-child(7)')].every(c => c.textContent === 'ok')",
    )
    outcomes = _cells(watched, 7)
    assert outcomes and set(outcomes) == {"ok"}
    page.fill("#audit-filter input[name=outcome]", "invalid_request")
    page.click("#audit-filter button[type=submit]")
    until(
        page,
        "[...document.querySelectorAll('#audit-rows tr td:nth-child(7)')]"
        ".every(c => c.textContent === 'invalid_request')",
    )
    until(page, "document.querySelectorAll('#audit-rows tr').length > 0")
    assert "whispers" in " ".join(_cells(watched, 5)) or "whisper" in " ".join(_cells(watched, 5))
    page.fill("#audit-filter input[name=outcome]", "")
    page.fill("#audit-filter input[name=actor]", "nobody-at-all")
    page.click("#audit-filter button[type=submit]")
    until(page, "document.getElementById('audit-result').textContent === 'no rows match'")
    page.fill("#audit-filter input[name=actor]", "")
    page.click("#audit-latest")
    until(page, "document.querySelectorAll('#audit-rows tr').length > 0")
    page.screenshot(path=str(shots / "audit.png"))
    watched.assert_clean()


def test_an_admin_sees_health_readiness_and_leases(watched: Watched, server: Server, shots: Path) -> None:
    sign_in(watched, server.token)
    page = watched.page
    page.click("#nav-health")
    until(page, "document.getElementById('readiness')?.classList.contains('ready')")
    assert page.inner_text("#readiness").startswith(f"ready: {DEFAULT} at tick ")
    until(page, "!!document.querySelector('#failed .none-failed')")
    until(page, "document.querySelectorAll('#leases tr.lease-live').length >= 2")
    rows = page.inner_text("#leases")
    assert DEFAULT in rows and "this server (puppet master)" in rows
    assert f"pid {server.proc.pid} " in rows  # the server under test holds them
    page.screenshot(path=str(shots / "health.png"))
    watched.assert_clean()


def test_a_viewer_gets_no_audit_link_and_403_from_the_audit_page_and_route(watched: Watched, server: Server) -> None:
    sign_in(watched, _viewer(server, "ops-viewer"))
    page = watched.page
    assert page.locator("#nav-audit").count() == 0
    assert page.locator("#nav-health").count() == 1
    page.click("#nav-health")
    until(page, "document.getElementById('readiness')?.classList.contains('ready')")
    until(page, "document.querySelectorAll('#leases tr.lease-live').length >= 2")
    answer = page.evaluate(
        "async () => { const r = await fetch('/api/audit/verify'); return [r.status, (await r.json()).code]; }"
    )
    assert answer == [403, "forbidden"]
    response = page.goto(f"{server.url}/audit")
    assert response is not None and response.status == 403
    watched.assert_clean(r"status of 403")  # the refusals themselves


def test_large_reads_are_gzipped_and_the_stream_is_not_and_carries_at_ms(server: Server) -> None:
    with server.client() as client:
        with client.stream(
            "GET", f"/api/instances/{DEFAULT}/agents?limit=1000", headers={"accept-encoding": "gzip"}
        ) as reply:
            raw = b"".join(reply.iter_raw())
        assert reply.headers["content-encoding"] == "gzip"
        assert len(raw) < int(0.2 * len(client.get(f"/api/instances/{DEFAULT}/agents?limit=1000").content))
    with server.client(anonymous=True) as anonymous:  # the fast path's reply (no query string), outside the routes
        with anonymous.stream("GET", "/api/agents/echo", headers={"accept-encoding": "gzip"}) as echoes:
            zipped = b"".join(echoes.iter_raw())
        assert echoes.status_code == 200 and echoes.headers["content-encoding"] == "gzip"
        assert json.loads(gzip.decompress(zipped))["echoes"]
    with server.client() as client:
        started = time.time() * 1000
        with client.stream(
            "GET", f"/api/instances/{DEFAULT}/events", headers={"accept-encoding": "gzip"}, params={"after": 0}
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in stream.headers
            events = (
                json.loads(line.removeprefix("data: ")) for line in stream.iter_lines() if line.startswith("data: ")
            )
            event = next(e for e in events if "seq" in e)  # not the "missed" note of a replay past the ring
    assert isinstance(event["at_ms"], int)
    assert started - 600_000 < event["at_ms"] <= time.time() * 1000 + 1000  # the server's clock, this machine's


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path, rate="5") as running:
        yield running


def test_a_row_edited_behind_the_server_s_back_shows_as_a_broken_chain(
    browser: object, small: Server, tmp_path: Path
) -> None:
    with small.client() as client:
        for n in range(3):
            assert client.post(f"/api/instances/{DEFAULT}/whispers", json={"text": f"row {n}"}).status_code == 202
        assert client.get("/api/audit/verify").json()["ok"] is True
    with sqlite3.connect(small.data / "soulfra.db") as conn:
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
    context = browser.new_context()  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(small.url + "/")
        page.fill("#token", small.token)
        page.click("#signin-form button[type=submit]")
        page.wait_for_selector("#instance-table", timeout=15_000)
        page.goto(small.url + "/audit")
        until(page, "document.getElementById('chain-status')?.classList.contains('chain-broken')")
        assert page.inner_text("#chain-status").startswith("broken at row 2: ")
        assert not errors, errors
    finally:
        context.close()
