"""The puppet master through the CLI: instance and god commands against a real ``soulfra up`` process, package
edits arriving as interventions, and an instance carried as a signed package from one installation to another.

Every server listens on a free loopback port with its own data directory and its own ``SOULFRA_HOME`` (where the
installation key lives); each test waits for what it checks with a deadline, never a bare sleep.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path

import httpx
import pytest

from soulfra.meta.keys import key_id, read_public_key
from soulfra.store import SqlStore

from .puppet_master_support import (
    agent,
    create,
    god,
    group,
    listed,
    logged,
    ok,
    ok_line,
    tick_of,
    wait_tick,
)
from .support import Server, one_error_line, parsed, running_server, soulfra_at, soulfra_each_at, wait_for

# The puppet master's tests share an expensive module-scoped fixture: under pytest-xdist they all run in one worker.
pytestmark = pytest.mark.xdist_group("test_puppet_master")


# -- the CLI against the server ------------------------------------------------------------------------------------


def test_cli_instance_and_god_commands(server: Server, api: httpx.Client) -> None:
    home, url = server.home, ["--url", server.url]
    created = ok_line(soulfra_at(home, "instance", "create", "--id", "cli-one", "--seed", "21", *url))
    assert created == "created cli-one (seed 21, 3 agents)"
    wait_tick(api, "cli-one", 3)
    shown, listing = soulfra_each_at(home, ["instance", "show", "cli-one", *url], ["instance", "list", *url])
    assert shown.returncode == 0, shown.stderr
    assert re.match(r"cli-one: running at tick \d+ \(seed 21, active\)\n  lineage   \(root\)\n", shown.stdout)
    assert listing.returncode == 0, listing.stderr
    assert re.search(r"^cli-one +running +tick \d+", listing.stdout, re.MULTILINE)
    assert re.match(r"id +state +tick +from\n", listing.stdout)  # a header names the columns

    frozen = ok_line(soulfra_at(home, "god", "freeze", "cli-one", *url))
    at = int(group(r"frozen: cli-one@(\d+)", frozen))
    cloned, intervened = soulfra_each_at(
        home,
        ["god", "clone", "cli-one", "--id", "cli-two", "-m", '{"type": "whisper", "text": "hi", "target": "*"}', *url],
        ["god", "intervene", "cli-one", "personality", "--agent", "arty", "--trait", "warmth=0.2", *url],
    )
    assert ok_line(cloned) == f"cloned cli-one at tick {at} as cli-two"
    assert ok_line(intervened) == f"personality intervention stored in cli-one, applies at tick {at}"
    assert ok_line(soulfra_at(home, "god", "thaw", "cli-one", *url)) == f"thawed: cli-one@{at}"
    wait_for(lambda: agent(api, "cli-one", "arty")["personality"]["traits"]["warmth"] == 200_000, what="the trait")
    assert logged(api, "cli-two", type="whisper", text="hi")
    deleted = ok_line(soulfra_at(home, "instance", "delete", "cli-two", *url))
    assert re.fullmatch(r"deleted cli-two \(it had reached tick \d+\)", deleted)
    assert "cli-two" not in listed(api)

    missing, unrelated, unreachable = soulfra_each_at(
        home,
        ["instance", "show", "nobody", *url],
        ["god", "merge", "cli-one", "world-0", *url],
        ["god", "freeze", "--url", "http://127.0.0.1:9"],
    )
    assert "no instance 'nobody'" in one_error_line(missing)
    assert "share no ancestor" in one_error_line(unrelated)
    assert "no Soulfra server at http://127.0.0.1:9" in one_error_line(unreachable)
    assert (missing.returncode, unrelated.returncode, unreachable.returncode) == (66, 65, 69)


# -- packages between a live server and the CLI --------------------------------------------------------------------


def test_package_edits_arrive_as_interventions(server: Server, api: httpx.Client, tmp_path: Path) -> None:
    live = "pkg-live"
    create(api, live, 31)
    wait_tick(api, live, 5)
    exported = api.get(f"/api/instances/{live}/export")
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"] == "application/vnd.soulfra.package+zip"
    package, edited = tmp_path / "live.soulpkg", tmp_path / "edited.soulpkg"
    package.write_bytes(exported.content)

    edits = ["--personality", "arty:warmth=0.3,chaos=0.7", "--ritual", "dawn chorus:arty,cal-riven:blessed"]
    edits += ["--vibe", "drift-wave:0.6:300"]
    line = ok_line(soulfra_at(server.home, "package", "edit", str(package), "-o", str(edited), *edits))
    assert re.fullmatch(r"wrote .*edited\.soulpkg: 3 edits, head b2:[0-9a-f]{16}", line)
    applied = soulfra_at(server.home, "package", "apply", str(edited), "--url", server.url)
    assert applied.returncode == 0, applied.stderr
    assert [re.sub(r"\d+$", "N", row) for row in applied.stdout.splitlines()] == [
        f"personality applied to {live} at tick N",
        f"ritual applied to {live} at tick N",
        f"vibe applied to {live} at tick N",
    ]
    assert logged(
        api, live, type="intervene", kind="personality", agent="arty", traits={"warmth": "0.3", "chaos": "0.7"}
    )
    assert logged(
        api, live, type="intervene", kind="ritual", name="dawn chorus", participants=["arty", "cal-riven"], blessed=True
    )
    assert logged(api, live, type="intervene", kind="vibe", condition="drift-wave", intensity="0.6", duration=300)
    wait_for(
        lambda: agent(api, live, "arty")["personality"]["traits"]["chaos"] == 700_000, what="the edited personality"
    )


# -- a package from one installation to another --------------------------------------------------------------------


def sqlite_copy(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database (its write-ahead log included)."""
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def instance_ids(db: Path) -> list[str]:
    """The instances stored in a SQLite database; none when the file does not exist."""
    if not db.exists():
        return []
    store = SqlStore.open(f"sqlite:///{db}")
    try:
        return [record.id for record in store.instances.list_instances()]
    finally:
        store.close()


