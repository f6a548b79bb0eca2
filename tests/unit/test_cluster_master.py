"""The cluster's puppet master over hosts that stand in for Ray actors: where it places worlds, how it moves them
together for a command and spreads new ones out, how a freeze reaches every host, and how a dead host's worlds are
taken over (asked again while the dead process's leases still hold them)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from soulfra.bus import InMemoryBus
from soulfra.bus.port import encode_error, encode_ok
from soulfra.cluster import master as cluster_master
from soulfra.cluster.master import ClusterPuppetMaster
from soulfra.cluster.placement import Placement
from soulfra.errors import BusError, LeaseHeldError
from soulfra.meta.commands import FreezeTime, RealityFork, ThawTime
from soulfra.metrics import Metrics
from soulfra.platforms.base import decode, encode
from soulfra.store import InMemoryStore
from soulfra.store.memory import MemoryDatabase

from .support import sample

pytestmark = pytest.mark.anyio


class FakeHost:
    """A host that runs a set of world ids; a god command's reply names what it did."""

    def __init__(self, node: str, worlds: set[str] | None = None) -> None:
        self.node = node
        self.worlds = set(worlds or ())
        self.held: set[str] = set()  # ids whose lease another process still holds: adopting them fails for now
        self.dead = False
        self.log: list[tuple[str, Any]] = []

    async def call(self, op: str, payload: bytes) -> bytes:
        body = decode(payload)
        self.log.append((op, body))
        if op == "create":
            self.worlds.add(body["id"])
            return encode_ok(encode({"reply": {"id": body["id"]}, "audit": {}}))
        if op == "god":
            command = body["command"]
            if command["type"] == "REALITY_FORK":
                made = [fork["id"] for fork in command["forks"]]
                self.worlds.update(made)
                return encode_ok(encode({"reply": {"forks": made}, "audit": {}}))
            if command["type"] in ("FREEZE_TIME", "THAW_TIME"):
                key = "frozen" if command["type"] == "FREEZE_TIME" else "thawed"
                ids = command["instances"] if command["instances"] is not None else sorted(self.worlds)
                rows = [{"instance": i, "tick": 1} for i in ids]
                return encode_ok(encode({"reply": {key: rows}, "audit": {"instances": ids}}))
            return encode_ok(encode({"reply": {"ran_on": self.node}, "audit": {}}))
        return encode_error(BusError(f"no {op} here"))

    async def adopt(self, instance_ids: list[str]) -> list[str]:
        self.log.append(("adopt", instance_ids))
        started = [i for i in instance_ids if i not in self.held]
        self.worlds.update(started)
        return started

    async def release(self, instance_ids: list[str]) -> list[str]:
        self.log.append(("release", instance_ids))
        gone = [i for i in instance_ids if i in self.worlds]
        self.worlds.difference_update(gone)
        return gone

    async def live(self) -> list[dict[str, Any]]:
        return [{"id": i, "node": self.node, "state": "running"} for i in sorted(self.worlds)]

    async def ping(self) -> int:
        if self.dead:
            raise BusError(f"{self.node} is gone")
        return len(self.worlds)

    async def kill(self) -> None:
        self.log.append(("kill", None))
        self.dead = True


def cluster(*hosts: FakeHost, metrics: Metrics | None = None) -> ClusterPuppetMaster:
    placement = Placement()
    for host in hosts:
        placement.add(host)
        placement.place(host.node, host.worlds)
    return ClusterPuppetMaster(InMemoryBus(), InMemoryStore(), placement, "a", metrics=metrics)


async def send(master: ClusterPuppetMaster, op: str, body: dict[str, Any]) -> Any:
    return decode(await master.send(op, body))["reply"]


async def test_a_new_world_goes_to_the_host_with_the_fewest() -> None:
    one, two = FakeHost("one", {"a", "b"}), FakeHost("two", {"c"})
    master = cluster(one, two)
    await send(master, "create", {"id": "d"})
    await send(master, "create", {"id": "e"})
    assert (one.worlds, two.worlds) == ({"a", "b", "e"}, {"c", "d"})  # the tie went to the first by name
    assert master.placement.host_of("d") is two


