"""``verify`` checks lineage on every backend: a fork names its parent at a tick the parent's own history holds, with
the state it was made from. Forks taken before a revert, after its tick, move with the abandoned branch and pass;
a lineage forged in the database (a fork pointed back at the reverted instance, whose timeline differs there or
does not reach that far) is a mismatch, and ``soulfra verify`` exits 65."""

from __future__ import annotations

import json

import pytest

from soulfra.cli import main
from soulfra.durable import DurabilitySettings, DurableWorld, state_at
from soulfra.meta.lineage import fork_record, revert_record
from soulfra.store import Store
from soulfra.verification import lineage_mismatches, verify
from soulfra.world import DEFAULT_WORLD, Whisper, state_hash

from .conftest import Backend, SqlBackend

SEED = 11
SETTINGS = DurabilitySettings(snapshot_every=10)
REVERT_TICK = 25
FIRST_HEAD = 45  # the timeline that is abandoned
SECOND_HEAD = 38  # the timeline after the revert: shorter, and without the whisper at tick 28
FORKS = {"f": 35, "g": 42}  # taken from the first timeline; g's tick is past the second timeline's head


def run_to(world: DurableWorld, tick: int) -> None:
    while world.tick < tick:
        world.step()
    world.flush()


def history(store: Store) -> None:
    """``root`` runs to FIRST_HEAD with a whisper at 28; f and g fork from it; ``root`` is reverted to
    REVERT_TICK (its later history becomes ``root-branch``) and runs a different timeline to SECOND_HEAD."""
    root = DurableWorld.create(store, SEED, DEFAULT_WORLD, instance_id="root", settings=SETTINGS)
    root.submit([Whisper(tick=28, target="*", text="only on the timeline that will be abandoned")])
    run_to(root, FIRST_HEAD)
    for child, tick in FORKS.items():
        made_from = state_hash(state_at(store, "root", tick))
        fork_record(store, store.instances.get("root"), tick=tick, child_id=child, kind="fork", genesis_hash=made_from)
        run_to(DurableWorld.open(store, child, settings=SETTINGS), tick + 4)
    revert_record(store, store.instances.get("root"), tick=REVERT_TICK, branch_id="root-branch")
    run_to(DurableWorld.open(store, "root", settings=SETTINGS), SECOND_HEAD)


def test_forks_that_moved_with_the_abandoned_branch_verify(store: Store) -> None:
    history(store)
    for child, tick in FORKS.items():
        record = store.instances.get(child)
        assert (record.parent_id, record.fork_tick) == ("root-branch", tick)
        assert lineage_mismatches(store, child) == []
        assert verify(store, child).ok
    for instance in ("root", "root-branch"):
        assert verify(store, instance).ok


FORGERIES = [
    ("f", "lineage: its parent root at tick 35 is not the state it was made from"),
    ("g", f"lineage: its parent root holds ticks 0 to {SECOND_HEAD}, not 42"),
]


@pytest.mark.parametrize(("child", "finding"), FORGERIES)
def test_a_fork_forged_back_onto_the_reverted_timeline_is_a_mismatch(
    store: Store, backend: Backend, child: str, finding: str
) -> None:
    history(store)
    backend.forge_parent(child, "root")

    report = verify(store, child)
    assert not report.ok
    assert [(m.tick, m.what) for m in report.mismatches] == [(FORKS[child], finding)]
    assert report.mismatches[0].stored == store.instances.get(child).genesis_hash


@pytest.mark.parametrize(("child", "finding"), FORGERIES)
def test_soulfra_verify_of_a_forged_lineage_exits_65(
    sql_backend: SqlBackend, capsys: pytest.CaptureFixture[str], child: str, finding: str
) -> None:
    """SQL only: the CLI opens a database by its URL."""
    history(sql_backend.open())
    sql_backend.forge_parent(child, "root")

    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["verify", "--db", sql_backend.url, "--instance", child, "--json"])
    assert exited.value.code == 65
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is False
    assert finding in [m["what"] for m in printed["mismatches"]]
