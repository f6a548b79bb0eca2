"""Lineage and ``state_at`` on their own, without an engine: a chain of forks replays back to its root, common
ancestors follow the fork points, and a fork outside the parent's durable history is refused."""

from __future__ import annotations

import pytest

from soulfra.durable import DurabilitySettings, DurableWorld, state_at
from soulfra.errors import (
    LineageError,
)
from soulfra.meta.lineage import AncestorPoint, common_ancestor, fork_record, lineage
from soulfra.store import Store
from soulfra.verification import replay, verify
from soulfra.world import (
    DEFAULT_WORLD,
    ChangePersonality,
    Whisper,
    state_hash,
)

from .meta_engine_support import (
    AGENTS,
    SEED,
)

# -- lineage and state_at, without an engine ---------------------------------------------------------------------


def stepped(store: Store, instance_id: str, ticks: int) -> None:
    world = DurableWorld.open(store, instance_id, settings=DurabilitySettings(snapshot_every=10))
    for _ in range(ticks):
        world.step()
    world.close()


@pytest.fixture
def family(store: Store) -> Store:
    """root (20 ticks) <- child (forked at 8, warmth changed, to 18) <- grandchild (cloned at 14, a whisper, to 20)."""
    DurableWorld.create(store, SEED, DEFAULT_WORLD, agents=AGENTS, instance_id="root").close()
    stepped(store, "root", 20)
    change = ChangePersonality(tick=8, agent="arty", traits=(("warmth", 100_000),))
    fork_record(store, store.instances.get("root"), tick=8, child_id="child", kind="fork", inputs=[change])
    stepped(store, "child", 10)
    hush = Whisper(tick=14, target="*", text="hush", tone="solemn")
    fork_record(store, store.instances.get("child"), tick=14, child_id="grandchild", kind="clone", inputs=[hush])
    stepped(store, "grandchild", 6)
    return store


def test_state_at_follows_a_chain_of_forks_back_to_the_root(family: Store) -> None:
    change = ChangePersonality(tick=8, agent="arty", traits=(("warmth", 100_000),))
    hush = Whisper(tick=14, target="*", text="hush", tone="solemn")
    assert [s.input for s in family.inputs.read("grandchild")] == [hush]  # no history copied
    for tick in range(21):
        grandchild = state_hash(state_at(family, "grandchild", tick))
        assert grandchild == replay(SEED, DEFAULT_WORLD, AGENTS, [change, hush], tick), tick
        if tick <= 14:
            assert grandchild == state_hash(state_at(family, "child", tick)), tick
        if tick <= 8:
            assert grandchild == state_hash(state_at(family, "root", tick)), tick
    assert state_hash(state_at(family, "child", 18)) == replay(SEED, DEFAULT_WORLD, AGENTS, [change], 18)
    for instance_id in ("root", "child", "grandchild"):
        assert verify(family, instance_id).ok, instance_id


def test_lineage_and_common_ancestors_follow_the_fork_points(family: Store) -> None:
    assert lineage(family, "grandchild") == [
        AncestorPoint("grandchild", 20), AncestorPoint("child", 14), AncestorPoint("root", 8)
    ]  # fmt: skip
    assert common_ancestor(family, "grandchild", "root") == AncestorPoint("root", 8)
    assert common_ancestor(family, "grandchild", "child") == AncestorPoint("child", 14)
    assert common_ancestor(family, "child", "child") == AncestorPoint("child", 18)
    DurableWorld.create(family, SEED, DEFAULT_WORLD, agents=AGENTS, instance_id="stranger").close()
    with pytest.raises(LineageError, match="share no ancestor"):
        common_ancestor(family, "grandchild", "stranger")


def test_a_fork_outside_the_parent_durable_history_is_refused(family: Store) -> None:
    child = family.instances.get("child")
    for tick in (7, 19):  # before the child's own history begins; past its head
        with pytest.raises(LineageError, match="cannot fork"):
            fork_record(family, child, tick=tick, child_id=f"late-{tick}", kind="fork")
    assert {r.id for r in family.instances.list_instances()} == {"root", "child", "grandchild"}
