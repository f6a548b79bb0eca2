"""God mode in the dashboard, in a real browser against a real ``soulfra up``: clone and fork N from the world page
make instances the API lists under their parent; the merge page's preview shows exactly the conflicts the API's
merge then reports, and its merge makes an instance with two parents; possess/act/release from the page land in the
input log; vibe and ritual interventions are accepted and logged, a rewrite makes a branch with an input dropped and
one added; a cross-instance post reaches the other world's log; the packages page's export (compact, and full with
its head state) is a package ``soulfra package show`` accepts, importing it under a new id works and a tampered copy
is refused with its reason shown; viewers and operators see no god commands, and an operator's forged god command is
refused. Every page is checked for console errors, failed requests and requests that leave the server (the fixtures
of test_dashboard).

``SOULFRA_SCREENSHOTS=<dir>`` keeps the screenshots (merge.png, god-mode.png, packages.png) there;
docs/screenshots/ holds the committed ones.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support import Server, environment, running_server, wait_for
from .test_dashboard import Watched, browser, shots, sign_in, until, watched

__all__ = ["browser", "shots", "watched"]  # the shared fixtures, used here by name

pytestmark = [pytest.mark.xdist_group("test_dashboard_god"), pytest.mark.timeout(240)]

DEFAULT = "world-0"
AGENTS = "1000"  # the realistic world: the screenshots show a crowd
WARM = {"type": "intervene", "kind": "personality", "agent": "arty", "traits": {"warmth": "0.9"}}
COLD = {"type": "intervene", "kind": "personality", "agent": "arty", "traits": {"warmth": "0.2"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The tests leave it holding a dozen such worlds (forks, clones, merges, linked pairs); at load 4 to 5 its stop
    # passed the 10 s limit in a CI run and ended as documented (every acknowledged input stored): accepted too.
    with running_server(
        tmp_path_factory.mktemp("dashboard-god"), rate="5", extra=["--agents", AGENTS], slow_stop_ok=True
    ) as running:
        yield running


def rows_of(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in client.get("/api/instances").json()["instances"]}


def god(client: httpx.Client, command: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = client.post(f"/api/god/{command}", json=body)
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def runtime_tick(client: httpx.Client, instance: str) -> int:
    return int(client.get(f"/api/instances/{instance}/status").json()["platforms"]["runtime"]["tick"])


def result_of(page: Any, output: str, starts: str) -> str:
    """The text of ``output`` once it starts with ``starts`` (failing at once, with it, if it shows an error)."""
    until(page, f"(t => t.startsWith({starts!r}) || document.getElementById({output!r}).classList.contains('error'))"
                f"(document.getElementById({output!r}).textContent)")  # fmt: skip
    text: str = page.inner_text(f"#{output}")
    assert text.startswith(starts), text
    return text


def seq_in(text: str) -> int:
    found = re.search(r"input (\d+)", text)
    assert found, text
    return int(found.group(1))


def open_world(seen: Watched, server: Server, instance: str = DEFAULT) -> Any:
    sign_in(seen, server.token)
    page = seen.page
    page.goto(f"{server.url}/worlds/{instance}")
    until(page, "document.getElementById('tick').textContent !== '\u2013'")
    return page


def test_clone_and_fork_two_from_the_page_make_children_of_the_world(watched: Watched, server: Server) -> None:
    page = open_world(watched, server)
    page.click("#god-clone summary")
    page.fill("#clone-id", "pg-clone")
    page.fill("#clone-mods", '[{"type": "whisper", "target": "arty", "text": "you are a copy"}]')
    page.click("#clone-form button[type=submit]")
    assert "as pg-clone (1 modifications)" in result_of(page, "clone-result", "cloned at tick")
    page.click("#god-fork summary")
    page.fill("#fork-count", "2")
    assert page.locator("#fork-rows .fork-row").count() == 2
    ids = page.locator("#fork-rows .fork-id")
    ids.nth(0).fill("pg-fork-1")
    ids.nth(1).fill("pg-fork-2")
    page.locator("#fork-rows .fork-mods").nth(0).fill(json.dumps([WARM]))
    page.click("#fork-form button[type=submit]")
    assert result_of(page, "fork-result", "forked at tick").endswith("pg-fork-1, pg-fork-2")
    with server.client() as client:
        rows = rows_of(client)
    for child in ("pg-clone", "pg-fork-1", "pg-fork-2"):
        assert rows[child]["parent_id"] == DEFAULT, rows[child]
    watched.assert_clean()


def test_the_merge_preview_shows_the_merge_s_conflicts_and_the_page_merges(
    watched: Watched, server: Server, shots: Path
) -> None:
    with server.client() as client:
        god(client, "fork", {"source": DEFAULT, "forks": [
            {"id": "mg-ours", "modifications": [WARM]}, {"id": "mg-theirs", "modifications": [COLD]},
        ]})  # fmt: skip
        start = runtime_tick(client, "mg-ours")
        wait_for(lambda: min(runtime_tick(client, i) for i in ("mg-ours", "mg-theirs")) > start + 3, what="ticks")
    sign_in(watched, server.token)
    page = watched.page
    page.goto(f"{server.url}/merge")
    page.select_option("#merge-ours", "mg-ours")
    page.select_option("#merge-theirs", "mg-theirs")
    page.click("#freeze-both-button")  # both stand still: the preview then stays exact
    result_of(page, "preview-result", "frozen:")
    page.select_option("#policy-agents", "theirs")
    page.click("#preview-button")
    until(
        page, "/^\\d+ conflicts|\\(\\w+, HTTP/.test(document.getElementById('preview-result').textContent)", timeout=60
    )
    shown = page.eval_on_selector_all(
        "#preview-conflicts tbody tr", "rows => rows.map(r => [r.dataset.domain, r.dataset.entity, r.dataset.field])"
    )
    count = int(page.inner_text("#preview-result").split(" ", 1)[0])
    assert count == len(shown) > 0
    with server.client() as client:  # the API's merge of the same two, with the same policies
        policies = {"agents": "theirs"}
        merged = god(client, "merge", {"ours": "mg-ours", "theirs": "mg-theirs", "id": "mg-api", "policies": policies})
    assert shown == [[c["domain"], c["entity"], c["field"]] for c in merged["conflicts"]]
    page.fill("#merge-id", "mg-page")
    page.click("#merge-button")
    page.wait_for_selector("#merged-link", timeout=30_000)
    reported = page.eval_on_selector_all(
        "#report-conflicts tbody tr", "rows => rows.map(r => [r.dataset.domain, r.dataset.entity, r.dataset.field])"
    )
    assert reported == shown
    with server.client() as client:
        made = rows_of(client)["mg-page"]
    assert (made["parent_id"], made["merge_parent_id"]) == ("mg-ours", "mg-theirs")
    page.evaluate("document.querySelector('.merge-preview').scrollTop = 0")
    page.screenshot(path=str(shots / "merge.png"), full_page=False)
    watched.assert_clean()


def test_possess_act_and_release_from_the_page_land_in_the_input_log(watched: Watched, server: Server) -> None:
    page = open_world(watched, server)
    page.fill("#possess-agent", "arty")
    page.click("#possess-button")
    possessed = seq_in(result_of(page, "possess-result", "possessed arty"))
    page.select_option("#act-action", "post")
    page.fill("#act-text", "spoken through arty")
    page.fill("#act-topic", "lanterns")
    page.click("#act-button")
    acted = seq_in(result_of(page, "possess-result", "arty will post"))
    page.click("#release-button")
    released = seq_in(result_of(page, "possess-result", "released arty"))
    with server.client() as client:
        logged = client.get(f"/api/instances/{DEFAULT}/inputs", params={"limit": 1000}).json()["inputs"]
    by_seq = {row["seq"]: row for row in logged}
    kinds = [by_seq[seq]["input"]["type"] for seq in (possessed, acted, released)]
    assert kinds == ["possess", "act", "release"]
    assert all(by_seq[seq]["input"]["agent"] == "arty" for seq in (possessed, acted, released))
    assert by_seq[acted]["input"]["text"] == "spoken through arty"
    watched.assert_clean()


def test_a_vibe_intervention_from_the_page_is_accepted(watched: Watched, server: Server, shots: Path) -> None:
    page = open_world(watched, server)
    page.click("#god-intervene summary")
    page.select_option("#intervene-kind", "vibe")
    page.select_option("#vibe-condition", "chaos-bloom")
    page.fill("#vibe-duration", "30")
    page.click("#intervene-form button[type=submit]")
    seq = seq_in(result_of(page, "intervene-result", "vibe intervention accepted"))
    with server.client() as client:
        logged = client.get(f"/api/instances/{DEFAULT}/inputs", params={"limit": 1000}).json()["inputs"]
    (found,) = [row for row in logged if row["seq"] == seq]
    assert "chaos-bloom" in str(found)
    page.select_option("#intervene-kind", "personality")  # a refusal, shown in place with the API's code
    page.fill("#trait-agent", "nobody-here")
    page.fill("#trait-values", "warmth=0.5")
    page.click("#intervene-form button[type=submit]")
    page.wait_for_selector("#intervene-result.error")
    assert re.search(r"\(\w+, HTTP 4\d\d\)", page.inner_text("#intervene-result"))
    page.click("#god-clone summary")
    page.evaluate("document.getElementById('god').scrollIntoView()")
    page.screenshot(path=str(shots / "god-mode.png"))
    watched.assert_clean(r"status of 4\d\d")  # the refused intervention's own answer


def test_a_ritual_intervention_from_the_page_lands_in_the_input_log(watched: Watched, server: Server) -> None:
    page = open_world(watched, server)
    page.click("#god-intervene summary")
    page.select_option("#intervene-kind", "ritual")
    page.fill("#ritual-name", "page-dusk")
    page.fill("#ritual-participants", "arty, cal-riven")
    page.check("#ritual-blessed")
    page.click("#intervene-form button[type=submit]")
    seq = seq_in(result_of(page, "intervene-result", "ritual intervention accepted"))
    with server.client() as client:
        logged = client.get(f"/api/instances/{DEFAULT}/inputs", params={"limit": 1000}).json()["inputs"]
    (found,) = [row["input"] for row in logged if row["seq"] == seq]
    assert (found["type"], found["kind"], found["name"]) == ("intervene", "ritual", "page-dusk")
    assert (found["participants"], found["blessed"]) == (["arty", "cal-riven"], True)
    watched.assert_clean()


def test_a_rewrite_from_the_page_makes_a_branch_with_an_input_dropped_and_one_added(
    watched: Watched, server: Server
) -> None:
    with server.client() as client:
        god(client, "fork", {"source": DEFAULT, "forks": [{"id": "rw-source"}]})
        sent = client.post("/api/instances/rw-source/whispers", json={"text": "to be dropped", "target": "arty"})
        assert sent.status_code == 202, sent.text
        ack = sent.json()
        wait_for(lambda: rows_of(client)["rw-source"]["head_tick"] > ack["tick"], what="the whisper's tick durable")
    page = open_world(watched, server, "rw-source")
    page.click("#god-intervene summary")
    page.select_option("#intervene-kind", "rewrite")
    page.fill("#rewrite-from", str(ack["tick"]))
    page.fill("#rewrite-drop", str(ack["seq"]))
    added = {"type": "whisper", "target": "arty", "text": "said instead", "tick": ack["tick"]}
    page.fill("#rewrite-add", json.dumps([added]))
    page.fill("#rewrite-id", "rw-branch")
    page.click("#intervene-form button[type=submit]")
    text = result_of(page, "intervene-result", f"rewritten from tick {ack['tick']} as rw-branch")
    assert ": 1 dropped, 1 added, now at tick " in text, text
    with server.client() as client:
        row = rows_of(client)["rw-branch"]
        logged = client.get("/api/instances/rw-branch/inputs", params={"limit": 1000}).json()["inputs"]
    assert row["parent_id"] == "rw-source"
    texts = [item["input"].get("text") for item in logged]
    assert "said instead" in texts
    assert "to be dropped" not in texts
    watched.assert_clean()


def test_a_cross_instance_post_from_the_page_reaches_the_other_world_s_thread(watched: Watched, server: Server) -> None:
    with server.client() as client:
        god(client, "fork", {"source": DEFAULT, "forks": [{"id": "cp-here"}, {"id": "cp-there"}]})
        god(client, "communicate", {"action": "link", "source": "cp-here", "target": "cp-there"})
        god(client, "freeze", {"instances": ["cp-there"]})  # its threads stay open while the page posts to one
        threads = client.get("/api/thread/state", params={"instance": "cp-there"}).json()["threads"]
    thread = max(threads, key=lambda t: t["posts"])["id"]
    page = open_world(watched, server, "cp-here")
    page.click("#god-link summary")
    page.wait_for_selector('#link-target option[value="cp-there"]', state="attached")
    page.select_option("#link-target", "cp-there")
    page.select_option("#link-action", "post")
    page.fill("#link-agent", "arty")
    page.fill("#link-thread", str(thread))
    page.fill("#link-text", "a word from the other side")
    page.click("#link-form button[type=submit]")
    seq = seq_in(result_of(page, "link-result", "post sent to cp-there"))
    with server.client() as client:
        logged = client.get("/api/instances/cp-there/inputs", params={"limit": 1000}).json()["inputs"]
    (found,) = [row["input"] for row in logged if row["seq"] == seq]
    assert (found["type"], found["origin"], found["thread"]) == ("crosspost", "cp-here/arty", thread)
    assert found["text"] == "a word from the other side"
    watched.assert_clean()


def test_a_full_export_from_the_page_holds_the_head_state_and_imports_back(
    watched: Watched, server: Server, tmp_path: Path, shots: Path
) -> None:
    with server.client() as client:
        god(client, "clone", {"source": DEFAULT, "id": "pk-full"})
    sign_in(watched, server.token)
    page = watched.page
    page.goto(f"{server.url}/packages")
    page.select_option("#export-instance", "pk-full")
    assert not page.is_checked("#export-compact")  # full unless asked
    assert page.get_attribute("#export-link", "href") == "/api/instances/pk-full/export"
    with page.expect_download() as download:
        page.click("#export-link")
    saved = tmp_path / "pk-full.soulpkg"
    download.value.save_as(saved)
    with zipfile.ZipFile(saved) as package:
        names = package.namelist()
    assert any(name.endswith("state/head.zst") for name in names), names  # full: the head state itself
    shown = subprocess.run(
        [sys.executable, "-m", "soulfra", "package", "show", "--json", str(saved)],
        capture_output=True, text=True, env=environment(server.home), timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    (exported,) = json.loads(shown.stdout)["instances"]
    assert exported["id"] == "pk-full"

    page.set_input_files("#import-file", str(saved))
    page.fill("#import-as-id", "pk-full-copy")
    page.uncheck("#import-start")  # kept at the package's head, to compare
    page.click("#import-button")
    assert "imported pk-full-copy" in result_of(page, "import-result", "imported")
    page.screenshot(path=str(shots / "packages.png"))
    with server.client() as client:
        row = rows_of(client)["pk-full-copy"]
    assert row["head_tick"] == exported["head_tick"]
    watched.assert_clean()


def test_export_downloads_a_package_that_imports_and_a_tampered_one_is_refused(
    watched: Watched, server: Server, tmp_path: Path
) -> None:
    with server.client() as client:
        god(client, "clone", {"source": DEFAULT, "id": "pk-source"})
    sign_in(watched, server.token)
    page = watched.page
    page.goto(f"{server.url}/packages")
    page.select_option("#export-instance", "pk-source")
    page.check("#export-compact")
    assert page.get_attribute("#export-link", "href") == "/api/instances/pk-source/export?compact=true"
    with page.expect_download() as download:
        page.click("#export-link")
    saved = tmp_path / "pk-source.soulpkg"
    download.value.save_as(saved)
    shown = subprocess.run(
        [sys.executable, "-m", "soulfra", "package", "show", str(saved)],
        capture_output=True, text=True, env=environment(server.home), timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "pk-source" in shown.stdout

    page.set_input_files("#import-file", str(saved))
    page.fill("#import-as-id", "pk-copy")
    page.click("#import-button")
    assert "imported pk-copy" in result_of(page, "import-result", "imported")
    assert page.evaluate("document.getElementById('import-progress').value") == 100
    with server.client() as client:
        assert "pk-copy" in rows_of(client)

    tampered = tmp_path / "tampered.soulpkg"
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(tampered, "w") as target:
        for item in source.infolist():
            body = source.read(item)
            if item.filename.endswith("manifest.json"):
                body = body.replace(b"pk-source", b"pk-sourcf", 1)  # the signed manifest, changed by one byte
            target.writestr(item, body)
    page.set_input_files("#import-file", str(tampered))
    page.fill("#import-as-id", "pk-forged")
    page.click("#import-button")
    refusal = result_of(page, "import-result", "refused:")
    assert re.search(r"\(package_signature, HTTP 4\d\d\)$", refusal), refusal  # the signature no longer holds
    with server.client() as client:
        assert "pk-forged" not in rows_of(client)
    watched.assert_clean(r"status of 4\d\d")  # the refused import's own answer


def test_viewers_and_operators_see_no_god_commands_and_an_operator_s_forged_one_is_refused(
    watched: Watched, server: Server, browser: Any
) -> None:
    with server.client() as client:
        tokens = {}
        for role in ("viewer", "operator"):
            made = client.post("/api/tokens", json={"name": f"god-{role}", "role": role})
            assert made.status_code == 201, made.text
            tokens[role] = made.json()["token"]
    page = watched.page
    sign_in(watched, tokens["viewer"])
    page.goto(f"{server.url}/worlds/{DEFAULT}")
    until(page, "document.getElementById('tick').textContent !== '\u2013'")
    assert page.locator("#god, #god-commands, #freeze-duration").count() == 0
    assert page.locator("nav a[href='/merge']").count() == 0
    page.goto("about:blank")  # the world page polls and streams: signed out under it, a request would meet a 401
    watched.context.clear_cookies()

    sign_in(watched, tokens["operator"])
    page.goto(f"{server.url}/worlds/{DEFAULT}")
    until(page, "document.getElementById('tick').textContent !== '\u2013'")
    assert page.locator("#possess-form").count() == 1  # an operator possesses
    assert page.locator("#god-commands, #clone-form, #fork-form, #intervene-form, #link-form").count() == 0
    assert page.locator("nav a[href='/merge'], nav a[href='/packages']").count() == 0
    forged = page.evaluate(
        """async () => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const answers = [];
            for (const [path, body] of [["/api/god/clone", {source: "world-0"}],
                                        ["/api/god/merge/preview", {ours: "world-0", theirs: "world-0"}]]) {
                const reply = await fetch(path, {method: "POST", headers: {"content-type": "application/json",
                    "x-csrf-token": csrf}, body: JSON.stringify(body)});
                answers.push([reply.status, (await reply.json()).code]);
            }
            return answers;
        }"""
    )
    assert forged == [[403, "forbidden"], [403, "forbidden"]]
    merge_page = page.goto(f"{server.url}/merge")
    assert merge_page is not None and merge_page.status == 403
    watched.assert_clean(r"status of 403")  # the forged requests' and the refused page's own answers


def test_a_timed_freeze_and_a_cross_instance_link_and_whisper_from_the_page(watched: Watched, server: Server) -> None:
    with server.client() as client:
        god(client, "fork", {"source": DEFAULT, "forks": [{"id": "ln-here"}, {"id": "ln-there"}]})
    page = open_world(watched, server, "ln-here")
    page.fill("#freeze-duration", "600")
    page.click("#freeze-button")
    until(page, "document.getElementById('control-result').textContent.includes(' until ')")
    with server.client() as client:
        assert rows_of(client)["ln-here"]["state"] == "frozen"
    page.click("#thaw-button")
    until(page, "document.getElementById('control-result').textContent.startsWith('thawed at tick')")
    page.click("#god-link summary")
    page.wait_for_selector('#link-target option[value="ln-there"]', state="attached")
    page.select_option("#link-target", "ln-there")
    page.select_option("#link-action", "link")
    page.click("#link-form button[type=submit]")
    assert "ln-there" in result_of(page, "link-result", "linked to ln-there")
    page.select_option("#link-action", "whisper")
    page.fill("#link-agent", "arty")
    page.fill("#link-text", "hello from the other world")
    page.click("#link-form button[type=submit]")
    seq = seq_in(result_of(page, "link-result", "whisper sent to ln-there"))
    with server.client() as client:
        logged = client.get("/api/instances/ln-there/inputs", params={"limit": 1000}).json()["inputs"]
    (found,) = [row for row in logged if row["seq"] == seq]
    assert "hello from the other world" in str(found["input"])
    page.select_option("#link-action", "unlink")
    page.click("#link-form button[type=submit]")
    result_of(page, "link-result", "unlinked from ln-there")
    watched.assert_clean()
