"""Between a store and a package: an instance's history as a bundle (export), a verified bundle stored as a new
instance (import), and offline edits of a bundle (``soulfra package edit``) that ``package apply`` sends back down.

A bundle carries the state its own history starts from (a fork's parent state at the fork is materialised, so a
package stands alone), its inputs and traces, and its head state. Import writes everything in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from soulfra.durable import start_tick, state_at
from soulfra.errors import (
    CodecError,
    ConflictError,
    HistoryIntegrityError,
    InputError,
    NotFoundError,
    PackageError,
    ValidationFailedError,
)
from soulfra.meta.lineage import lineage, record_json
from soulfra.meta.package import InstanceBundle
from soulfra.security.audit import current_action
from soulfra.security.permissions import PermissionValidator, RuleSet, enforce
from soulfra.store.ports import InstanceRecord, StateFrame, Store
from soulfra.world import World, decode_state, encode_state, input_to_json, parse_input
from soulfra.world.encoding import encoded_hash, state_agents
from soulfra.world.inputs import Input

__all__ = [
    "EDIT_KINDS", "apply_edits", "bundle_for", "edit_bundle", "import_bundle", "import_bundles", "replay_bundle",
]  # fmt: skip

EDIT_KINDS = ("personality", "ritual", "vibe", "rewrite")
Progress = Callable[[int, int], None]


def bundle_for(store: Store, instance_id: str, *, rules: RuleSet | None = None) -> InstanceBundle:
    """One instance's history as a bundle, carrying the rules it runs under (``rules`` are the server's, under the
    instance's own): refused when its licence forbids export (LicenceError)."""
    record = store.instances.get(instance_id)
    rules = enforce(store, instance_id, "export", rules)
    base_tick, base_raw = _base_raw(store, record)
    head_raw = encode_state(state_at(store, instance_id, record.head_tick))
    inputs = [{"seq": s.seq, **input_to_json(s.input)} for s in store.inputs.read(instance_id)]
    traces = [{"tick": t.tick, "kind": t.kind, "data": t.data} for t in store.rituals.read(instance_id)]
    instance = {
        "id": record.id, "name": record.name, "seed": record.seed, "genesis_hash": record.genesis_hash,
        "world": record.world, "base_tick": base_tick, "base_hash": encoded_hash(base_raw),
        "head_tick": record.head_tick, "head_hash": encoded_hash(head_raw), "parent_id": record.parent_id,
        "fork_tick": record.fork_tick,
        "merge_parent_id": record.merge_parent_id,
    }  # fmt: skip
    ancestry = []
    for point in lineage(store, instance_id)[1:]:
        ancestor = store.instances.get(point.instance)
        ancestry.append({k: v for k, v in record_json(ancestor).items() if k in _LINEAGE_KEYS} | {"tick": point.tick})
    return InstanceBundle(
        instance=instance,
        lineage=ancestry,
        base_state=base_raw,
        head_state=head_raw,
        inputs=inputs,
        traces=traces,
        config={"protocol": rules.to_json()},
        edits=[],
    )


_LINEAGE_KEYS = ("id", "name", "parent_id", "fork_tick", "merge_parent_id")


def bundle_rules(bundle: InstanceBundle, default: RuleSet | None) -> RuleSet:
    """The rules an imported instance runs under: those its package carries, over the importing server's."""
    carried = bundle.config.get("protocol")
    if carried is None:
        return default or RuleSet()
    try:
        return RuleSet.from_json(carried, base=default)
    except InputError as exc:
        raise PackageError(
            f"the package's protocol rules for {bundle.instance['id']} are invalid: {exc.detail}"
        ) from None


def _base_raw(store: Store, record: InstanceRecord) -> tuple[int, bytes]:
    """Where the instance's own history starts, as state bytes: its first snapshot (genesis, a merge, an import),
    or for a fork its parent's state at the fork, materialised so that the package stands alone."""
    start = start_tick(record)
    snapshots = store.snapshots.list_snapshots(record.id)
    if snapshots and snapshots[0].tick == start:
        return start, store.snapshots.load_raw(snapshots[0].id)[1]
    if record.parent_id is None:
        raise HistoryIntegrityError(f"instance {record.id} has no snapshot at tick {start} to export from")
    return start, encode_state(state_at(store, record.id, start))