async def test_a_command_on_worlds_of_two_hosts_runs_where_the_first_is_after_moving_the_others() -> None:
    one, two = FakeHost("one", {"a"}), FakeHost("two", {"b"})
    master = cluster(one, two)
    reply = await send(master, "god", {"command": {"type": "MERGE_INSTANCES", "ours": "a", "theirs": "b"}})
    assert reply == {"ran_on": "one"}
    assert ("release", ["b"]) in two.log and ("adopt", ["b"]) in one.log
    assert (one.worlds, two.worlds) == ({"a", "b"}, set())


async def test_forks_made_on_a_busy_host_spread_to_the_one_with_fewer() -> None:
    one, two = FakeHost("one", {"a", "b"}), FakeHost("two", {"c"})
    master = cluster(one, two)
    fork = RealityFork(source="a", forks=[{"id": "f1"}, {"id": "f2"}]).model_dump(mode="json")  # type: ignore[list-item]
    await send(master, "god", {"command": fork})
    assert (one.worlds, two.worlds) == ({"a", "b"}, {"c", "f1", "f2"})  # each moved while the other had fewer
    assert master.placement.host_of("f1") is master.placement.host_of("f2") is two


async def test_a_freeze_of_all_reaches_every_host_and_reads_as_one() -> None:
    one, two = FakeHost("one", {"a", "b"}), FakeHost("two", {"c"})
    master = cluster(one, two)
    frozen = await send(master, "god", {"command": FreezeTime().model_dump(mode="json")})
    assert [row["instance"] for row in frozen["frozen"]] == ["a", "b", "c"]
    named = await send(master, "god", {"command": ThawTime(instances=["c"]).model_dump(mode="json")})
    assert named["thawed"] == [{"instance": "c", "tick": 1}]
    assert all(op != "god" for op, _ in one.log[1:])  # the named thaw went only to c's host


async def test_a_dead_hosts_worlds_are_taken_over_once_their_leases_are_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_master, "ADOPT_RETRY_S", 0.01)
    monkeypatch.setattr(cluster_master, "WATCH_EVERY_S", 0.01)
    one, two = FakeHost("one", {"a"}), FakeHost("two", {"b", "c"})
    recovered: list[str] = []
    master = cluster(one, two)
    master.on_failover = lambda instance, seconds: recovered.append(instance)
    one.held = {"c"}  # the dead process's database session still holds c's lease for a moment
    two.dead = True
    master.watch()
    try:
        await _until(lambda: "b" in one.worlds)
        assert master.placement.recovering.keys() == {"c"}
        one.held.clear()
        await _until(lambda: "c" in one.worlds)
    finally:
        await master.stop_watching()
    assert sorted(recovered) == ["b", "c"] and not master.placement.recovering
    assert master.placement.hosts.keys() == {"one"} and "two" in master.placement.dead