def test_a_package_moves_to_another_installation_and_continues_identically(tmp_path: Path) -> None:
    home_b, db_b = tmp_path / "b" / "home", tmp_path / "b" / "x.db"
    package, public = tmp_path / "voyager.soulpkg", tmp_path / "a.pub"
    with running_server(tmp_path / "a", rate="50") as a, a.client() as api:
        url = ["--url", a.url]
        create(api, "voyager", 5)
        wait_tick(api, "voyager", 10)
        change = {"instance": "voyager", "kind": "personality", "agent": "cal-riven", "traits": {"order": 0.2}}
        god(api, {"type": "PUPPET_MASTER_INTERVENTION", **change})
        wait_tick(api, "voyager", 40)
        frozen = ok_line(soulfra_at(a.home, "god", "freeze", "voyager", *url))
        head = int(group(r"frozen: voyager@(\d+)", frozen))
        # Pending when the package is made: the package must carry it for both sides to go on alike.
        whisper = ok(api.post("/api/instances/voyager/whispers", json={"text": "later", "tick": head + 5}), 202)
        assert whisper["tick"] == head + 5
        exported, keys, state_a = soulfra_each_at(
            a.home,
            ["export", "-i", "voyager", "-o", str(package), *url],
            ["keys", "export", "-o", str(public)],
            ["state", "--db", a.db_url, "--instance", "voyager", "--json"],
        )
        assert re.fullmatch(rf"wrote {re.escape(str(package))} \([\d,]+ bytes\)", ok_line(exported))
        assert ok_line(keys) == f"wrote {public}"
        at_a = parsed(state_a)
        assert (at_a["instance"], at_a["tick"], at_a["head_tick"]) == ("voyager", head, head)
        assert tick_of(api, "voyager") == head  # still frozen: the package's head is the state read above
    signer = key_id(read_public_key(public))

    untrusted = one_error_line(soulfra_at(home_b, "import", str(package), "--db", f"sqlite:///{db_b}"))
    assert signer in untrusted
    assert "soulfra keys trust" in untrusted
    assert instance_ids(db_b) == []

    assert ok_line(soulfra_at(home_b, "keys", "trust", str(public))) == f"trusting key {signer}"
    imported = ok_line(soulfra_at(home_b, "import", str(package), "--db", f"sqlite:///{db_b}", "--verify-replay"))
    assert imported == f"imported voyager at tick {head} ({at_a['state_hash'][:19]}, replay verified)"

    # Both go on from the same head, offline, each in a copy of its own database.
    copy_a, copy_b = tmp_path / "a-copy.db", tmp_path / "b-copy.db"
    sqlite_copy(a.data / "soulfra.db", copy_a)
    sqlite_copy(db_b, copy_b)
    at_b, on_a, on_b = (
        parsed(done)
        for done in soulfra_each_at(
            home_b,
            ["state", "--db", f"sqlite:///{db_b}", "--json"],
            ["run", "--db", f"sqlite:///{copy_a}", "--seed", "5", "--ticks", "30", "--json"],
            ["run", "--db", f"sqlite:///{copy_b}", "--seed", "5", "--ticks", "30", "--json"],
        )
    )
    assert (at_b["instance"], at_b["tick"], at_b["state_hash"]) == ("voyager", head, at_a["state_hash"])
    assert (on_a["instance"], on_a["start_tick"], on_a["tick"]) == ("voyager", head, head + 30)
    assert (on_b["instance"], on_b["start_tick"], on_b["tick"]) == ("voyager", head, head + 30)
    assert on_a["events"].get("whisper_heard", 0) >= 1  # the whisper pending at the head was heard on both sides
    assert on_b["events"] == on_a["events"]
    assert on_b["state_hash"] == on_a["state_hash"]
