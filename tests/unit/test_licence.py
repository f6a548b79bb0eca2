"""Per-instance protocol rules and scope, enforced by the puppet master: an instance's licence (may fork, may
export, at most N forks) refuses clone, fork, merge and export with the rule named and nothing written; the rules
travel with an exported world and hold where it is imported; bad rules are refused with what is wrong; an identity
scoped to some instances cannot make new ones; a tick rate outside its range is refused."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest

from soulfra.bus import InMemoryBus
from soulfra.durable import DurableWorld
from soulfra.errors import InputError, LicenceError, PermissionDeniedError, ValidationFailedError
from soulfra.meta.commands import parse_command
from soulfra.meta.engine import EngineSettings, PuppetMasterEngine
from soulfra.meta.keys import Signer
from soulfra.meta.package import read_package, write_package
from soulfra.meta.transfer import bundle_for, import_bundles
from soulfra.platforms.instance import InstanceSettings
from soulfra.platforms.runtime import RuntimePlatform
from soulfra.security.identity import Identity
from soulfra.security.permissions import RuleSet, enforce, rules_for
from soulfra.store import InMemoryStore
from soulfra.world import DEFAULT_WORLD

pytestmark = pytest.mark.anyio


@pytest.fixture
async def engine(anyio_backend: str) -> AsyncIterator[PuppetMasterEngine]:
    store, bus = InMemoryStore(), InMemoryBus()
    engine = PuppetMasterEngine(store, bus, EngineSettings(instance=InstanceSettings(rate=None)))
    await engine.create_instance(seed=1, spec=DEFAULT_WORLD, instance_id="a")
    await engine.create_instance(seed=2, spec=DEFAULT_WORLD, instance_id="b")
    try:
        yield engine
    finally:
        await engine.close()
        await bus.close()
        store.close()


async def run(engine: PuppetMasterEngine, command: dict[str, Any]) -> dict[str, Any]:
    return (await engine.execute(parse_command(command))).reply()


def count(engine: PuppetMasterEngine) -> int:
    return len(engine.store.instances.list_instances())


async def test_a_licence_without_forks_refuses_clone_fork_and_merge_naming_the_rule(
    engine: PuppetMasterEngine,
) -> None:
    engine.store.instances.set_rules("a", {"licence": {"fork": False}})
    before = count(engine)
    for command in (
        {"type": "CLONE_INSTANCE", "source": "a"},
        {"type": "REALITY_FORK", "source": "a", "forks": [{}]},
        {"type": "MERGE_INSTANCES", "ours": "b", "theirs": "a"},
    ):
        with pytest.raises(LicenceError, match="refused by rule 'licence': the licence of a does not allow forks"):
            await run(engine, command)
    assert count(engine) == before  # nothing written
    await run(engine, {"type": "CLONE_INSTANCE", "source": "b"})  # b's licence is the default one
    assert count(engine) == before + 1


async def test_max_forks_counts_the_forks_asked_for_at_once(engine: PuppetMasterEngine) -> None:
    engine.store.instances.set_rules("a", {"licence": {"max_forks": 2}})
    with pytest.raises(LicenceError, match="at most 2 forks; it has 0"):
        await run(engine, {"type": "REALITY_FORK", "source": "a", "forks": [{}, {}, {}]})
    await run(engine, {"type": "REALITY_FORK", "source": "a", "forks": [{}, {}]})
    with pytest.raises(LicenceError, match="at most 2 forks; it has 2"):
        await run(engine, {"type": "CLONE_INSTANCE", "source": "a"})


async def test_export_is_refused_by_the_licence_and_the_rules_travel_with_the_world(
    engine: PuppetMasterEngine,
) -> None:
    store = engine.store
    store.instances.set_rules("b", {"licence": {"export": False}})
    with pytest.raises(LicenceError, match="does not allow export"):
        bundle_for(store, "b")
    store.instances.set_rules("a", {"licence": {"fork": False}, "max_agents": 50})
    signer = Signer.generate()
    buffer = io.BytesIO()
    write_package(buffer, [bundle_for(store, "a")], signer)
    buffer.seek(0)

    class Trust:
        def trusted_key(self, key_id: str) -> bytes | None:
            return signer.public_key if key_id == signer.key_id else None

    package = read_package(buffer, Trust())
    elsewhere = InMemoryStore()
    import_bundles(elsewhere, package.bundles)
    carried = rules_for(elsewhere, "a")
    assert carried.licence.fork is False and carried.max_agents == 50
    with pytest.raises(LicenceError):
        enforce(elsewhere, "a", "fork")


async def test_an_import_is_refused_by_the_rules_its_package_carries_naming_the_rule(
    engine: PuppetMasterEngine,
) -> None:
    engine.store.instances.set_rules("a", {"max_agents": 2})  # the default world has three agents
    (bundle,) = [bundle_for(engine.store, "a")]
    with pytest.raises(ValidationFailedError, match="the protocol refuses a: rule 'agent-limit': 3 agents"):
        import_bundles(InMemoryStore(), [bundle])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_agents": -1}, "max_agents must be a whole number"),
        ({"max_agents": "10"}, "max_agents must be a whole number"),
        ({"rules": ["licence", "telepathy"]}, "unknown rule 'telepathy'"),
        ({"licence": {"fork": "no"}}, "licence.fork and licence.export must be true or false"),
        ({"licence": {"max_forks": -2}}, "max_forks must be a whole number"),
        ({"licence": {"sell": True}}, "bad protocol rules"),
        ({"colour": "red"}, "bad protocol rules"),
        ({"licence": []}, "'licence' must be an object"),
    ],
)
def test_bad_rules_are_refused_with_what_is_wrong(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        RuleSet.from_json(body)


def test_partial_rules_keep_the_rest_of_their_base() -> None:
    base = RuleSet(max_agents=10)
    made = RuleSet.from_json({"licence": {"max_forks": 3}}, base=base)
    assert made.max_agents == 10 and made.licence.max_forks == 3 and made.licence.fork is True


async def test_a_scoped_identity_cannot_make_instances_and_the_refusal_is_audited(engine: PuppetMasterEngine) -> None:
    scoped = Identity(name="carol", role="puppet-master", instances=frozenset({"a", "b"}))
    before = count(engine)
    for command in (
        {"type": "CLONE_INSTANCE", "source": "a"},
        {"type": "REALITY_FORK", "source": "a", "forks": [{}]},
        {"type": "MERGE_INSTANCES", "ours": "a", "theirs": "b"},
    ):
        with pytest.raises(PermissionDeniedError, match="carol is scoped to a, b and cannot"):
            await engine.execute(parse_command(command), identity=scoped)
    with pytest.raises(PermissionDeniedError, match="cannot create instances"):
        await engine.create_instance(seed=3, spec=DEFAULT_WORLD, identity=scoped)
    assert count(engine) == before
    refused = [(e.actor, e.action, e.outcome) for e in engine.store.audit.read(actor="carol")]
    assert refused == [
        ("carol", "god.clone_instance", "forbidden"),
        ("carol", "god.reality_fork", "forbidden"),
        ("carol", "god.merge_instances", "forbidden"),
        ("carol", "instance.create", "forbidden"),
    ]
    await engine.execute(parse_command({"type": "FREEZE_TIME", "instances": ["a"]}), identity=scoped)  # in scope


@pytest.mark.parametrize("rate", [0.0, -1.0, 1e-300, 0.0009, 2e9])
def test_a_tick_rate_outside_its_range_is_refused(rate: float) -> None:
    world = DurableWorld.create(InMemoryStore(), 1, DEFAULT_WORLD)
    with pytest.raises(InputError, match=r"tick rate must be between 0\.001 and 1e\+09"):
        RuntimePlatform(world, InMemoryBus(), rate=rate)
    world.close()