async def test_a_host_slow_to_answer_its_pings_holds_back_no_takeover(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy host may take long to answer a ping; the dead one's worlds are taken over meanwhile."""
    monkeypatch.setattr(cluster_master, "WATCH_EVERY_S", 0.01)
    monkeypatch.setattr(cluster_master, "SUSPECT_AFTER_S", 0.01)
    monkeypatch.setattr(cluster_master, "VERDICT_S", 0.01)
    monkeypatch.setattr(cluster_master, "PING_TIMEOUT_S", 3600.0)
    slow, two = FakeHost("slow", {"a"}), FakeHost("two", {"b"})
    master = cluster(slow, two)
    answer = asyncio.Event()
    pings: list[str] = []

    async def ping(host: Any) -> int:
        pings.append(host.node)
        if host is slow:
            await answer.wait()  # busy: it answers once the test lets it
        result: int = await host.ping()
        return result

    two.dead = True
    master.watch(ping)
    try:
        await _until(lambda: "b" in slow.worlds)
        assert pings.count("slow") == 1  # asked once, and not again while that ping waits for its answer
        assert "slow" in master.placement.hosts and "two" in master.placement.dead
        answer.set()
        await _until(lambda: pings.count("slow") > 1)
    finally:
        answer.set()
        await master.stop_watching()


async def test_a_host_that_dies_during_a_takeover_is_found_dead_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch goes on judging the hosts while a takeover is under way (a node's second host often dies a round
    after its first): its worlds are recovering at once, it is dealt none of them, and the next round takes them."""
    monkeypatch.setattr(cluster_master, "WATCH_EVERY_S", 0.01)
    monkeypatch.setattr(cluster_master, "ADOPT_RETRY_S", 0.01)
    live, first, second = FakeHost("live", {"a"}), FakeHost("first", {"b"}), FakeHost("second", {"c"})
    master = cluster(live, first, second)
    asked, go = asyncio.Event(), asyncio.Event()
    adopting = live.adopt

    async def slow_adopt(ids: list[str]) -> list[str]:
        asked.set()
        await go.wait()  # a takeover that takes a while
        return await adopting(ids)

    live.adopt = slow_adopt  # type: ignore[method-assign,assignment]
    first.dead = True
    master.watch()
    try:
        await _until(asked.is_set)
        second.dead = True  # while live is still taking b over
        await _until(lambda: "second" in master.placement.dead)
        assert set(master.placement.recovering) == {"b", "c"} and not go.is_set()
        go.set()
        await _until(lambda: not master.placement.recovering)
    finally:
        go.set()
        await master.stop_watching()
    assert live.worlds == {"a", "b", "c"} and master.placement.hosts.keys() == {"live"}
    assert not any(op == "adopt" for op, _ in second.log)  # b went to live (fewest, first by name), c after


def test_a_host_that_missed_its_last_ping_is_dealt_no_worlds_while_another_answers() -> None:
    master = cluster(FakeHost("busy"), FakeHost("idle", {"a", "b"}))
    assert [(host.node, ids) for host, ids in master.shares(["x", "y"])] == [("busy", ["x", "y"])]
    master._misses["busy"] = 1  # its last ping went unanswered: dying, or too busy to answer
    assert [(host.node, ids) for host, ids in master.shares(["x", "y"])] == [("idle", ["x", "y"])]
    master._misses["idle"] = 1  # none answers: dealt as before
    assert [(host.node, ids) for host, ids in master.shares(["x", "y"])] == [("busy", ["x", "y"])]


async def test_an_adoption_refused_by_a_held_lease_is_asked_again() -> None:
    host = FakeHost("one")

    async def refusing(ids: list[str]) -> list[str]:
        host.log.append(("adopt", ids))
        if len(host.log) < 3:
            raise LeaseHeldError("held")
        host.worlds.update(ids)
        return ids

    host.adopt = refusing  # type: ignore[method-assign,assignment]
    cluster_master.ADOPT_RETRY_S, saved = 0.01, cluster_master.ADOPT_RETRY_S
    try:
        assert await cluster_master.adopted(host, ["x"], deadline_s=5.0) == ["x"]
    finally:
        cluster_master.ADOPT_RETRY_S = saved
    assert [entry for entry in host.log if entry[0] == "adopt"] == [("adopt", ["x"])] * 3


async def _until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


class Clock:
    """``time`` as the cluster's master reads it: a monotonic clock moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


async def test_a_failover_moves_the_cluster_metrics_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(100.0)
    monkeypatch.setattr(cluster_master, "time", clock)
    monkeypatch.setattr(cluster_master, "ADOPT_RETRY_S", 0.0)
    one, two = FakeHost("one", {"a"}), FakeHost("two", {"b", "c"})
    metrics = Metrics()
    master = cluster(one, two, metrics=metrics)
    metrics.render()
    assert (
        sample(metrics, "soulfra_cluster_worlds", node="one"),
        sample(metrics, "soulfra_cluster_worlds", node="two"),
    ) == (1, 2)
    assert sample(metrics, "soulfra_cluster_hosts") == 2
    one.held = {"c"}  # the lost host's session still holds c's lease for the first round
    adopting = one.adopt

    async def slow_adopt(ids: list[str]) -> list[str]:
        clock.now += 1.5  # each round of adoption takes 1.5 s
        started = await adopting(ids)
        one.held.clear()
        return started

    one.adopt = slow_adopt  # type: ignore[method-assign,assignment]
    master.placement.answered["two"] = 99.0  # its last answer
    await master.fail_over("two")
    metrics.render()
    assert ("kill", None) in two.log  # a host found dead is ended, should it still run
    assert sample(metrics, "soulfra_cluster_hosts_lost_total") == 1
    assert sample(metrics, "soulfra_cluster_failovers_total") == 2
    assert sample(metrics, "soulfra_cluster_failover_seconds_count") == 2
    assert sample(metrics, "soulfra_cluster_failover_seconds_sum") == (101.5 - 99.0) + (103.0 - 99.0)
    assert sample(metrics, "soulfra_cluster_failover_seconds_bucket", le="3.0") == 1
    assert sample(metrics, "soulfra_cluster_failover_seconds_bucket", le="4.0") == 2
    assert sample(metrics, "soulfra_cluster_worlds", node="one") == 3
    assert sample(metrics, "soulfra_cluster_worlds", node="two") == 0  # a lost node's series stays, at 0
    assert sample(metrics, "soulfra_cluster_hosts") == 1


async def test_a_host_whose_lease_session_is_gone_is_dead_at_its_first_failed_ping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster_master, "WATCH_EVERY_S", 0.01)
    monkeypatch.setattr(cluster_master, "MISSES_TO_DEAD", 1000)  # misses alone would take far longer than the test
    database = MemoryDatabase()
    hosts_store = InMemoryStore(database)  # the store of the host on node "two"
    for instance_id in ("b", "c"):
        hosts_store.leases.acquire(instance_id)
    one, two = FakeHost("one", {"a"}), FakeHost("two", {"b", "c"})
    placement = Placement()
    for host in (one, two):
        placement.add(host)
        placement.place(host.node, host.worlds)
    master = ClusterPuppetMaster(InMemoryBus(), InMemoryStore(database), placement, "a")
    pings: list[str] = []

    async def ping(host: Any) -> int:
        pings.append(host.node)
        answer: int = await host.ping()
        return answer

    two.dead = True  # its pings fail, but its worlds' leases are held: only misses could make it dead
    master.watch(ping)
    try:
        await _until(lambda: pings.count("two") >= 3)
        assert "two" in master.placement.hosts
        hosts_store.leases.close()  # the host's process ends, and its session with it
        await _until(lambda: "two" in master.placement.dead)
        await _until(lambda: one.worlds == {"a", "b", "c"})
    finally:
        await master.stop_watching()


