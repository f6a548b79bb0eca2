"""The puppet master as the API sees it, wherever it runs: ``PuppetMaster`` is what the API's routes ask of it.

``LocalPuppetMaster`` is the engine in this process (``soulfra up``). In the services topology the engine runs in
its own process (``soulfra serve meta``) and ``MetaServer`` serves each ``PuppetMaster`` call on the bus as
``soulfra-meta.<op>``; an API process (``soulfra serve api``) holds a ``RemotePuppetMaster`` that sends them there.
Big payloads never cross the bus: an API process reads a package's history from the shared database and writes an
imported one there itself, asking the puppet master only to flush the live worlds first and to start what it stored.

A request names who asks (``_by``: name, role and instance scope) and the request it belongs to (``_rid``). The
puppet master runs the call inside that caller's action without writing an audit row of its own: the API process
writes the request's one row, and the reply's ``audit`` part carries what the call added to it (its precise action
name, the instances it touched, its result), so a god command through ``serve api`` is audited exactly as through
``soulfra up``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal, Protocol

from soulfra.bus.port import Bus, Subscription
from soulfra.errors import InputError, NoRespondersError, SoulfraError, WorldFileError
from soulfra.logs import bind, checked_request_id
from soulfra.meta.commands import MergeInstances, parse_command
from soulfra.meta.engine import PuppetMasterEngine
from soulfra.metrics import Metrics
from soulfra.offload import off_loop
from soulfra.platforms.base import BY, RID, decode, encode
from soulfra.security.audit import Action, adopted, current_action
from soulfra.security.identity import Identity, check_role
from soulfra.security.permissions import RuleSet
from soulfra.store.ports import Store
from soulfra.world import DEFAULT_WORLD, WorldSpec, parse_world

__all__ = [
    "META_PREFIX",
    "LocalPuppetMaster",
    "MetaServer",
    "Op",
    "PuppetMaster",
    "RemotePuppetMaster",
    "meta_subject",
]

log = logging.getLogger(__name__)

META_PREFIX = "soulfra-meta"  # not ``soulfra.<instance>``: no instance id can take the puppet master's subjects
PAGE = 500  # instances per ``list`` reply: thousands of rows would pass NATS's 1 MB message limit in one


def meta_subject(op: str) -> str:
    return f"{META_PREFIX}.{op}"


Rate = float | Literal["default"] | None


class PuppetMaster(Protocol):
    """What the API asks of the puppet master. ``store`` is the shared database (read for packages and lineage),
    ``rules`` the server's protocol rules (packages carry them)."""

    store: Store
    rules: RuleSet

    async def default_instance(self) -> str: ...

    async def list_instances(self) -> list[dict[str, Any]]: ...

    async def create_instance(
        self, *, seed: int, world: str | None, agents: int, instance_id: str | None, rate: Rate
    ) -> dict[str, Any]: ...

    async def describe(self, instance_id: str) -> dict[str, Any]: ...

    async def delete_instance(self, instance_id: str) -> dict[str, Any]: ...

    async def execute(self, command: Any) -> dict[str, Any]: ...

    async def preview_merge(self, command: MergeInstances) -> dict[str, Any]: ...

    async def flush(self, instance_ids: Collection[str]) -> None: ...

    async def start(self, instance_ids: Collection[str]) -> None: ...

    async def failures(self) -> dict[str, dict[str, Any]]: ...


def _spec(world: str | None) -> WorldSpec:
    if world is None:
        return DEFAULT_WORLD
    try:
        return parse_world(world, source="the request's world")
    except WorldFileError as exc:
        raise InputError(exc.detail) from None