def replay_bundle(bundle: InstanceBundle, *, on_tick: Progress | None = None) -> str:
    """The state hash a bundle's history replays to (from its base state through its inputs to its head tick)."""
    world = World(decode_state(bundle.base_state))
    start, head_tick = world.tick, int(bundle.instance["head_tick"])

    def ticked(tick: int) -> None:
        if on_tick is not None:
            on_tick(tick - start, head_tick - start)

    try:
        world.run_to(head_tick, _inputs(bundle), on_tick=ticked)
    except InputError as exc:
        raise PackageError(f"the history of {bundle.instance['id']} does not replay: {exc.detail}") from None
    return world.state_hash()


def _inputs(bundle: InstanceBundle) -> list[Input]:
    items = []
    for n, obj in enumerate(bundle.inputs):
        body = {k: v for k, v in obj.items() if k != "seq"}
        try:
            items.append(parse_input(body))
        except Exception as exc:  # an InputError names the field; the package is what is wrong
            raise PackageError(f"input {n} of {bundle.instance['id']} is not a valid input: {exc}") from None
    return items


def import_bundle(
    store: Store,
    bundle: InstanceBundle,
    *,
    as_id: str | None = None,
    verify_replay: bool = False,
    rules: RuleSet | None = None,
    on_tick: Progress | None = None,
) -> dict[str, Any]:
    """Store a verified bundle as a new instance; see ``import_bundles``."""
    return import_bundles(store, [bundle], as_id=as_id, verify_replay=verify_replay, rules=rules, on_tick=on_tick)[0]


def import_bundles(
    store: Store,
    bundles: Sequence[InstanceBundle],
    *,
    as_id: str | None = None,
    verify_replay: bool = False,
    rules: RuleSet | None = None,
    on_tick: Progress | None = None,
) -> list[dict[str, Any]]:
    """Store verified bundles as new instances (no parent here: each one's lineage is kept in its ``world``): every
    check first (ids free, the protocol's rules, with ``verify_replay`` each history replaying to its head hash),
    then all of them in one transaction, so that a refusal writes nothing. Not audited here: the caller's action
    (the API request, the CLI command) is told which instances it imported."""
    if as_id is not None and len(bundles) != 1:
        raise InputError(f"an import under another id takes one instance, not {len(bundles)}")
    prepared = [
        _prepared(store, bundle, as_id or str(bundle.instance["id"]), verify_replay, rules, on_tick)
        for bundle in bundles
    ]
    ids = [record.id for record, _, _ in prepared]
    if len(set(ids)) != len(ids):
        raise PackageError(f"the package holds instance {sorted(i for i in ids if ids.count(i) > 1)[0]} twice")
    results = []
    with store.transaction():
        for record, bundle, inputs in prepared:
            meta, base_tick = bundle.instance, int(bundle.instance["base_tick"])
            store.instances.create(record)
            store.snapshots.save_raw(
                record.id, bundle.base_state, tick=base_tick, type="import", frame=_frame(bundle, meta["base_hash"])
            )
            if record.head_tick != base_tick:
                store.snapshots.save_raw(
                    record.id, bundle.head_state, tick=record.head_tick, type="import",
                    frame=_frame(bundle, meta["head_hash"]),
                )  # fmt: skip
            if inputs:
                store.inputs.append(record.id, inputs)
            store.rituals.record_many(record.id, bundle.traces)  # the agents table is written once it runs
            if "protocol" in bundle.config:  # the rules (the licence above all) travel with the world
                store.instances.set_rules(record.id, bundle_rules(bundle, rules).to_json())
            results.append({
                "id": record.id, "from": meta["id"], "head_tick": record.head_tick, "state_hash": meta["head_hash"],
                "inputs": len(inputs), "replayed": verify_replay or bundle.replayed,
            })  # fmt: skip
    action = current_action()
    if action is not None:
        imported = [{"id": r["id"], "from": r["from"], "head_tick": r["head_tick"]} for r in results]
        action.refine(
            instances=[r["id"] for r in results], detail={"imported": imported, "verified_replay": verify_replay}
        )
    return results


