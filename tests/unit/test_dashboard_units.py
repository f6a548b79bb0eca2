"""The dashboard's pure parts: the lineage layout (roots, forks at their ticks, clones, merges right of both parents,
abandoned branches, parents the caller cannot see), the session table on an in-memory store (random ids, expiry,
sign-out, a bound on a token's sessions, CSRF compared whole) and the static files the package ships (htmx pinned
with its licence and hashes, all of them in the wheel)."""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path
from typing import Any

from hatchling.builders.wheel import WheelBuilder

import soulfra
from soulfra.dashboard.assets import load_assets
from soulfra.dashboard.lineage import layout, status_of
from soulfra.security.sessions import SessionTable
from soulfra.store import InMemoryStore


def row(instance_id: str, created: int, **fields: Any) -> dict[str, Any]:
    return {"id": instance_id, "created_at": f"2026-01-01T00:00:{created:02d}", "state": "running", **fields}


def test_a_fork_sits_right_of_its_parent_on_the_parent_s_lane_and_says_its_tick() -> None:
    graph = layout([row("root", 0), row("child", 1, parent_id="root", fork_tick=18, world={"origin": "fork"})])
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["root"].kind == "root"
    assert nodes["child"].kind == "fork"
    assert nodes["child"].x > nodes["root"].x
    assert nodes["child"].y == nodes["root"].y
    (edge,) = graph.edges
    assert (edge.parent, edge.child, edge.label, edge.second) == ("root", "child", "fork @ 18", False)


def test_siblings_take_lanes_of_their_own_and_a_clone_is_named() -> None:
    graph = layout(
        [
            row("root", 0),
            row("a", 1, parent_id="root", fork_tick=5),
            row("b", 2, parent_id="root", fork_tick=9, world={"origin": "clone"}),
        ]
    )
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["a"].x == nodes["b"].x
    assert len({nodes["root"].y, nodes["a"].y, nodes["b"].y}) == 2  # a keeps the root's lane, b takes a new one
    assert nodes["b"].kind == "clone"
    assert {e.label for e in graph.edges} == {"fork @ 5", "clone @ 9"}


def test_a_merge_has_two_parents_and_sits_right_of_both() -> None:
    graph = layout(
        [
            row("root", 0),
            row("a", 1, parent_id="root", fork_tick=5),
            row("a2", 2, parent_id="a", fork_tick=8),
            row("b", 3, parent_id="root", fork_tick=6),
            row("m", 4, parent_id="b", merge_parent_id="a2"),
        ]
    )
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["m"].kind == "merge"
    assert nodes["m"].x > max(nodes["a2"].x, nodes["b"].x)
    into = sorted((e.parent, e.second, e.label) for e in graph.edges if e.child == "m")
    assert into == [("a2", True, "merge"), ("b", False, "merge")]
    assert graph.width > nodes["m"].x
    assert graph.height > max(n.y for n in graph.nodes)


def test_status_names_abandoned_and_failed_instances() -> None:
    assert status_of({"status": "abandoned", "state": "stored"}) == "abandoned"
    assert status_of({"status": "active", "state": "running", "failure": {"tick": 3}}) == "failed"
    assert status_of({"status": "frozen", "state": "frozen"}) == "frozen"
    assert status_of({"status": "active", "state": "overridden"}) == "overridden"
    gone = row("gone", 1, parent_id="root", fork_tick=2, status="abandoned", world={"origin": "abandoned-branch"})
    graph = layout([row("root", 0), gone])
    assert {n.id: (n.status, n.kind) for n in graph.nodes} == {
        "root": ("running", "root"),
        "gone": ("abandoned", "branch"),
    }
    assert [e.label for e in graph.edges] == ["branch @ 2"]


def test_a_parent_the_caller_cannot_see_leaves_a_root() -> None:
    graph = layout([row("child", 1, parent_id="hidden", fork_tick=4)])
    (node,) = graph.nodes
    assert node.x == graph.nodes[0].x
    assert graph.edges == ()


def test_sessions_are_random_expire_and_end() -> None:
    now = [100.0]
    table = SessionTable(InMemoryStore(), lifetime=60.0, clock=lambda: now[0])
    one, two = table.open("digest-1"), table.open("digest-1")
    assert one.id != two.id
    assert one.csrf != two.csrf
    assert len(one.id) >= 40  # 32 random bytes, URL-safe
    assert "digest-1" not in one.id
    assert table.get(one.id) == one
    assert table.get(None) is None
    assert table.get("made-up") is None
    table.close(two.id)
    assert table.get(two.id) is None
    now[0] += 61.0
    assert table.get(one.id) is None  # expired, and gone
    assert table.store.sessions.get(hashlib.sha256(one.id.encode()).hexdigest()) is None