class LocalPuppetMaster:
    """The engine of this process, as the API asks it."""

    def __init__(self, engine: PuppetMasterEngine, default: str) -> None:
        self.engine = engine
        self.store = engine.store
        self.rules = engine.settings.instance.rules
        self._default = default

    async def default_instance(self) -> str:
        return self._default

    async def list_instances(self) -> list[dict[str, Any]]:
        return await off_loop(self.engine.list_instances)

    async def create_instance(
        self, *, seed: int, world: str | None, agents: int, instance_id: str | None, rate: Rate
    ) -> dict[str, Any]:
        spec = _spec(world)
        return await self.engine.create_instance(
            seed=seed, spec=spec, agents=agents, instance_id=instance_id, rate=rate
        )

    async def describe(self, instance_id: str) -> dict[str, Any]:
        return await off_loop(self.engine.describe, instance_id)

    async def delete_instance(self, instance_id: str) -> dict[str, Any]:
        return await self.engine.delete_instance(instance_id)

    async def execute(self, command: Any) -> dict[str, Any]:
        return (await self.engine.execute(command)).reply()

    async def preview_merge(self, command: MergeInstances) -> dict[str, Any]:
        return (await self.engine.preview_merge(command)).reply()

    async def flush(self, instance_ids: Collection[str]) -> None:
        """Each live world flushed in its lane: what the store holds is then durable up to the live tick."""
        for instance_id in instance_ids:
            live = self.engine.live.get(instance_id)
            if live is not None:
                await live.runtime.lane.run(live.runtime.world.flush)

    async def start(self, instance_ids: Collection[str]) -> None:
        await self.engine.start(set(instance_ids))

    async def failures(self) -> dict[str, dict[str, Any]]:
        """Each live instance stopped by a tick that raised: its tick and error."""
        return {
            instance_id: instance.runtime.failure.to_json()
            for instance_id, instance in list(self.engine.live.items())
            if instance.runtime.failure is not None
        }


Op = Callable[[dict[str, Any]], Awaitable[Any]]  # one call's body in, its reply (JSON) out


class MetaServer:
    """Serves a ``LocalPuppetMaster``'s calls on the bus, each inside its caller's (unwritten) action."""

    def __init__(self, master: LocalPuppetMaster, bus: Bus) -> None:
        self.master = master
        self.bus = bus
        self._subs: list[Subscription] = []

    def ops(self) -> dict[str, Op]:
        m = self.master

        async def listing(body: dict[str, Any]) -> dict[str, Any]:
            rows = await m.list_instances()
            offset = _int(body, "offset")
            return {"rows": rows[offset : offset + PAGE], "total": len(rows)}

        async def create(body: dict[str, Any]) -> dict[str, Any]:
            return await m.create_instance(
                seed=_int(body, "seed"), world=body.get("world"), agents=_int(body, "agents"),
                instance_id=body.get("id"), rate=body.get("rate", "default"),
            )  # fmt: skip

        async def flush(body: dict[str, Any]) -> dict[str, Any]:
            await m.flush(_ids(body))
            return {}

        async def start(body: dict[str, Any]) -> dict[str, Any]:
            await m.start(_ids(body))
            return {}

        return {
            "default": lambda _body: _wrapped(m.default_instance()),
            "list": listing,
            "create": create,
            "describe": lambda body: m.describe(_id(body)),
            "delete": lambda body: m.delete_instance(_id(body)),
            "god": lambda body: m.execute(parse_command(body.get("command"))),
            "preview_merge": lambda body: m.preview_merge(MergeInstances.model_validate(body.get("command"))),
            "flush": flush,
            "start": start,
            "failures": lambda _body: m.failures(),
        }

    async def start(self) -> None:
        for op, handler in self.ops().items():
            self._subs.append(await self.bus.serve(meta_subject(op), self._respond(handler)))

    async def handle(self, op: str, payload: bytes, extra: dict[str, Op] | None = None) -> bytes:
        """One call as the bus would bring it (a cluster's host is handed its calls directly); ``extra``: ops of the
        caller's own beside the puppet master's."""
        handler = {**self.ops(), **(extra or {})}.get(op)
        if handler is None:
            raise InputError(f"the puppet master has no op {op!r}")
        return await self._respond(handler)(payload)

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs.clear()

    def _respond(self, handler: Op) -> Callable[[bytes], Awaitable[bytes]]:
        async def respond(payload: bytes) -> bytes:
            body = decode(payload)
            identity = _identity(body)
            rid, name = checked_request_id(body.get(RID)), None if identity is None else identity.name
            with adopted(identity, body.get(RID)) as action, bind(request_id=rid, identity=name):  # its logs too
                reply = await handler(body)
            return encode({"reply": reply, "audit": _refinements(action)})

        return respond


async def _wrapped(value: Awaitable[str]) -> dict[str, Any]:
    return {"instance": await value}


