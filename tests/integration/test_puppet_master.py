"""The puppet master as its users meet it: god-mode commands over HTTP and through the CLI against a real
``soulfra up`` process, and an instance carried as a signed package from one installation to another.

Every server listens on a free loopback port with its own data directory and its own ``SOULFRA_HOME`` (where the
installation key lives); each test waits for what it checks with a deadline, never a bare sleep.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from soulfra.durable import state_at
from soulfra.meta.keys import key_id, read_public_key
from soulfra.store import SqlStore
from soulfra.world import state_hash

from .support import Result, Server, assert_problem, parsed, running_server, soulfra_at, soulfra_each_at, wait_for

# The module's tests share an expensive module-scoped fixture: under pytest-xdist they all run in one worker.
pytestmark = pytest.mark.xdist_group("test_puppet_master")

# -- the CLI -------------------------------------------------------------------------------------------------------


def group(pattern: str, text: str) -> str:
    """The first group of ``pattern`` matched against the whole of ``text``."""
    found = re.fullmatch(pattern, text)
    assert found is not None, (pattern, text)
    return found[1]


def ok_line(done: Result) -> str:
    """The one line a successful command printed."""
    assert done.returncode == 0, (done.args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    return lines[0]


def one_error_line(done: Result) -> str:
    """A refused command: a non-zero exit and one ``soulfra: error:`` line on stderr, no traceback."""
    assert done.returncode != 0, (done.args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("soulfra: error: "), lines[0]
    return lines[0]


# -- the API -------------------------------------------------------------------------------------------------------


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


def god(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """POST /api/god; the command succeeded and its result names its type."""
    result = ok(api.post("/api/god", json=body))
    assert result["type"] == body["type"]
    assert result["ok"] is True
    return result


def create(api: httpx.Client, instance_id: str, seed: int, **extra: Any) -> dict[str, Any]:
    return ok(api.post("/api/instances", json={"id": instance_id, "seed": seed, **extra}), 201)


def show(api: httpx.Client, instance_id: str) -> dict[str, Any]:
    return ok(api.get(f"/api/instances/{instance_id}"))


def tick_of(api: httpx.Client, instance_id: str) -> int:
    return int(show(api, instance_id)["tick"])


def wait_tick(api: httpx.Client, instance_id: str, tick: int) -> int:
    """Wait until ``instance_id`` has reached ``tick``; returns the tick it is at."""
    return wait_for(lambda: (t := tick_of(api, instance_id)) >= tick and t, what=f"{instance_id} to reach tick {tick}")


def listed(api: httpx.Client) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in ok(api.get("/api/instances"))["instances"]}


def inputs(api: httpx.Client, instance_id: str) -> list[dict[str, Any]]:
    """The instance's whole input log, each input with its seq and tick."""
    rows: list[dict[str, Any]] = []
    while True:
        page = ok(api.get(f"/api/instances/{instance_id}/inputs", params={"after": len(rows) and rows[-1]["seq"]}))
        if not page["inputs"]:
            return rows
        rows.extend(page["inputs"])


def logged(api: httpx.Client, instance_id: str, **fields: Any) -> list[dict[str, Any]]:
    """The logged inputs of ``instance_id`` whose fields include ``fields``."""
    return [row["input"] for row in inputs(api, instance_id) if fields.items() <= row["input"].items()]


def marks(api: httpx.Client, instance_id: str) -> set[str]:
    return {item["command"] for item in logged(api, instance_id, type="mark")}


def agent(api: httpx.Client, instance_id: str, agent_id: str) -> dict[str, Any]:
    body = ok(api.get(f"/api/instances/{instance_id}/agents/{agent_id}"))
    assert body["agent"]["id"] == agent_id
    result: dict[str, Any] = body["agent"]
    return result


def heard(api: httpx.Client, instance_id: str, agent_id: str, text: str) -> bool:
    """Whether ``agent_id`` of ``instance_id`` has heard a whisper with ``text`` in it (its echoes say so)."""
    echoes = ok(api.get(f"/api/instances/{instance_id}/agents/echo", params={"limit": 1000}))["echoes"]
    return any(e["kind"] == "whisper_heard" and e["agent"] == agent_id and text in e["text"] for e in echoes)


