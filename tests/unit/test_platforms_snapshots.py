"""Unified snapshots of the four platforms and their resolution rules: the owner of each domain wins a conflict."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from soulfra.platforms.base import PLATFORMS
from soulfra.platforms.mirror import RESOLUTION, resolve
from soulfra.store.ports import Store

from .platforms_support import Running, held
from .support import wait_until

# -- unified snapshots and resolution ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_unified_snapshot_records_the_pause_and_has_no_conflicts(
    make: Callable[..., Awaitable[Running]], store: Store
) -> None:
    run = await make()
    run.instance.start_autonomous_operations()
    await wait_until("the world has ticked", held(lambda: run.tick >= 150))
    record = await run.bridge.unified_snapshot()
    assert record.conflicts == ()
    assert set(record.views) == set(PLATFORMS)
    assert record.pause_ns >= 0
    assert len(record.system_hash) == 64
    assert record.snapshot["tick"] == record.tick
    assert record.views["runtime"]["tick"] == record.tick
    assert record.views["protocol"]["valid"] is True
    status = await run.bridge.fetch_from_runtime("status")
    assert status["last_pause_ns"] == record.pause_ns
    listed = await run.bridge.fetch_from_mirror("unified_list")
    assert [r["id"] for r in listed["unified"]] == [record.id]
    got = await run.bridge.fetch_from_mirror("unified_get", {"id": "latest"})
    assert got["system_hash"] == record.system_hash
    assert [r.kind for r in store.rituals.read(run.id, kinds=["unified_snapshot"])] == ["unified_snapshot"]
    await wait_until("ticks go on after the hold", held(lambda: run.tick > record.tick + 2))


def _views() -> dict[str, dict[str, Any]]:
    vibe = {"condition": "calm", "pressure": 0.5}
    return {
        "runtime": {"tick": 9, "vibe": vibe, "possessed": {}, "agents": [], "rituals": {"4": "gathered"},
                    "loop": 0, "agent_count": 3},
        "surface": {"tick": 9, "weather": dict(vibe), "possessed": {}},
        "protocol": {"subject": "snapshot", "valid": True, "checked": [], "violations": []},
        "mirror": {"tick": 9, "in_flight": [4]},
    }  # fmt: skip


def _resolve(views: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return resolve(tick=9, **views)


def test_resolve_agrees_without_conflicts() -> None:
    record = _resolve(_views())
    assert record["conflicts"] == []
    assert record["merged"]["agents"] == {"count": 3, "possessed": {}}
    assert record["merged"]["ritual_timeline"] == {"in_flight": [4]}
    assert _resolve(_views())["system_hash"] == record["system_hash"]


@pytest.mark.parametrize(
    ("domain", "platform", "path", "value", "merged_path"),
    [
        ("agents", "runtime", ("runtime", "possessed"), {"arty": "pm"}, ("agents", "possessed")),
        ("agents", "surface", ("surface", "possessed"), {"arty": "pm"}, ("agents", "possessed")),
        ("ritual_timeline", "mirror", ("mirror", "in_flight"), [], ("ritual_timeline", "in_flight")),
        ("ritual_timeline", "runtime", ("runtime", "rituals"), {}, ("ritual_timeline", "in_flight")),
        ("vibe_weather", "surface", ("surface", "weather"), {"condition": "storm", "pressure": 0.9}, ("vibe_weather",)),
        ("vibe_weather", "runtime", ("runtime", "vibe"), {"condition": "storm", "pressure": 0.9}, ("vibe_weather",)),
        ("validation", "protocol", ("protocol", "valid"), False, ("validation", "valid")),
    ],
)
def test_resolve_lets_the_owner_of_each_domain_win(
    domain: str, platform: str, path: tuple[str, str], value: Any, merged_path: tuple[str, ...]
) -> None:
    base = _resolve(_views())
    views = _views()
    views[path[0]][path[1]] = copy.deepcopy(value)
    if domain == "validation":
        views["protocol"]["violations"] = [{"rule": "snapshot-hash", "detail": "tampered"}]
    record = _resolve(views)
    assert [c["domain"] for c in record["conflicts"]] == [domain]
    conflict = record["conflicts"][0]
    assert conflict["winner"] == RESOLUTION[domain]
    assert len(conflict["values"]) == 2
    assert {RESOLUTION[domain], "runtime"} <= set(conflict["values"])

    merged: Any = record["merged"]
    old: Any = base["merged"]
    for key in merged_path:
        merged, old = merged[key], old[key]
    if platform == RESOLUTION[domain]:
        assert merged != old  # the owner changed its view: the merged view follows it
        assert record["system_hash"] != base["system_hash"]
    else:
        assert merged == old  # the loser is outvoted: the merged view, and its hash, stay
        assert record["system_hash"] == base["system_hash"]


def test_resolution_owners_are_the_documented_ones() -> None:
    assert RESOLUTION == {
        "agents": "runtime",
        "ritual_timeline": "mirror",
        "vibe_weather": "surface",
        "validation": "protocol",
    }