def _frame(bundle: InstanceBundle, state_hash: str) -> StateFrame | None:
    """The package's frame of the state of ``state_hash``, if it carried that state (an edited head it did not)."""
    data = bundle.frames.get(state_hash)
    return None if data is None else StateFrame(state_hash=state_hash, data=data)


def _prepared(
    store: Store,
    bundle: InstanceBundle,
    instance_id: str,
    verify_replay: bool,
    rules: RuleSet | None,
    on_tick: Progress | None,
) -> tuple[InstanceRecord, InstanceBundle, list[Input]]:
    meta = bundle.instance
    try:
        store.instances.get(instance_id)
    except NotFoundError:
        pass
    else:
        raise ConflictError(f"instance {instance_id!r} already exists here; import it under another id (--as)")
    # Both states are the exact bytes the trusted signer hashed. The protocol's checks look at the agents alone,
    # which never change within a history: of the base, only its tick and agent ids are decoded (a whole decode
    # was most of an import's time); each state is decoded in full when it is read, checked against its hash.
    try:
        base_tick, agents = state_agents(bundle.base_state)
    except CodecError as exc:
        raise PackageError(f"the base state of {meta['id']} is not a valid world state: {exc.detail}") from exc
    head_tick = int(meta["head_tick"])
    if base_tick != int(meta["base_tick"]) or head_tick < base_tick:
        raise PackageError(f"the ticks of {meta['id']} (base {base_tick}, head {head_tick}) do not fit its manifest")
    validator = PermissionValidator(bundle_rules(bundle, rules), store)
    problems = [f"rule {v.rule!r}: {v.detail}" for v in validator.validate_agents(agents).violations]
    inputs = _inputs(bundle)
    for item in inputs:
        verdict = validator.validate("input", instance_id, {"input": input_to_json(item)})
        problems += [f"rule {v.rule!r}: {v.detail}" for v in verdict.violations]
    if problems:
        raise ValidationFailedError(f"the protocol refuses {meta['id']}: " + "; ".join(sorted(set(problems))[:5]))
    if verify_replay and not bundle.replayed:  # a compact package's head was replayed as it was read
        replayed = replay_bundle(bundle, on_tick=on_tick)
        if replayed != meta["head_hash"]:
            raise PackageError(
                f"the history of {meta['id']} replays to {replayed}, not the head hash {meta['head_hash']} it claims"
            )
    # a state the package carried was hashed as it was read (its frame is kept under that hash)
    base_hash = meta["base_hash"] if meta["base_hash"] in bundle.frames else encoded_hash(bundle.base_state)
    record = InstanceRecord(
        id=instance_id,
        name=str(meta["name"]),
        seed=int(meta["seed"]),
        genesis_hash=base_hash,
        world={**dict(meta["world"]), "imported": {"from": meta["id"], "lineage": bundle.lineage,
                                                   "edits": len(bundle.edits)}},
        fork_tick=base_tick or None,
        head_tick=head_tick,
    )  # fmt: skip
    return record, bundle, inputs


# -- offline edits ---------------------------------------------------------------------------------------------


def edit_bundle(
    bundle: InstanceBundle, edits: Sequence[dict[str, Any]], *, on_tick: Progress | None = None
) -> InstanceBundle:
    """A new bundle with ``edits`` made: personality, ritual and vibe become inputs at the head tick (they act
    from the next tick); a rewrite drops or adds inputs from a tick and replays to the same head (``on_tick``
    hears ``(ticks replayed, of total)``). Each edit is recorded in the bundle's ``edits``."""
    inputs = list(bundle.inputs)
    head_tick = int(bundle.instance["head_tick"])
    base_tick = int(bundle.instance["base_tick"])
    recorded: list[dict[str, Any]] = []
    rewritten = False
    checker = World(decode_state(bundle.head_state))
    for n, edit in enumerate(edits):
        kind = edit.get("op")
        if kind not in EDIT_KINDS:
            raise PackageError(f"edit {n}: unknown op {kind!r}; expected one of {', '.join(EDIT_KINDS)}")
        if kind == "rewrite":
            inputs = _rewrite(inputs, edit, base_tick, head_tick, n, checker)
            rewritten = True
            recorded.append(dict(edit))
            continue
        body = {k: v for k, v in edit.items() if k != "op"}
        item = parse_input({"type": "intervene", "kind": kind, "tick": head_tick, **body})
        checker.check(item)
        inputs.append({"seq": _next_seq(inputs), **input_to_json(item)})
        recorded.append({"op": kind, "input": {k: v for k, v in input_to_json(item).items() if k != "tick"}})
    instance = dict(bundle.instance)
    head_state = bundle.head_state
    if rewritten:
        world = World(decode_state(bundle.base_state))
        start = world.tick
        ticked = None if on_tick is None else lambda tick: on_tick(tick - start, head_tick - start)
        world.run_to(head_tick, _inputs(replace(bundle, inputs=inputs)), on_tick=ticked)
        head_state = encode_state(world.state)
        instance["head_hash"] = world.state_hash()
    return replace(bundle, instance=instance, inputs=inputs, head_state=head_state, edits=[*bundle.edits, *recorded])