def assert_ack(result: dict[str, Any], kind: str) -> dict[str, Any]:
    ack: dict[str, Any] = result["ack"]
    assert ack["type"] == kind
    assert isinstance(ack["seq"], int)
    assert isinstance(ack["tick"], int)
    return ack


# -- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module; each test makes instances of its own on it."""
    with running_server(tmp_path_factory.mktemp("puppet-master")) as running:
        yield running


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client
        # Instances left ticking would only slow the tests after this one down.
        client.post("/api/god/freeze", json={})


@pytest.fixture
def pair(api: httpx.Client, request: pytest.FixtureRequest) -> tuple[str, str]:
    """Two unrelated running instances of this test's own, past their first ticks."""
    stem = re.sub(r"[^A-Za-z0-9]", "", request.node.name)[-40:]
    ours, theirs = f"{stem}-a", f"{stem}-b"
    for instance_id, seed in ((ours, 7), (theirs, 8)):
        made = create(api, instance_id, seed)
        assert (made["id"], made["seed"], made["parent_id"], made["lineage"]) == (instance_id, seed, None, [])
    wait_tick(api, ours, 3)
    wait_tick(api, theirs, 3)
    return ours, theirs


# -- god mode over HTTP --------------------------------------------------------------------------------------------


def test_freeze_with_a_duration_thaws_by_itself(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, _ = pair
    result = god(api, {"type": "FREEZE_TIME", "instances": [alpha], "duration": 1.5})
    [frozen] = result["frozen"]
    assert frozen["instance"] == alpha
    assert isinstance(frozen["tick"], int)
    assert isinstance(result["until"], str)
    assert (show(api, alpha)["status"], show(api, alpha)["state"]) == ("frozen", "frozen")
    wait_for(lambda: show(api, alpha)["state"] == "running", what=f"{alpha} to thaw by itself")
    assert show(api, alpha)["status"] == "active"
    wait_tick(api, alpha, frozen["tick"] + 1)
    assert {"FREEZE_TIME", "THAW_TIME"} <= marks(api, alpha)


def test_thaw_lets_a_frozen_instance_tick_again(api: httpx.Client, pair: tuple[str, str]) -> None:
    _, beta = pair
    frozen = ok(api.post("/api/god/freeze", json={"instances": [beta]}))  # the REST route, without "type"
    assert frozen["type"] == "FREEZE_TIME"
    assert frozen["until"] is None
    at = frozen["frozen"][0]["tick"]
    assert show(api, beta)["state"] == "frozen"
    result = god(api, {"type": "THAW_TIME", "instances": [beta]})
    assert result["thawed"] == [{"instance": beta, "tick": at}]
    assert show(api, beta)["status"] == "active"
    wait_tick(api, beta, at + 2)
    assert {"FREEZE_TIME", "THAW_TIME"} <= marks(api, beta)


def test_clone_with_a_modification(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, _ = pair
    clone = f"{alpha}-clone"
    whisper = {"type": "whisper", "target": "arty", "text": "you were copied", "tone": "solemn"}
    result = god(api, {"type": "CLONE_INSTANCE", "source": alpha, "id": clone, "modifications": [whisper]})
    assert (result["source"], result["id"], result["modifications"]) == (alpha, clone, 1)
    assert result["state_hash"].startswith("b2:")
    at = result["tick"]
    row = listed(api)[clone]
    assert (row["parent_id"], row["fork_tick"], row["genesis_hash"]) == (alpha, at, result["state_hash"])
    assert show(api, clone)["lineage"] == [{"instance": alpha, "tick": at}]
    assert clone in show(api, alpha)["children"]
    assert logged(api, clone, type="whisper") == [{**whisper, "tick": at}]
    assert "CLONE_INSTANCE" in marks(api, alpha)
    wait_for(lambda: heard(api, clone, "arty", "you were copied"), what="the clone's arty to hear the whisper")


def test_fork_then_merge_with_a_policy_override(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, _ = pair
    storm = {"type": "intervene", "kind": "vibe", "condition": "echo-storm", "intensity": "0.9", "duration": 50}
    forks = [{"id": f"{alpha}-f1", "modifications": [storm]}, {"id": f"{alpha}-f2"}]
    result = god(api, {"type": "REALITY_FORK", "source": alpha, "forks": forks})
    assert result["source"] == alpha
    at = result["tick"]
    assert [(f["id"], f["tick"], f["modifications"]) for f in result["forks"]] == [
        (f"{alpha}-f1", at, 1),
        (f"{alpha}-f2", at, 0),
    ]
    assert result["forks"][0]["state_hash"] == result["forks"][1]["state_hash"]
    rows = listed(api)
    for fork in (f"{alpha}-f1", f"{alpha}-f2"):
        assert (rows[fork]["parent_id"], rows[fork]["fork_tick"]) == (alpha, at)
        wait_tick(api, fork, at + 4)  # let the two diverge
    assert "REALITY_FORK" in marks(api, alpha)

    merged = f"{alpha}-merged"
    report = god(
        api,
        {
            "type": "MERGE_INSTANCES",
            "ours": f"{alpha}-f1",
            "theirs": f"{alpha}-f2",
            "id": merged,
            "policies": {"vibe": "theirs"},
        },
    )
    assert report["id"] == merged
    assert report["parents"] == [f"{alpha}-f1", f"{alpha}-f2"]
    assert report["base"] == {"instance": alpha, "tick": at}
    assert report["policies"]["vibe"] == "theirs"
    assert report["state_hash"].startswith("b2:")
    assert report["conflicts"]
    for conflict in report["conflicts"]:
        assert {"domain", "entity", "field", "policy", "resolved", "ours", "theirs"} <= conflict.keys()
    vibe = [c for c in report["conflicts"] if c["domain"] == "vibe"]
    assert vibe, report["conflicts"]  # one fork's weather was held in an echo-storm, the other's was not
    for conflict in vibe:
        assert conflict["policy"] == "theirs"
        assert conflict["resolved"] == conflict["theirs"]
    row = listed(api)[merged]
    assert (row["parent_id"], row["merge_parent_id"]) == (f"{alpha}-f1", f"{alpha}-f2")
    assert row["fork_tick"] == report["tick"]
    assert {p["instance"] for p in show(api, merged)["lineage"]} >= {f"{alpha}-f1", f"{alpha}-f2", alpha}
    for fork in (f"{alpha}-f1", f"{alpha}-f2"):
        assert "MERGE_INSTANCES" in marks(api, fork)


def test_possess_act_and_release(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, _ = pair
    base = {"type": "AGENT_POSSESSION", "instance": alpha, "agent": "arty"}
    taken = god(api, {**base, "operator": "tester"})
    assert (taken["instance"], taken["agent"], taken["action"]) == (alpha, "arty", "possess")
    assert_ack(taken, "possess")
    wait_for(lambda: agent(api, alpha, "arty")["state"]["possessed_by"] == "tester", what="arty to be possessed")
    acted = god(api, {**base, "action": "act", "act": {"action": "post", "text": "spoken from above"}})
    assert_ack(acted, "act")
    released = god(api, {**base, "action": "release"})
    assert_ack(released, "release")
    wait_for(lambda: agent(api, alpha, "arty")["state"]["possessed_by"] is None, what="arty to be released")
    assert logged(api, alpha, type="possess", agent="arty", operator="tester")
    assert logged(api, alpha, type="act", agent="arty", action="post", text="spoken from above")
    assert logged(api, alpha, type="release", agent="arty")


def test_revert_keeps_the_abandoned_branch(server: Server, api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, _ = pair
    clone = god(api, {"type": "CLONE_INSTANCE", "source": alpha, "id": f"{alpha}-r"})
    start = clone["tick"]
    head = wait_tick(api, clone["id"], start + 6)
    result = god(api, {"type": "TIMELINE_REVERT", "instance": clone["id"], "tick": start + 2})
    branch = result["abandoned_branch"]
    assert (result["instance"], result["tick"]) == (clone["id"], start + 2)
    assert result["state_hash"].startswith("b2:")
    assert branch["from_tick"] == start + 2
    assert branch["head_tick"] >= head
    assert result["branches"] == [branch["id"]]
    described = show(api, clone["id"])
    assert described["branches"] == [{"id": branch["id"], "from_tick": start + 2, "head_tick": branch["head_tick"]}]
    assert branch["id"] not in described["children"]
    row = listed(api)[branch["id"]]
    assert (row["status"], row["parent_id"], row["fork_tick"]) == ("abandoned", clone["id"], start + 2)
    assert logged(api, clone["id"], type="mark", command="TIMELINE_REVERT", tick=start + 2)
    assert stored_hash(server, clone["id"], start + 2) == result["state_hash"]
    wait_tick(api, clone["id"], start + 4)  # it goes on from the tick it went back to


def stored_hash(server: Server, instance_id: str, tick: int) -> str:
    """The state hash of ``instance_id`` at ``tick``, rebuilt from the server's database."""
    store = SqlStore.open(server.db_url)
    try:
        return state_hash(state_at(store, instance_id, tick))
    finally:
        store.close()


def open_threads(server: Server, instance_id: str) -> list[int]:
    """The open threads of a frozen instance, read from its stored state."""
    store = SqlStore.open(server.db_url)
    try:
        record = store.instances.get(instance_id)
        return sorted(state_at(store, instance_id, record.head_tick).threads)
    finally:
        store.close()


def test_link_whisper_and_post_across_instances(server: Server, api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, beta = pair
    base = {"type": "CROSS_INSTANCE_COMMUNICATION", "source": alpha, "target": beta}
    linked = god(api, {**base, "action": "link"})
    assert linked["links"] == [beta]
    assert show(api, alpha)["links"] == [beta]
    assert show(api, beta)["links"] == [alpha]

    whispered = god(api, {**base, "action": "whisper", "agent": "arty", "to": "cal-riven", "text": "across the veil"})
    assert (whispered["source"], whispered["target"], whispered["action"]) == (alpha, beta, "whisper")
    ack = assert_ack(whispered, "whisper")
    [stored] = logged(api, beta, type="whisper", target="cal-riven")
    assert stored == {
        "tick": ack["tick"],
        "type": "whisper",
        "target": "cal-riven",
        "text": f"{alpha}/arty: across the veil",
        "tone": "gentle",
    }
    wait_for(lambda: heard(api, beta, "cal-riven", "across the veil"), what=f"cal-riven of {beta} to hear it")

    god(api, {"type": "FREEZE_TIME", "instances": [beta]})  # its threads hold still while one is chosen
    thread = open_threads(server, beta)[-1]
    posted = god(api, {**base, "action": "post", "agent": "arty", "thread": thread, "text": "a visitor's word"})
    assert_ack(posted, "crosspost")
    assert logged(api, beta, type="crosspost", origin=f"{alpha}/arty", thread=thread, text="a visitor's word")
    assert logged(api, alpha, type="mark", command="CROSS_INSTANCE_COMMUNICATION")
    assert logged(api, beta, type="mark", command="CROSS_INSTANCE_COMMUNICATION")


def test_interventions_personality_ritual_vibe_and_rewrite(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, _ = pair
    base = {"type": "PUPPET_MASTER_INTERVENTION", "instance": alpha}
    changed = god(api, {**base, "kind": "personality", "agent": "arty", "traits": {"warmth": 0.125, "chaos": "0.75"}})
    assert (changed["instance"], changed["kind"]) == (alpha, "personality")
    assert_ack(changed, "intervene")
    ritual = god(
        api, {**base, "kind": "ritual", "name": "lantern vigil", "participants": ["arty", "cal-riven"], "blessed": True}
    )
    assert_ack(ritual, "intervene")
    vibe = god(api, {**base, "kind": "vibe", "condition": "drift-wave", "intensity": 0.7, "duration": 400})
    assert_ack(vibe, "intervene")

    wait_for(
        lambda: (
            (traits := agent(api, alpha, "arty")["personality"]["traits"])["warmth"] == 125_000
            and traits["chaos"] == 750_000
        ),
        what="arty's new personality",
    )
    wait_for(
        lambda: any(
            t["kind"] == "ritual_injected" and t["name"] == "lantern vigil"
            for t in ok(api.get(f"/api/instances/{alpha}/ritual/traces", params={"limit": 512}))["traces"]
        ),
        what="the injected ritual in the traces",
    )
    wait_for(
        lambda: ok(api.get(f"/api/instances/{alpha}/vibe/weather"))["weather"]["condition"] == "drift-wave",
        what="the weather to turn to drift-wave",
    )
    assert logged(
        api, alpha, type="intervene", kind="personality", agent="arty", traits={"warmth": "0.125", "chaos": "0.75"}
    )
    assert logged(
        api,
        alpha,
        type="intervene",
        kind="ritual",
        name="lantern vigil",
        participants=["arty", "cal-riven"],
        blessed=True,
    )
    assert logged(api, alpha, type="intervene", kind="vibe", condition="drift-wave", intensity="0.7", duration=400)

    added = {"type": "whisper", "target": "*", "text": "it was always so", "tone": "dark", "tick": 2}
    rewrite = god(api, {**base, "kind": "rewrite", "from_tick": 1, "add": [added], "id": f"{alpha}-rw"})
    assert (rewrite["branch"], rewrite["from_tick"], rewrite["added"], rewrite["dropped"]) == (f"{alpha}-rw", 1, 1, 0)
    assert rewrite["state_hash"] != rewrite["source_state_hash"]  # the added whisper changed what followed
    row = listed(api)[f"{alpha}-rw"]
    assert (row["parent_id"], row["fork_tick"]) == (alpha, 1)
    assert logged(api, f"{alpha}-rw", **added)
    assert "PUPPET_MASTER_INTERVENTION" in marks(api, alpha)


OCTETS = {"content-type": "application/octet-stream"}
REST_ROUTES = {
    "freeze": "FREEZE_TIME",
    "thaw": "THAW_TIME",
    "clone": "CLONE_INSTANCE",
    "fork": "REALITY_FORK",
    "merge": "MERGE_INSTANCES",
    "possess": "AGENT_POSSESSION",
    "revert": "TIMELINE_REVERT",
    "communicate": "CROSS_INSTANCE_COMMUNICATION",
    "intervene": "PUPPET_MASTER_INTERVENTION",
}


def test_every_rest_route_takes_its_command_without_a_type(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, beta = pair

    def rest(name: str, body: dict[str, Any]) -> dict[str, Any]:
        result = ok(api.post(f"/api/god/{name}", json=body))
        assert (result["type"], result["ok"]) == (REST_ROUTES[name], True)
        return result

    assert rest("freeze", {"instances": [alpha]})["frozen"][0]["instance"] == alpha
    assert rest("thaw", {"instances": [alpha]})["thawed"][0]["instance"] == alpha
    clone = rest("clone", {"source": alpha, "modifications": [{"type": "whisper", "text": "hi", "target": "*"}]})
    forks = rest("fork", {"source": alpha, "forks": [{}, {}]})["forks"]
    merged = rest("merge", {"ours": forks[0]["id"], "theirs": forks[1]["id"]})
    assert merged["parents"] == [forks[0]["id"], forks[1]["id"]]
    assert rest("possess", {"instance": alpha, "agent": "cal-riven"})["ack"]["type"] == "possess"
    wait_tick(api, clone["id"], clone["tick"] + 2)
    assert rest("revert", {"instance": clone["id"], "tick": clone["tick"] + 1})["tick"] == clone["tick"] + 1
    assert rest("communicate", {"action": "link", "source": alpha, "target": beta})["links"] == [beta]
    assert rest("intervene", {"instance": alpha, "kind": "vibe", "condition": "calm-bloom"})["ack"]["tick"] >= 0
    # A route takes its own command only.
    assert_problem(api.post("/api/god/freeze", json={"type": "THAW_TIME"}), 422, "invalid_request")
    assert_problem(api.post("/api/god/thaw", json={"instances": [alpha], "duration": 3}), 422, "invalid_request")


# -- errors --------------------------------------------------------------------------------------------------------


def test_errors_are_json_with_the_right_status(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, beta = pair
    for response in (
        api.get("/api/instances/nobody"),
        api.delete("/api/instances/nobody"),
        api.get("/api/instances/nobody/export"),
        api.get("/api/export", params={"instance": "nobody"}),
        api.post("/api/god", json={"type": "FREEZE_TIME", "instances": ["nobody"]}),
        api.post("/api/god/clone", json={"source": "nobody"}),
        api.post("/api/god/merge", json={"ours": alpha, "theirs": "nobody"}),
    ):
        assert_problem(response, 404, "not_found")
    detail = assert_problem(
        api.post("/api/god", json={"type": "MERGE_INSTANCES", "ours": alpha, "theirs": beta}), 409, "lineage_error"
    )
    assert "no ancestor" in detail
    whisper = {
        "type": "CROSS_INSTANCE_COMMUNICATION",
        "action": "whisper",
        "source": alpha,
        "target": beta,
        "agent": "arty",
        "text": "anyone there?",
    }
    assert "link them first" in assert_problem(api.post("/api/god", json=whisper), 409, "lineage_error")
    for body in (
        {"type": "NO_SUCH_COMMAND"},
        {"instances": [alpha]},  # no type at all on the typed endpoint
        {"type": "TIMELINE_REVERT", "instance": alpha},  # neither tick nor snapshot
        {"type": "AGENT_POSSESSION", "instance": alpha, "agent": "arty", "action": "act"},  # act without a body
        {"type": "REALITY_FORK", "source": alpha, "forks": []},
    ):
        assert_problem(api.post("/api/god", json=body), 422, "invalid_request")
    assert_problem(
        api.post("/api/god", content=b"{not json", headers={"content-type": "application/json"}), 422, "invalid_request"
    )
    assert_problem(api.post("/api/god/possess", json={"instance": alpha, "agent": "nobody"}), 422, "invalid_input")
    assert_problem(
        api.post("/api/god/merge", json={"ours": alpha, "theirs": alpha, "policies": {"vibe": "coin"}}),
        422,
        "invalid_input",
    )
    assert_problem(
        api.post("/api/god/clone", json={"source": alpha, "modifications": [{"type": "whisper"}]}), 422, "invalid_input"
    )

    fork = god(api, {"type": "REALITY_FORK", "source": alpha, "forks": [{"id": f"{alpha}-child"}]})
    detail = assert_problem(api.delete(f"/api/instances/{alpha}"), 409, "conflict")
    assert fork["forks"][0]["id"] in detail
    assert_problem(api.post("/api/instances", json={"id": alpha}), 409, "conflict")
    assert show(api, alpha)["state"] == "running"  # the refusals changed nothing

    assert_problem(api.post("/api/import", content=b"PK\x03\x04 but not a zip", headers=OCTETS), 422, "package_invalid")
    assert_problem(api.post("/api/import", content=b"", headers=OCTETS), 422, "package_invalid")


def test_an_upload_declared_over_the_limit_is_refused_before_it_is_read(server: Server) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/import HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            + f"Authorization: Bearer {server.token}\r\n".encode()
            + b"Content-Length: 5000000000\r\n\r\n"
        )
        reply = b""
        while b"}" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply
    assert b'"code":"package_too_large"' in body


def test_a_refused_revert_leaves_the_instance_ticking(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, _ = pair
    detail = assert_problem(
        api.post("/api/god", json={"type": "TIMELINE_REVERT", "instance": alpha, "tick": 10**9}), 409, "lineage_error"
    )
    assert "cannot revert" in detail
    at = tick_of(api, alpha)
    wait_for(lambda: tick_of(api, alpha) > at + 2, timeout=5, what=f"{alpha} to tick on after the refusal")
    assert show(api, alpha)["state"] == "running"


def test_a_refused_freeze_or_thaw_changes_nothing(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, beta = pair
    assert_problem(api.post("/api/god", json={"type": "FREEZE_TIME", "instances": [alpha, "nobody"]}), 404, "not_found")
    assert show(api, alpha)["state"] == "running"
    god(api, {"type": "FREEZE_TIME", "instances": [beta]})
    assert_problem(api.post("/api/god", json={"type": "THAW_TIME", "instances": [beta, "nobody"]}), 404, "not_found")
    assert show(api, beta)["state"] == "frozen"


def test_a_refused_fork_makes_no_fork(api: httpx.Client, pair: tuple[str, str]) -> None:
    alpha, beta = pair
    forks = [{"id": f"{alpha}-new"}, {"id": beta}]  # the second id is taken
    assert_problem(
        api.post("/api/god", json={"type": "REALITY_FORK", "source": alpha, "forks": forks}), 409, "conflict"
    )
    assert f"{alpha}-new" not in listed(api)
    assert show(api, alpha)["children"] == []


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