def test_a_token_s_sessions_are_bounded_oldest_first_and_other_tokens_keep_theirs() -> None:
    now = [100.0]
    table = SessionTable(InMemoryStore(), limit=3, clock=lambda: now[0])
    other = table.open("other")
    sessions = []
    for _ in range(5):
        now[0] += 1.0
        sessions.append(table.open("flood"))
    assert [table.get(s.id) is not None for s in sessions] == [False, False, True, True, True]
    assert table.get(other.id) is not None


def test_csrf_is_compared_whole() -> None:
    session = SessionTable(InMemoryStore()).open("d")
    assert session.csrf_matches(session.csrf)
    assert not session.csrf_matches(None)
    assert not session.csrf_matches("")
    assert not session.csrf_matches(session.csrf[:-1])


def test_the_package_ships_its_assets_with_htmx_pinned_and_licensed() -> None:
    assets = load_assets()
    for name in ("dashboard.css", "js/api.js", "js/canvas.js", "js/world.js", "vendor/htmx.min.js"):
        assert name in assets, name
    assert assets["js/world.js"].media_type.startswith("text/javascript")
    assert "BSD" in assets["vendor/htmx.LICENSE"].body.decode()
    record = assets["vendor/VENDOR.txt"].body.decode()
    assert re.match(r"^htmx\.org \d+\.\d+\.\d+ ", record)
    for name in ("htmx.min.js", "htmx.LICENSE"):  # the recorded hashes are those of the files shipped
        digest = hashlib.sha256(assets[f"vendor/{name}"].body).hexdigest()
        assert f"{digest}  {name}" in record


def test_no_asset_or_template_carries_inline_script_or_style_or_a_foreign_url() -> None:
    """The pages' CSP allows only this server's files: an inline handler or style, or a URL elsewhere, would break."""
    from importlib import resources  # noqa: PLC0415 -- only this test reads the templates

    templates = resources.files("soulfra.dashboard") / "templates"
    for entry in templates.iterdir():
        text = entry.read_text(encoding="utf-8")
        assert not re.search(r"\son[a-z]+=", text), entry.name
        assert " style=" not in text, entry.name
        assert "<style" not in text, entry.name
        assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", text), entry.name
        assert not re.search(r"(src|href)=\"(https?:)?//", text), entry.name
    for name, asset in load_assets().items():
        if name.startswith("js/"):
            assert "http://" not in asset.body.decode() and "https://" not in asset.body.decode(), name


def test_the_wheel_ships_the_templates_and_static_files(tmp_path: Path) -> None:
    root = Path(soulfra.__file__).parents[2]
    (wheel,) = WheelBuilder(str(root)).build(directory=str(tmp_path), versions=["standard"])
    names = set(zipfile.ZipFile(wheel).namelist())
    package = Path(soulfra.__file__).parent
    for folder in ("templates", "static"):
        for path in (package / "dashboard" / folder).rglob("*"):
            if path.is_file():
                assert path.relative_to(package.parent).as_posix() in names, path


def test_the_world_page_asks_for_every_module_it_runs_at_once() -> None:
    """Each module the world page runs (its scripts and what they import, all the way down) is preloaded, so no
    import waits for the module that names it to arrive first."""
    package = Path(soulfra.__file__).parent / "dashboard"
    templates = package / "templates"
    scripts = set(
        re.findall(r'<script type="module" src="/static/js/([\w-]+)\.js"', (templates / "_time.html").read_text())
    )
    world = (templates / "world.html").read_text()
    scripts |= set(re.findall(r'<script type="module" src="/static/js/([\w-]+)\.js"', world))
    runs, todo = set(), list(scripts)
    while todo:
        module = todo.pop()
        if module in runs:
            continue
        runs.add(module)
        source = (package / "static" / "js" / f"{module}.js").read_text()
        todo += re.findall(r'^import [^;]*?"\./([\w-]+)\.js";', source, flags=re.MULTILINE)
    listed = re.search(r"{% for module in \(([^)]*)\) %}<link rel=\"modulepreload\"", world)
    assert listed is not None, "the world page preloads no modules"
    preloaded = set(listed[1].replace('"', "").replace(" ", "").split(","))
    assert {"world", "api", "canvas", "timetravel"} <= runs  # the walk found the page's modules
    assert runs - {"world"} <= preloaded, f"not preloaded: {sorted(runs - {'world'} - preloaded)}"