async def test_the_other_hosts_of_a_lost_hosts_node_are_lost_with_it_once_their_sessions_are_gone() -> None:
    """A node's hosts die with it: found dead one by one, the first's takeover would deal worlds to the others."""
    database = MemoryDatabase()
    hosts = {"one": "b", "one#2": "c", "one#3": "d", "two": "a"}  # the host on node "one", its two mates, another
    sessions = {name: InMemoryStore(database) for name in hosts}
    for name, world in hosts.items():
        sessions[name].leases.acquire(world)
    placement = Placement()
    for name, world in hosts.items():
        placement.add(FakeHost(name, {world}))
        placement.place(name, {world})
    master = ClusterPuppetMaster(InMemoryBus(), InMemoryStore(database), placement, "a")
    for name in ("one", "one#2"):
        sessions[name].leases.close()  # their processes ended; "one#3" still runs (only some hosts crashed)
    await master.fail_over("one")
    assert placement.dead == {"one", "one#2"} and placement.hosts.keys() == {"one#3", "two"}
    assert not placement.recovering and placement.live_ids() == {"a", "b", "c", "d"}


def test_hosts_are_told_where_their_language_agents_ask() -> None:
    """The hosts' settings travel to their nodes pickled (Ray's way), model endpoint and key included."""
    import pickle  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from soulfra.cluster.host import HostSettings  # noqa: PLC0415
    from soulfra.language import Budget, MindSettings  # noqa: PLC0415

    minds = MindSettings(url="http://127.0.0.1:8080/v1", model="smollm2", api_key="k3y", budget=Budget(timeout=7.0))
    settings = HostSettings(
        db_url="postgresql://h/db",
        nats_url="nats://127.0.0.1:4222",
        home=Path("soulfra-home"),
        default="w",
        minds=minds,
    )
    arrived = pickle.loads(pickle.dumps(settings))  # noqa: S301 -- our own bytes
    assert arrived.minds == minds
    assert "k3y" not in repr(arrived.minds)
