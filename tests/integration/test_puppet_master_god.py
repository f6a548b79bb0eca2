"""The puppet master's god-mode commands over HTTP against a real ``soulfra up`` process: freeze and thaw, clone,
fork and merge, possession, revert, links across instances, interventions and rewrites, and every REST route.

Every server listens on a free loopback port with its own data directory and its own ``SOULFRA_HOME`` (where the
installation key lives); each test waits for what it checks with a deadline, never a bare sleep.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from soulfra.durable import state_at
from soulfra.store import SqlStore
from soulfra.world import state_hash

from .puppet_master_support import (
    agent,
    assert_ack,
    god,
    heard,
    listed,
    logged,
    marks,
    ok,
    show,
    wait_tick,
)
from .support import Server, assert_problem, wait_for

# The puppet master's tests share an expensive module-scoped fixture: under pytest-xdist they all run in one worker.
pytestmark = pytest.mark.xdist_group("test_puppet_master")


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