class RemotePuppetMaster:
    """The puppet master of another process (``soulfra serve meta``), asked over the bus."""

    def __init__(
        self,
        bus: Bus,
        store: Store,
        *,
        rules: RuleSet | None = None,
        timeout: float = 30.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.rules = rules or RuleSet()
        self.timeout = timeout
        self.metrics = metrics  # each call timed as a bus request to the platform "meta"

    async def call(self, op: str, body: dict[str, Any] | None = None) -> Any:
        action = current_action()
        sent = dict(body or {})
        if action is not None:
            sent[BY] = action.identity.to_json()
            sent[RID] = action.request_id
        timed: AbstractContextManager[None] = (
            nullcontext() if self.metrics is None else self.metrics.bus_request("meta", op)
        )
        with timed:
            raw = await self.send(op, sent)
        answer = decode(raw)
        if action is not None:
            _refine(action, answer.get("audit") or {})
        return answer.get("reply")

    async def send(self, op: str, body: dict[str, Any]) -> bytes:
        """One call on the wire: its body (with who asks, and for which request) out, the puppet master's reply in."""
        try:
            return await self.bus.request(meta_subject(op), encode(body), timeout=self.timeout)
        except NoRespondersError:
            raise NoRespondersError(
                "the puppet master does not answer on the bus: is `soulfra serve meta` running on this NATS server?"
            ) from None

    async def default_instance(self) -> str:
        return str((await self.call("default"))["instance"])

    async def list_instances(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            page = await self.call("list", {"offset": len(rows)})
            rows += page["rows"]
            if not page["rows"] or len(rows) >= page["total"]:
                return rows

    async def create_instance(
        self, *, seed: int, world: str | None, agents: int, instance_id: str | None, rate: Rate
    ) -> dict[str, Any]:
        body = {"seed": seed, "world": world, "agents": agents, "id": instance_id, "rate": rate}
        reply: dict[str, Any] = await self.call("create", body)
        return reply

    async def describe(self, instance_id: str) -> dict[str, Any]:
        reply: dict[str, Any] = await self.call("describe", {"id": instance_id})
        return reply

    async def delete_instance(self, instance_id: str) -> dict[str, Any]:
        reply: dict[str, Any] = await self.call("delete", {"id": instance_id})
        return reply

    async def execute(self, command: Any) -> dict[str, Any]:
        reply: dict[str, Any] = await self.call("god", {"command": command.model_dump(mode="json")})
        return reply

    async def preview_merge(self, command: MergeInstances) -> dict[str, Any]:
        reply: dict[str, Any] = await self.call("preview_merge", {"command": command.model_dump(mode="json")})
        return reply

    async def flush(self, instance_ids: Collection[str]) -> None:
        await self.call("flush", {"ids": sorted(instance_ids)})

    async def start(self, instance_ids: Collection[str]) -> None:
        await self.call("start", {"ids": sorted(instance_ids)})

    async def failures(self) -> dict[str, dict[str, Any]]:
        reply: dict[str, dict[str, Any]] = await self.call("failures")
        return reply


# -- the wire ------------------------------------------------------------------------------------------------------


def _int(body: dict[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{key!r} must be a whole number, 0 or more")
    return value


def _id(body: dict[str, Any]) -> str:
    value = body.get("id")
    if not isinstance(value, str):
        raise InputError("'id' must name an instance")
    return value


def _ids(body: dict[str, Any]) -> list[str]:
    value = body.get("ids")
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise InputError("'ids' must be a list of instance ids")
    return value


def _identity(body: dict[str, Any]) -> Identity | None:
    """Who the request says it comes from (``_by``), or None: the puppet master then acts as itself."""
    by = body.get(BY)
    if by is None:
        return None
    try:
        scope = by.get("instances")
        return Identity(
            name=str(by["name"])[:100], role=check_role(str(by["role"])), kind=str(by.get("kind", "token")),
            instances=None if scope is None else frozenset(str(i) for i in scope),
        )  # fmt: skip
    except (AttributeError, KeyError, TypeError, SoulfraError):
        raise InputError(f"{BY} must be an identity: name, role, kind and instances") from None


def _refinements(action: Action | None) -> dict[str, Any]:
    if action is None:
        return {}
    return {
        "action": action.action or None, "instance_id": action.instance_id, "instances": sorted(action.instances),
        "detail": action.detail,
    }  # fmt: skip


def _refine(action: Action, audit: dict[str, Any]) -> None:
    if not audit:
        return
    action.refine(
        audit.get("action"), instance_id=audit.get("instance_id"), instances=audit.get("instances") or (),
        detail=audit.get("detail"),
    )  # fmt: skip