def _next_seq(inputs: list[dict[str, Any]]) -> int:
    return max((int(i["seq"]) for i in inputs), default=0) + 1


def _rewrite(
    inputs: list[dict[str, Any]], edit: dict[str, Any], base_tick: int, head_tick: int, n: int, checker: World
) -> list[dict[str, Any]]:
    start = edit.get("from_tick")
    if not isinstance(start, int) or not base_tick <= start <= head_tick:
        raise PackageError(f"edit {n}: a rewrite needs from_tick between {base_tick} and {head_tick}")
    drop = set(edit.get("drop", []))
    known = {int(i["seq"]) for i in inputs if int(i["tick"]) >= start}
    if drop - known:
        raise PackageError(f"edit {n}: no input with seq {sorted(drop - known)} at or after tick {start}")
    kept = [i for i in inputs if int(i["seq"]) not in drop]
    for added in edit.get("add", []):
        if not isinstance(added, dict):
            raise PackageError(f"edit {n}: an added input must be a JSON object, not {added!r}")
        try:
            item = parse_input({"tick": start, **added})
            checker.check(item)  # the agents are the same at every tick
        except InputError as exc:
            raise PackageError(f"edit {n}: an added input is not valid: {exc.detail}") from None
        if item.tick < start:
            raise PackageError(f"edit {n}: an added input is for tick {item.tick}, before the rewrite at {start}")
        kept.append({"seq": _next_seq(kept), **input_to_json(item)})
    # The log stays in seq order (the order inputs arrived in, and of those at one tick, the order they apply in),
    # so an input added at the rewrite's tick comes after the kept ones stamped for later ticks.
    kept.sort(key=lambda i: int(i["seq"]))
    return kept


def apply_edits(bundle: InstanceBundle) -> list[dict[str, Any]]:
    """The god commands that send a package's edits down into its live instance (``soulfra package apply``)."""
    instance = str(bundle.instance["id"])
    commands: list[dict[str, Any]] = []
    for edit in bundle.edits:
        if edit.get("op") == "rewrite":
            commands.append({
                "type": "PUPPET_MASTER_INTERVENTION", "instance": instance, "kind": "rewrite",
                "from_tick": edit["from_tick"], "drop": list(edit.get("drop", [])), "add": list(edit.get("add", [])),
            })  # fmt: skip
            continue
        body = dict(edit["input"])
        kind = body.pop("kind")
        body.pop("type", None)
        if kind == "personality":
            commands.append({"type": "PUPPET_MASTER_INTERVENTION", "instance": instance, "kind": kind,
                             "agent": body["agent"], "traits": body["traits"]})  # fmt: skip
        elif kind == "ritual":
            commands.append({"type": "PUPPET_MASTER_INTERVENTION", "instance": instance, "kind": kind,
                             "name": body["name"], "participants": body["participants"],
                             "blessed": body["blessed"]})  # fmt: skip
        else:
            commands.append({"type": "PUPPET_MASTER_INTERVENTION", "instance": instance, "kind": kind,
                             "condition": body["condition"], "intensity": body["intensity"],
                             "duration": body["duration"]})  # fmt: skip
    return commands
