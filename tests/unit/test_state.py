"""The canonical state encoding: it round-trips, it pins the format, and forks never share state."""

from __future__ import annotations

import pytest

from soulfra.errors import CodecError
from soulfra.world import (
    FORMAT_VERSION,
    Input,
    Possess,
    Whisper,
    World,
    canonical,
    decode_state,
    encode_state,
    state_hash,
)
from soulfra.world.encoding import MAGIC, state_agents, state_tree


def busy_world(ticks: int = 150) -> World:
    world = World.create(5, agents=30)
    for _ in range(ticks):
        inputs: list[Input] = []
        if world.tick == 20:
            inputs = [Possess(tick=20, agent="arty")]
        if world.tick == ticks - 5:
            inputs = [Whisper(tick=world.tick, target="*", text="the tides are turning")]
        world.step(inputs)
    return world


def test_decoded_state_encodes_to_the_same_bytes_and_hash() -> None:
    world = busy_world()
    raw = encode_state(world.state)
    restored = decode_state(raw)
    assert encode_state(restored) == raw
    assert state_hash(restored) == world.state_hash()
    assert restored.possessed and restored.whispers and restored.threads  # the busy parts were carried


def test_a_world_restored_from_bytes_continues_identically() -> None:
    world = busy_world()
    twin = World(decode_state(encode_state(world.state)))
    for _ in range(120):
        assert [e.kind for e in world.step()] == [e.kind for e in twin.step()]
    assert twin.state_hash() == world.state_hash()


def test_a_fork_shares_no_mutable_state_with_its_parent() -> None:
    world = busy_world()
    before = world.state_hash()
    fork = World(world.state.copy())
    for _ in range(50):
        fork.step([Whisper(tick=fork.tick, target="agent-zero", text="work faster")])
    assert world.state_hash() == before
    assert fork.state_hash() != before


def test_forks_from_one_state_evolve_identically_without_inputs() -> None:
    world = busy_world()
    left, right = World(world.state.copy()), World(world.state.copy())
    for _ in range(60):
        left.step()
        right.step()
    assert left.state_hash() == right.state_hash()


def test_wrong_magic_or_version_is_refused() -> None:
    raw = encode_state(busy_world(5).state)
    with pytest.raises(CodecError, match="bad magic"):
        decode_state(b"XXXX" + raw[4:])
    with pytest.raises(CodecError, match=f"version {FORMAT_VERSION + 1}"):
        decode_state(raw[:4] + bytes([FORMAT_VERSION + 1]) + raw[5:])
    with pytest.raises(CodecError):
        decode_state(raw[:-3])


def test_states_of_one_world_share_their_decoded_specs_and_other_specs_decode_as_themselves() -> None:
    world = busy_world(5)
    first = decode_state(encode_state(world.state))
    world.step()
    later = decode_state(encode_state(world.state))
    assert later.specs is first.specs  # fixed for the agents' lives: decoded once
    assert later.specs == world.state.specs
    other = World.create(6, agents=31).state
    assert decode_state(encode_state(other)).specs == other.specs


@pytest.mark.parametrize("specs", [5, ((1, 2),), (("a", "b", "c", "d", (), "m", "extra"),)])
def test_specs_of_the_wrong_shape_are_refused(specs: object) -> None:
    tree = state_tree(busy_world(5).state)
    tree["specs"] = specs
    with pytest.raises(CodecError, match="wrong shape"):
        decode_state(MAGIC + bytes([FORMAT_VERSION]) + canonical.encode(tree))


def test_hash_is_versioned_blake2b() -> None:
    digest = busy_world(5).state_hash()
    assert digest.startswith("b2:")
    assert len(digest) == 3 + 64


def test_the_agents_of_state_bytes_are_read_without_a_whole_decode() -> None:
    world = busy_world()
    raw = encode_state(world.state)
    assert state_agents(raw) == (world.tick, tuple(spec.id for spec in world.state.specs))
    with pytest.raises(CodecError, match="magic"):
        state_agents(b"XXXX" + raw[4:])
    with pytest.raises(CodecError):
        state_agents(raw[:40])  # cut inside the entries before the agents
