"""The cluster's puppet master: the API's calls routed to the hosts that run the worlds, worlds placed by load,
moved between hosts when a command needs them together, and taken over by the survivors when a node dies.

``ClusterPuppetMaster`` is a ``RemotePuppetMaster`` whose wire is the cluster: each call goes, as its bytes, to the
host (``soulfra.cluster.host.WorldHost``) running the world it names, and the host's answer comes back as a bus
reply would. What it keeps is only where each world runs (``Placement``); the worlds, their history and their
leases are in PostgreSQL, so it can be restarted, and a host that dies loses nothing acknowledged.

Hosts are reached through ``HostHandle``: ``soulfra.cluster.ray_hosts`` makes them Ray actors, some on each node; the
tests may make them in-process.

A host is found dead when Ray says its actor or node died, or at its first unanswered ping once the database session
through which it holds its worlds' leases is gone (its process is), or after ``MISSES_TO_DEAD`` unanswered pings
(a busy host keeps its session: it is never taken for dead on one). The takeover needs those sessions gone in any
case, so PostgreSQL must notice a lost machine's connections: on a real cluster, set the server's
``tcp_keepalives_idle``/``_interval``/``_count`` low (say 5 s, 1 s, 3); Ray's ``health_check_period_ms`` and
``health_check_failure_threshold`` only make Ray's own word come sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

from soulfra.bus.port import Bus, decode_reply
from soulfra.cluster.placement import HostHandle, Placement, node_of
from soulfra.errors import BusError, ConflictError, LeaseHeldError
from soulfra.meta.commands import FreezeTime, MergeInstances, ThawTime, parse_command
from soulfra.meta.lineage import record_json
from soulfra.meta.service import PAGE, RemotePuppetMaster
from soulfra.metrics import ClusterMetrics, Metrics
from soulfra.offload import off_loop
from soulfra.platforms.base import decode, encode
from soulfra.store.ports import Store

__all__ = ["ClusterPuppetMaster", "HostGoneError", "adopted"]

log = logging.getLogger(__name__)

RECOVERING = "recovering"
WATCH_EVERY_S = 0.5  # how often every host is asked (all at once) whether it lives
PING_TIMEOUT_S = 5.0  # a ping not answered by then is a miss
SUSPECT_AFTER_S = 0.25  # a ping not answered by then has the host's worlds' lease sessions looked at (3 reads)
VERDICT_S = 0.5  # beyond SUSPECT_AFTER_S, what a round waits for its verdicts (a look at the lease sessions)
# Misses in a row that make a host dead (a busy host may miss one). At once instead: Ray's word that it died, or a
# failed ping while the database sessions of its worlds' leases are gone (its process is: a host's worlds hold their
# leases through one session, which ends with the process).
MISSES_TO_DEAD = 3
SESSION_SAMPLE = 3  # worlds of a host whose lease holders are looked at when a ping fails
ADOPT_RETRY_S = 0.25  # a world whose lease the dead host's database session still holds is asked for again this soon
ADOPT_BATCH = 50  # worlds per adopt call of a takeover: each batch is placed (and shown running) as soon as it starts


class HostGoneError(Exception):
    """A ping's answer that the host is dead for sure (its actor or its node died), not merely slow to answer. It
    never leaves the cluster's watch: requests to such a host fail as a ``BusError``."""


