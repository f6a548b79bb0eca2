"""The dashboard in a real browser (the system's Chromium driven by playwright) against a real ``soulfra up``: sign-in
with the home's admin token (a wrong one refused), the instances view and its lineage graph (a fork, a merge of two
parents, a clone and a revert's abandoned branch, made through the API), the world page live over SSE, a whisper
and freeze/thaw from the page confirmed by the API, an error shown in place, a viewer's page without controls whose
forged change is refused, a change without the CSRF token refused, a revoked token's page back at sign-in. Every
page is checked for console errors, failed requests and requests that leave the server.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``.ci/run``); without it these tests skip locally and fail
under ``CI=true``. ``SOULFRA_SCREENSHOTS=<dir>`` keeps the screenshots of each view there (docs/screenshots/ holds
the committed ones); otherwise they go to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from .support import Server, running_server, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = [pytest.mark.xdist_group("test_dashboard"), pytest.mark.timeout(180)]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DEFAULT = "world-0"
AGENTS = "997"  # with the three named agents, the 1,000 the screenshots ask for (and > 500 to choose from)


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests need Chromium under CI=true: {reason}")
    pytest.skip(f"no browser for the dashboard tests: {reason} (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is absent")
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 -- only these tests drive a browser
    except ImportError as exc:
        _missing(f"the playwright package is not installed ({exc})")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Ten ticks a second: at 1,000 agents the forks, clones and merges the tests make all tick beside the default
    # world on a shared machine, and a revert or a merge of such worlds may take more than 15 s under that load.
    # The tests leave it holding ten such worlds; a CI run at load 4 to 5 saw its stop pass the 10 s limit and end
    # as documented (every acknowledged input stored), so that stop is accepted too.
    with running_server(
        tmp_path_factory.mktemp("dashboard"),
        rate="10",
        request_timeout=60.0,
        extra=["--agents", AGENTS],
        slow_stop_ok=True,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("SOULFRA_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Watched:
    """A browser page of its own (own cookies) and what it did wrong: console errors, failed requests, requests to
    anywhere but the server."""

    page: Page
    context: BrowserContext
    origin: str
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def assert_clean(self, *expected: str) -> None:
        """No console error but those matching one of ``expected`` (regexes), no failed or outside request."""
        unexpected = [e for e in self.errors if not any(re.search(p, e) for p in expected)]
        assert not unexpected, unexpected
        assert not self.failed, self.failed
        assert not self.outside, self.outside


@pytest.fixture
def watched(browser: Browser, server: Server) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    seen = Watched(page=page, context=context, origin=server.url)

    def console(message: Any) -> None:
        if message.type == "error":
            seen.errors.append(message.text)

    def request(req: Any) -> None:
        if not req.url.startswith(server.url + "/") and not req.url.startswith(("data:", "blob:")):
            seen.outside.append(req.url)

    def request_failed(req: Any) -> None:
        if "/events?" in req.url:
            return  # the live stream, cut when the page goes (its end is no failure of the page)
        if req.method == "GET" and req.failure == "net::ERR_ABORTED":
            return  # a read in flight when the page navigated away (htmx's poll of the instances, say)
        seen.failed.append(f"{req.method} {req.url}: {req.failure}")

    page.on("console", console)
    page.on("pageerror", lambda error: seen.errors.append(f"uncaught: {error}"))
    page.on("request", request)
    page.on("requestfailed", request_failed)
    try:
        yield seen
    finally:
        context.close()


def sign_in(seen: Watched, token: str) -> None:
    seen.page.goto(seen.origin + "/")
    seen.page.fill("#token", token)
    seen.page.click("#signin-form button[type=submit]")
    seen.page.wait_for_selector("#instance-table", timeout=15_000)


def until(page: Page, condition: str, *, timeout: float = 15.0) -> None:
    """Wait until the JavaScript expression ``condition`` holds in ``page`` (asked from here: playwright's own
    ``wait_for_function`` evaluates strings with ``eval``, which the page's CSP rightly forbids)."""
    from playwright.sync_api import Error as PlaywrightError  # noqa: PLC0415 -- playwright loads only where it runs

    def holds() -> bool:
        try:
            return bool(page.evaluate(condition))
        except PlaywrightError as exc:  # asked while the page was between documents (a click that navigates)
            if "Execution context was destroyed" in str(exc):
                return False
            raise

    wait_for(holds, timeout=timeout, what=condition)


def api(server: Server) -> httpx.Client:
    return server.client()


def runtime_tick(client: httpx.Client, instance: str) -> int:
    reply = client.get(f"/api/instances/{instance}/status")
    assert reply.status_code == 200, reply.text
    return int(reply.json()["platforms"]["runtime"]["tick"])


def fork(client: httpx.Client, fork_id: str) -> int:
    made = client.post("/api/god/fork", json={"source": DEFAULT, "forks": [{"id": fork_id}]})
    assert made.status_code == 200, made.text
    return int(made.json()["tick"])


def test_sign_in_with_the_home_token_and_a_wrong_one_is_refused(watched: Watched, server: Server, shots: Path) -> None:
    page = watched.page
    page.goto(server.url + "/")
    page.screenshot(path=str(shots / "signin.png"))
    page.fill("#token", "sft_not-a-token")
    page.click("#signin-form button[type=submit]")
    assert "not signed in" in page.inner_text("#signin-error")
    assert not [c for c in watched.context.cookies() if c["name"] == "soulfra_session"]
    page.fill("#token", server.token)
    page.click("#signin-form button[type=submit]")
    page.wait_for_selector("#instance-table")
    assert "local-admin · admin" in page.inner_text(".who")
    (cookie,) = [c for c in watched.context.cookies() if c["name"] == "soulfra_session"]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["value"] != server.token
    assert page.evaluate("document.cookie") == ""  # out of the page's scripts' reach
    watched.assert_clean(r"status of 401")  # the refused sign-in's own answer


def god(client: httpx.Client, command: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = client.post(f"/api/god/{command}", json=body)
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def test_the_instances_view_lists_them_and_draws_the_lineage(watched: Watched, server: Server, shots: Path) -> None:
    with api(server) as client:
        tick = fork(client, "dash-fork")
        god(client, "fork", {"source": DEFAULT, "forks": [{"id": "dash-ours"}, {"id": "dash-theirs"}]})
        god(client, "merge", {"ours": "dash-ours", "theirs": "dash-theirs", "id": "dash-merged"})
        cloned = int(god(client, "clone", {"source": DEFAULT, "id": "dash-clone"})["tick"])
        wait_for(lambda: runtime_tick(client, "dash-clone") > cloned + 3, what="the clone to run a few ticks")
        god(client, "revert", {"instance": "dash-clone", "tick": cloned + 1})
        listed = {row["id"] for row in client.get("/api/instances").json()["instances"]}
    assert "dash-clone-branch" in listed
    sign_in(watched, server.token)
    page = watched.page
    page.wait_for_selector('#instance-table tr[data-instance="dash-fork"]', timeout=15_000)
    shown = set(page.eval_on_selector_all("#instance-table tbody tr", "rows => rows.map(r => r.dataset.instance)"))
    assert listed <= shown
    edge = '#lineage g.edge[data-parent="world-0"][data-child="dash-fork"]'
    page.wait_for_selector(edge)
    assert page.locator(f"{edge} text").text_content() == f"fork @ {tick}"
    page.wait_for_selector('#lineage a.node-merge[data-instance="dash-merged"]')
    into = page.eval_on_selector_all(
        '#lineage g.edge[data-child="dash-merged"]', "edges => edges.map(e => [e.dataset.parent, e.classList.length])"
    )
    assert sorted(parent for parent, _ in into) == ["dash-ours", "dash-theirs"]  # a merge: two parents
    assert page.locator("#lineage a.node-clone[data-instance='dash-clone']").count() == 1
    branch = "#lineage a.node-abandoned.node-branch[data-instance='dash-clone-branch']"
    page.wait_for_selector(branch)
    abandoned = '#instance-table tr[data-instance="dash-clone-branch"] .status'
    assert page.inner_text(abandoned) == "abandoned"
    assert page.inner_text(f'#instance-table tr[data-instance="{DEFAULT}"] .status') == "running"
    assert page.locator(f'#instance-table tr[data-instance="{DEFAULT}"] .vibe').count() == 1
    page.screenshot(path=str(shots / "instances.png"))
    page.click('#lineage a[data-instance="dash-fork"]')
    page.wait_for_url(f"{server.url}/worlds/dash-fork")
    watched.assert_clean()


def test_the_world_page_is_live_and_shows_an_agent(watched: Watched, server: Server, shots: Path) -> None:
    sign_in(watched, server.token)
    page = watched.page
    page.goto(f"{server.url}/worlds/{DEFAULT}")
    until(page, "document.getElementById('tick').textContent !== '\u2013'")
    first = int(page.inner_text("#tick"))
    until(page, f"Number(document.getElementById('tick').textContent) > {first + 2}")
    assert page.inner_text("#stream-state") == "live"
    assert re.fullmatch(r"[a-z]+-[a-z]+", page.inner_text("#condition"))
    assert page.inner_text("#narrative")
    page.wait_for_selector("#feed li")
    assert int(page.inner_text("#agent-count")) == int(AGENTS) + 3  # the three named agents and the extras
    page.fill("#agent-filter", "arty")
    until(page, "document.querySelectorAll('#agent-list .agent-button').length === 1")
    page.click('#agent-list .agent-button[data-agent="arty"]')
    page.wait_for_selector("#agent-detail .memories li")
    page.wait_for_selector('#agent-loop[data-agent="arty"]')
    detail = page.inner_text("#agent-detail")
    for part in ("Arty (arty)", "Personality", "warmth", "Loop (tick ", "phase", "Recent actions", "Memories",
                 "Affinities"):  # fmt: skip
        assert part in detail, detail
    page.fill("#agent-filter", "")
    page.select_option("#agent-mind", "governor")  # one mind only: the list (and the canvas) show governors alone
    until(page, "[...document.querySelectorAll('#agent-list .agent-button')].every("
                "(b) => b.textContent.includes('governor')) && document.querySelector("
                "'#agent-list .agent-button[data-agent=\"cal-riven\"]') !== null")  # fmt: skip
    page.select_option("#agent-mind", "")
    page.screenshot(path=str(shots / "world.png"))
    page.evaluate("document.getElementById('agent-detail').scrollIntoView()")
    page.screenshot(path=str(shots / "agent-panel.png"))
    page.evaluate("document.getElementById('threads').scrollIntoView()")
    page.screenshot(path=str(shots / "threads.png"))
    watched.assert_clean()


def test_a_whisper_to_the_last_of_a_thousand_agents_is_acknowledged_logged_and_heard(
    watched: Watched, server: Server
) -> None:
    with api(server) as client:
        listed = client.get(f"/api/instances/{DEFAULT}/agents", params={"view": "compact", "limit": 10000}).json()
    last = listed["agents"][-1]["id"]
    assert listed["total"] == len(listed["agents"]) > 500  # past where the old list of targets stopped
    sign_in(watched, server.token)
    page = watched.page
    page.goto(f"{server.url}/worlds/{DEFAULT}")
    page.wait_for_selector(f'#god-agents option[value="{last}"]', state="attached")  # every agent is offered
    assert page.locator("#god-agents option").count() == listed["total"]
    assert page.input_value("#whisper-target") == "*"  # every agent, unless one is chosen
    page.fill("#whisper-target", last)
    # At 1,000 agents a tick's events fill the feed's 200 entries fast: note every whisper heard as it enters it.
    page.evaluate(
        """() => { window.heardInFeed = [];
            new MutationObserver((changes) => { for (const change of changes) for (const node of change.addedNodes)
                if (node.classList?.contains('kind-whisper_heard')) window.heardInFeed.push(node.textContent); })
            .observe(document.getElementById('feed'), {childList: true}); }"""
    )
    page.select_option("#whisper-tone", "playful")
    page.fill("#whisper-text", "the lanterns are listening")
    page.click("#whisper-form button[type=submit]")
    until(page, "document.getElementById('control-result').textContent.includes('acknowledged')")
    seq = int(re.search(r"input (\d+)", page.inner_text("#control-result")).group(1))  # type: ignore[union-attr]
    with api(server) as client:
        inputs = client.get(f"/api/instances/{DEFAULT}/inputs", params={"limit": 1000}).json()
    found = [i for i in inputs["inputs"] if i.get("seq") == seq]
    assert len(found) == 1, inputs
    assert found[0]["input"]["type"] == "whisper"
    assert (found[0]["input"]["target"], found[0]["input"]["text"]) == (last, "the lanterns are listening")
    until(page, "window.heardInFeed.some((text) => text.includes('the lanterns are listening'))")  # at its tick
    (heard,) = [t for t in page.evaluate("window.heardInFeed") if "the lanterns are listening" in t]
    assert f"{last} heard a playful whisper" in heard
    watched.assert_clean()


def freeze_from_the_page(page: Page) -> int:
    """Freeze the page's world with its button; the tick it stands at once the page has read it again."""
    page.click("#freeze-button")
    until(page, "document.getElementById('control-result').textContent.startsWith('frozen at tick')")
    held = int(re.search(r"frozen at tick (\d+)", page.inner_text("#control-result")).group(1))  # type: ignore[union-attr]
    until(page, f"document.getElementById('thread-table').dataset.tick === '{held}'")  # read after the freeze
    return held


def test_the_threads_view_is_live_and_shows_what_the_thread_state_path_gives(watched: Watched, server: Server) -> None:
    with api(server) as client:
        fork(client, "dash-threads")
    sign_in(watched, server.token)
    page = watched.page
    page.goto(f"{server.url}/worlds/dash-threads")
    until(page, "document.querySelectorAll('#thread-table tbody tr').length > 0")
    first = int(page.get_attribute("#thread-table", "data-tick") or -1)
    until(page, f"Number(document.getElementById('thread-table').dataset.tick) > {first + 1}")  # refreshed live
    held = freeze_from_the_page(page)
    with api(server) as client:
        state = client.get("/api/thread/state", params={"instance": "dash-threads"}).json()
    assert state["tick"] == held
    shown = page.eval_on_selector_all(
        "#thread-table tbody tr",
        """rows => rows.map(r => [Number(r.dataset.thread), r.querySelector('.thread-topic').textContent,
            Number(r.querySelector('.thread-posts').textContent),
            r.querySelector('.thread-participants').dataset.participants, Number(r.dataset.quiet),
            r.classList.contains('thread-quiet')])""",
    )
    stall = state["stall_after"]
    expected = [[t["id"], t["topic"], t["posts"], ",".join(t["participants"]), t["quiet"], t["quiet"] >= stall]
                for t in state["threads"]]  # fmt: skip
    assert shown == expected
    assert len(expected) == state["open"] > 0
    assert page.inner_text("#thread-summary").startswith(f"{state['open']} open at tick {held}")
    watched.assert_clean()


def test_the_agent_panel_shows_the_agent_s_loop_phase_and_recent_actions(watched: Watched, server: Server) -> None:
    with api(server) as client:
        fork(client, "dash-loop")
    sign_in(watched, server.token)
    page = watched.page
    page.goto(f"{server.url}/worlds/dash-loop")
    until(page, "document.querySelectorAll('#thread-table tbody tr').length > 0")
    held = freeze_from_the_page(page)
    with api(server) as client:
        loop = client.get("/api/agents/loop", params={"instance": "dash-loop", "limit": 1000}).json()
    assert loop["tick"] == held
    busiest = max(loop["agents"], key=lambda a: (len(a["recent"]), a["last_acted"] or -1))  # one with actions
    assert busiest["recent"], loop["agents"][:3]
    page.fill("#agent-filter", busiest["id"])
    page.click(f'#agent-list .agent-button[data-agent="{busiest["id"]}"]')
    page.wait_for_selector(f'#agent-loop[data-agent="{busiest["id"]}"]')
    with api(server) as client:
        one = client.get("/api/agents/loop", params={"instance": "dash-loop", "agent": busiest["id"]}).json()
    (row,) = one["agents"]
    assert row == busiest  # the world stands still: the one agent's answer is its row in the whole page
    assert page.inner_text("#agent-phase") == row["phase"]
    assert page.get_attribute("#agent-loop", "data-tick") == str(held)
    actions = page.eval_on_selector_all(
        "#agent-actions li", "items => items.map(i => [Number(i.dataset.tick), i.dataset.action])"
    )
    assert actions == [[a["tick"], a["action"]] for a in row["recent"]]
    assert row["recent"][0]["action"] in page.inner_text("#agent-detail")
    watched.assert_clean()


def test_freeze_from_the_page_stops_ticks_and_thaw_resumes_them(watched: Watched, server: Server) -> None:
    with api(server) as client:
        fork(client, "dash-frozen")
        sign_in(watched, server.token)
        page = watched.page
        page.goto(f"{server.url}/worlds/dash-frozen")
        page.wait_for_selector("#freeze-button")
        page.click("#freeze-button")
        until(page, "document.getElementById('control-result').textContent.startsWith('frozen at tick')")
        held = runtime_tick(client, "dash-frozen")
        rows = {row["id"]: row for row in client.get("/api/instances").json()["instances"]}
        assert rows["dash-frozen"]["state"] == "frozen"
        page.wait_for_selector("#state.status-frozen")  # the page says so too
        base = runtime_tick(client, DEFAULT)  # time passes, measured by the default world's ticks
        wait_for(lambda: runtime_tick(client, DEFAULT) >= base + 10, what="ten ticks of the default world")
        assert runtime_tick(client, "dash-frozen") == held
        page.click("#thaw-button")
        until(page, "document.getElementById('control-result').textContent.startsWith('thawed at tick')")
        wait_for(lambda: runtime_tick(client, "dash-frozen") > held + 2, what="the thawed fork to tick again")
        page.wait_for_selector("#state.status-running")
    watched.assert_clean()


def test_a_viewer_s_page_has_no_controls_and_its_forged_change_is_refused(watched: Watched, server: Server) -> None:
    with api(server) as client:
        made = client.post("/api/tokens", json={"name": "dash-viewer", "role": "viewer"})
        assert made.status_code == 201, made.text
        viewer = made.json()["token"]
    sign_in(watched, viewer)
    page = watched.page
    page.goto(f"{server.url}/worlds/{DEFAULT}")
    until(page, "document.getElementById('tick').textContent !== '\u2013'")
    assert page.locator("#controls").count() == 0
    assert page.locator("#whisper-form, #freeze-button, #thaw-button").count() == 0
    forged = page.evaluate(
        """async (path) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const reply = await fetch(path, {method: "POST", headers: {"content-type": "application/json",
                "x-csrf-token": csrf}, body: JSON.stringify({text: "let me in"})});
            return [reply.status, (await reply.json()).code];
        }""",
        f"/api/instances/{DEFAULT}/whispers",
    )
    assert forged == [403, "forbidden"]
    watched.assert_clean(r"status of 403")  # the forged request's own refusal


def test_a_change_without_the_csrf_token_from_a_session_is_refused(watched: Watched, server: Server) -> None:
    sign_in(watched, server.token)
    page = watched.page
    answer = page.evaluate(
        """async (path) => {
            const reply = await fetch(path, {method: "POST", headers: {"content-type": "application/json"},
                body: JSON.stringify({text: "no token"})});
            return [reply.status, (await reply.json()).code];
        }""",
        f"/api/instances/{DEFAULT}/whispers",
    )
    assert answer == [403, "csrf"]
    watched.assert_clean(r"status of 403")


def test_a_revoked_token_s_page_returns_to_the_sign_in_form(watched: Watched, server: Server) -> None:
    with api(server) as client:
        made = client.post("/api/tokens", json={"name": "dash-brief", "role": "viewer"})
        assert made.status_code == 201, made.text
        sign_in(watched, made.json()["token"])
        assert client.delete("/api/tokens/dash-brief").status_code == 200
    watched.page.wait_for_selector("#signin-form", timeout=15_000)  # the next refresh of the instances is refused
    watched.assert_clean(r"status of 401", r"Error Code 401 from /ui/instances")  # the browser's and htmx's notes


def test_an_error_is_shown_in_place_and_an_overridden_world_says_so(watched: Watched, server: Server) -> None:
    with api(server) as client:
        fork(client, "dash-halted")
        halted = client.post("/api/instances/dash-halted/override", json={"reason": "dashboard test"})
        assert halted.status_code == 200, halted.text
        sign_in(watched, server.token)
        page = watched.page
        page.wait_for_selector('#instance-table tr[data-instance="dash-halted"] .status-overridden')
        page.goto(f"{server.url}/worlds/dash-halted")
        page.wait_for_selector("#state.status-overridden")
        page.fill("#whisper-text", "are you there?")
        page.click("#whisper-form button[type=submit]")
        page.wait_for_selector("#control-result.error")
        assert "override_active" in page.inner_text("#control-result")
        assert page.input_value("#whisper-text") == "are you there?"  # kept, to send again after a resume
        assert client.post("/api/instances/dash-halted/resume", json={}).status_code == 200
    watched.assert_clean(r"status of 409")  # the refused whisper's own answer