class ClusterPuppetMaster(RemotePuppetMaster):
    """The API's puppet master over the hosts of a cluster (see the module's docstring)."""

    def __init__(
        self,
        bus: Bus,
        store: Store,
        placement: Placement,
        default: str,
        *,
        metrics: Metrics | None = None,
        on_failover: Callable[[str, float], None] | None = None,
    ) -> None:
        super().__init__(bus, store, metrics=metrics)
        self.placement = placement
        self.default = default
        self._moving = asyncio.Lock()  # one move of worlds between hosts at a time
        self._watching: asyncio.Task[None] | None = None
        self._ending: set[asyncio.Task[None]] = set()  # lost hosts being ended
        self._misses: dict[str, int] = {}  # node -> pings its host has missed in a row (the watch's count)
        self.on_failover = on_failover  # called with each recovered world and the seconds it took
        self.cluster_metrics = None if metrics is None else ClusterMetrics(metrics, placement.counts)

    # -- the wire ------------------------------------------------------------------------------------------------

    async def send(self, op: str, body: dict[str, Any]) -> bytes:
        route = getattr(self, f"_route_{op}", None)
        if route is None:
            return await self._to(self.placement.any_host(), op, body)
        result: bytes = await route(body)
        return result

    async def _to(self, host: HostHandle, op: str, body: dict[str, Any]) -> bytes:
        """The call on ``host``; the host's refusal raised as its typed error."""
        return decode_reply(await host.call(op, encode(body)))

    def _answer(self, reply: Any, audit: dict[str, Any] | None = None) -> bytes:
        return encode({"reply": reply, "audit": audit or {}})

    async def _route_default(self, body: dict[str, Any]) -> bytes:
        return self._answer({"instance": self.default})

    async def _route_list(self, body: dict[str, Any]) -> bytes:
        records = await off_loop(self.store.instances.list_instances)
        live: dict[str, dict[str, Any]] = {}
        hosts = list(self.placement.hosts.values())
        for rows in await asyncio.gather(*(h.live() for h in hosts), return_exceptions=True):
            if isinstance(rows, BaseException):  # a host that is going: its worlds show as stored until taken over
                continue
            live.update((row["id"], row) for row in rows)
        rows = []
        for record in records:
            row = live.get(record.id)
            if row is None:
                row = {**record_json(record), "failure": None, "tick": record.head_tick, "node": None}
                row["state"] = RECOVERING if record.id in self.placement.recovering else "stored"
            rows.append(row)
        offset = int(body.get("offset", 0))
        return self._answer({"rows": rows[offset : offset + PAGE], "total": len(rows)})

    async def _route_create(self, body: dict[str, Any]) -> bytes:
        host = self.placement.least_loaded()  # placement by load: a node that joined gets the next worlds
        raw = await self._to(host, "create", body)
        made = decode(raw)["reply"]["id"]
        self.placement.place(host.node, [made])
        return raw

    async def _route_describe(self, body: dict[str, Any]) -> bytes:
        return await self._to(
            self.placement.host_of(str(body.get("id"))) or self.placement.any_host(), "describe", body
        )

    async def _route_delete(self, body: dict[str, Any]) -> bytes:
        instance_id = str(body.get("id"))
        host = self.placement.host_of(instance_id) or self.placement.any_host()
        raw = await self._to(host, "delete", body)
        self.placement.worlds.get(host.node, set()).discard(instance_id)
        return raw

    async def _route_flush(self, body: dict[str, Any]) -> bytes:
        for node, ids in self._by_host(body.get("ids") or []).items():
            await self._to(self.placement.hosts[node], "flush", {**body, "ids": ids})
        return self._answer({})

    async def _route_start(self, body: dict[str, Any]) -> bytes:
        for instance_id in body.get("ids") or []:
            if self.placement.host_of(instance_id) is None:
                host = self.placement.least_loaded()
                self.placement.place(host.node, await host.adopt([instance_id]))
        return self._answer({})

    async def _route_failures(self, body: dict[str, Any]) -> bytes:
        failed: dict[str, Any] = {}
        for host in list(self.placement.hosts.values()):
            failed.update(decode(await self._to(host, "failures", body))["reply"])
        return self._answer(failed)

    async def _route_preview_merge(self, body: dict[str, Any]) -> bytes:
        command = MergeInstances.model_validate(body.get("command"))
        host = await self._together(command.touches(self.placement.live_ids()))
        return await self._to(host, "preview_merge", body)

    async def _route_god(self, body: dict[str, Any]) -> bytes:
        command = parse_command(body.get("command"))
        if isinstance(command, FreezeTime | ThawTime):
            return await self._spread(command, body)
        host = await self._together(command.touches(self.placement.live_ids()))
        before = self.placement.live_ids()
        raw = await self._to(host, "god", body)
        running = [row["id"] for row in await host.live()]
        self.placement.place(host.node, running)
        await self._spread_out(host, [i for i in running if i not in before])  # forks, clones, merges made
        return raw

    async def _spread_out(self, host: HostHandle, made: list[str]) -> None:
        """New worlds moved from ``host`` to the host with the fewest, while that evens the load out."""
        for instance_id in made:
            least = self.placement.least_loaded()
            if least.node != host.node and len(self.placement.worlds[least.node]) < len(
                self.placement.worlds[host.node]
            ):
                await self.move([instance_id], least)

    # -- placement -----------------------------------------------------------------------------------------------

    def _by_host(self, ids: Iterable[str]) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for instance_id in ids:
            host = self.placement.host_of(instance_id)
            if host is not None:
                grouped.setdefault(host.node, []).append(instance_id)
        return grouped

    async def _together(self, ids: Collection[str]) -> HostHandle:
        """A host running every one of ``ids`` that runs at all: the first one's, the others moved to it."""
        hosts = [h for h in (self.placement.host_of(i) for i in ids) if h is not None]
        if not hosts:
            return self.placement.any_host()
        target = hosts[0]
        strays = [i for i in ids if (h := self.placement.host_of(i)) is not None and h.node != target.node]
        if strays:
            await self.move(strays, target)
        return target

    async def move(self, ids: Collection[str], target: HostHandle) -> None:
        """Move running worlds to ``target``: each stopped on its host (its lease let go), then started there."""
        async with self._moving:
            for node, group in self._by_host(ids).items():
                if node == target.node:
                    continue
                released = await self.placement.hosts[node].release(group)
                self.placement.worlds[node].difference_update(released)
                self.placement.place(target.node, await adopted(target, released, deadline_s=30.0))

    async def _spread(self, command: FreezeTime | ThawTime, body: dict[str, Any]) -> bytes:
        """A freeze or a thaw sent to each host for the worlds it runs; their results as one."""
        targets: dict[str, list[str] | None]
        if command.instances is None:  # every host acts on its own worlds, as one server acts on all of its
            targets = dict.fromkeys(self.placement.hosts)
        else:
            for instance_id in command.instances:
                if instance_id in self.placement.recovering:
                    raise ConflictError(f"{instance_id} is recovering on another node; try again in a moment")
                if self.placement.host_of(instance_id) is None:  # unknown, or not running: refused as one server
                    return await self._to(self.placement.any_host(), "god", body)
            targets = dict(self._by_host(command.instances))
        key = "frozen" if isinstance(command, FreezeTime) else "thawed"
        merged: dict[str, Any] | None = None
        touched: set[str] = set()
        audit: dict[str, Any] = {}
        for node, ids in targets.items():
            sent = {**body, "command": command.model_copy(update={"instances": ids}).model_dump(mode="json")}
            answer = decode(await self._to(self.placement.hosts[node], "god", sent))
            reply, audit = answer["reply"], answer.get("audit") or {}
            touched.update(audit.get("instances") or ())
            if merged is None:
                merged = reply
            else:
                merged[key] = sorted(merged[key] + reply[key], key=lambda row: row["instance"])
        if merged is None:  # no host: ask for the refusal one server would give
            return await self._to(self.placement.any_host(), "god", body)
        return self._answer(merged, {**audit, "instances": sorted(touched)})

    # -- failover ------------------------------------------------------------------------------------------------

    def watch(self, ping: Callable[[HostHandle], Awaitable[int]] | None = None) -> None:
        """Start asking every host, every second, whether it lives; a dead host's worlds go to the others."""
        self._watching = asyncio.get_running_loop().create_task(self._watch(ping or (lambda h: h.ping())))

    async def stop_watching(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching

    async def _watch(self, ping: Callable[[HostHandle], Awaitable[int]]) -> None:
        probing: dict[str, tuple[HostHandle, asyncio.Task[tuple[bool, str] | None]]] = {}
        taking_over: asyncio.Task[None] | None = None
        try:
            while True:
                await asyncio.sleep(WATCH_EVERY_S)
                for host in list(self.placement.hosts.values()):  # a host still being asked is not asked again
                    if host.node not in probing:
                        probing[host.node] = host, asyncio.ensure_future(self._probe(host, ping))
                # A dead host is known within SUSPECT_AFTER_S and a look at its sessions: its worlds are not kept
                # waiting for a live host that is slow to answer (a busy one may take up to PING_TIMEOUT_S), whose
                # answer is taken in a later round.
                if probing:
                    await asyncio.wait([task for _, task in probing.values()], timeout=SUSPECT_AFTER_S + VERDICT_S)
                for node, (host, task) in list(probing.items()):
                    if task.done():
                        del probing[node]
                        if node in self.placement.hosts:  # not found dead meanwhile
                            await self._judge(host, task.result())
                # A takeover runs beside the watch, which goes on judging the hosts meanwhile: one lost during it is
                # dealt no more worlds, and its own are recovering at once (the next round takes them over).
                if self.placement.recovering and (taking_over is None or taking_over.done()):
                    taking_over = asyncio.ensure_future(self._recover_round())
        finally:
            for task in [*(task for _, task in probing.values()), *([taking_over] if taking_over else [])]:
                task.cancel()

    async def _recover_round(self) -> None:
        try:
            await self.recover()
        except Exception:  # a host that went as it took worlds over, say: the next round tries again
            log.exception("taking over the worlds of a lost host failed; trying again")

    async def _judge(self, host: HostHandle, verdict: tuple[bool, str] | None) -> None:
        """Count a probe's verdict on ``host``: dead at once if it is sure, or after ``MISSES_TO_DEAD`` misses."""
        misses = self._misses
        if verdict is None:
            misses.pop(host.node, None)
            return
        sure, reason = verdict
        misses[host.node] = MISSES_TO_DEAD if sure else misses.get(host.node, 0) + 1
        if misses[host.node] >= MISSES_TO_DEAD:
            await self._lost(host, reason)  # which forgets its misses

    async def _probe(self, host: HostHandle, ping: Callable[[HostHandle], Awaitable[int]]) -> tuple[bool, str] | None:
        """None if ``host`` answered; else whether it is dead for sure, and why. A ping that fails, or is not
        answered within ``SUSPECT_AFTER_S``, has the host's database session looked at."""
        answer = asyncio.ensure_future(asyncio.wait_for(ping(host), PING_TIMEOUT_S))
        done, _ = await asyncio.wait({answer}, timeout=SUSPECT_AFTER_S)
        if not done and await self._sessions_gone(host.node):
            answer.cancel()
            return True, "no answer to a ping, and the database session holding its worlds' leases is gone"
        try:
            await answer
        except HostGoneError as exc:  # Ray says so: the actor, or its node, is dead
            return True, str(exc)
        except Exception as exc:  # unavailable for now, or too busy to answer in time
            reason = f"{type(exc).__name__}: {getattr(exc, 'detail', exc)}"
            if await self._sessions_gone(host.node):
                return True, f"{reason}; the database session holding its worlds' leases is gone"
            return False, reason
        self.placement.answered[host.node] = time.monotonic()
        return None

    async def _sessions_gone(self, node: str) -> bool:
        """Whether the leases of (a few of) the worlds placed on ``node`` are no longer held by a live session: the
        host's process is gone, since it holds them through one session until it ends. False when it cannot tell
        (no world there yet, or the database unreachable)."""
        sample = sorted(self.placement.worlds.get(node, ()))[:SESSION_SAMPLE]
        try:
            holders = [await off_loop(self.store.leases.holder, instance_id) for instance_id in sample]
        except Exception as exc:
            log.warning("the leases of host %s cannot be read: %s", node, exc)
            return False
        known = [holder for holder in holders if holder is not None]
        return bool(known) and not any(holder.live for holder in known)

    async def _lost(self, host: HostHandle, reason: str) -> None:
        """``host`` is dead: its worlds are recovering from now, and its process, should it still run, is ended."""
        since = self.placement.answered.get(host.node)
        silent = f"{time.monotonic() - since:.1f} s after its last answer" if since is not None else "never answered"
        log.warning("host %s is gone (%s; %s): its worlds go to the others", host.node, reason, silent)
        orphans = self.placement.remove(host.node)
        self._misses.pop(host.node, None)
        if self.cluster_metrics is not None:
            self.cluster_metrics.host_lost()
        log.info("%d world(s) of host %s are recovering", len(orphans), host.node)
        ending = asyncio.get_running_loop().create_task(_end(host))  # beside the takeover, which must not wait on it
        self._ending.add(ending)
        ending.add_done_callback(self._ending.discard)
        # A node's hosts die together: the others of this one are judged now, by their sessions (one whose process
        # lives, a crash of this host's alone, is kept), so that the takeover deals none of the worlds to them.
        for mate in [h for h in self.placement.hosts.values() if node_of(h.node) == node_of(host.node)]:
            if mate.node in self.placement.hosts and await self._sessions_gone(mate.node):
                await self._lost(mate, f"its node's host {host.node} is gone, and so is its own database session")

    async def fail_over(self, node: str) -> None:
        """Every world of the dead host ``node`` started again on the live ones (``recover`` until none is left)."""
        host = self.placement.hosts.get(node)
        if host is not None:
            await self._lost(host, "failed over on request")
        else:
            self.placement.remove(node)
        while self.placement.recovering:
            await self.recover()
            if self.placement.recovering:
                await asyncio.sleep(ADOPT_RETRY_S)

    async def recover(self) -> None:
        """One round of taking over: the worlds of lost hosts dealt to the live ones, every host starting its share
        at once from their last committed ticks, in batches each placed as soon as it runs. A world whose lease the
        lost node's database session still holds stays recovering until the next round (a world never runs in two
        places)."""
        async with self._moving:
            started = time.monotonic()
            pending = sorted(self.placement.recovering)
            await asyncio.gather(*(self._take_over(host, share) for host, share in self.shares(pending)))
            left = sum(instance_id in self.placement.recovering for instance_id in pending)
            log.info(
                "took over %d of %d recovering world(s) in %.2f s", len(pending) - left, len(pending),
                time.monotonic() - started,
            )  # fmt: skip

    async def _take_over(self, host: HostHandle, ids: list[str]) -> None:
        for first in range(0, len(ids), ADOPT_BATCH):
            started = await _adopt_once(host, ids[first : first + ADOPT_BATCH])
            if host.node not in self.placement.hosts:  # found dead meanwhile: the worlds it started went with it
                return
            now = time.monotonic()
            for instance_id in started:
                since = self.placement.recovering.get(instance_id)
                if since is None:
                    continue
                if self.cluster_metrics is not None:
                    self.cluster_metrics.failed_over(now - since)
                if self.on_failover is not None:
                    self.on_failover(instance_id, now - since)
            self.placement.place(host.node, started)

    def shares(self, ids: list[str]) -> list[tuple[HostHandle, list[str]]]:
        """``ids`` dealt to the live hosts, each next one to the host that would have the fewest; a host that missed
        its last ping (dying, or too busy) is dealt none while another answers."""
        answering = [node for node in self.placement.hosts if not self._misses.get(node)]
        shares: dict[str, list[str]] = {node: [] for node in answering or self.placement.hosts}
        for instance_id in ids:
            node = min(shares, key=lambda n: (len(self.placement.worlds[n]) + len(shares[n]), n))
            shares[node].append(instance_id)
        return [(self.placement.hosts[node], share) for node, share in shares.items() if share]


async def _end(host: HostHandle) -> None:
    try:
        await asyncio.wait_for(host.kill(), PING_TIMEOUT_S)
    except Exception as exc:  # gone with its node already, as a rule
        log.info("ending host %s: %s", host.node, exc)


async def _adopt_once(host: HostHandle, ids: list[str]) -> list[str]:
    try:
        return await host.adopt(ids)
    except (LeaseHeldError, BusError) as exc:  # held still, or the host going too: the next round asks again
        log.info("%s did not take over %s yet: %s", host.node, ", ".join(ids), exc.detail)
        return []


async def adopted(host: HostHandle, ids: list[str], *, deadline_s: float) -> list[str]:
    """``ids`` started on ``host``, asked again while another process's lease still holds some (a dead node's
    database sessions end a moment after it); those it could not start by the deadline are left out."""
    deadline = time.monotonic() + deadline_s
    pending, started = list(ids), []
    while pending:
        try:
            now = await host.adopt(pending)
        except LeaseHeldError:
            now = []
        started += now
        pending = [i for i in pending if i not in now]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(ADOPT_RETRY_S)
    if pending:
        log.error("%s could not take over %s by the deadline", host.node, ", ".join(pending))
    return started
