"""``soulfra lease log``: the lease log of a database as a table or JSON, of every lease or of one instance; a
history where two epochs of one lease were held at once exits 65 with one line naming them; a database that is not
there exits 66."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from soulfra.durable import DurableWorld
from soulfra.store import SqlStore
from soulfra.world import DEFAULT_WORLD

from .support import one_error_line, parsed, soulfra


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A database where world ``w`` ran to tick 2 and was let go, then was taken again; ``v`` is held."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = SqlStore.open(url)
    try:
        durable = DurableWorld.create(store, 5, DEFAULT_WORLD, instance_id="w")
        durable.step()
        durable.step()
        durable.flush()
        store.leases.release("w")
        store.leases.acquire("w")
        store.leases.acquire("v")
        done = soulfra("lease", "log", "--db", url, "--json")  # read while held: the reader takes nothing
    finally:
        store.close()
    held = parsed(done)
    assert [(e["key"], e["epoch"], e["ended"]) for e in held["epochs"]] == [("v", 1, None), ("w", 1, "released"),
                                                                             ("w", 2, None)]  # fmt: skip
    return url


def test_the_log_reads_as_json_and_as_a_table(db: str) -> None:
    out = parsed(soulfra("lease", "log", "--db", db, "--instance", "w", "--json"))
    assert out["overlaps"] == []
    assert [(e["epoch"], e["ended"], e["last_tick"]) for e in out["epochs"]] == [(1, "released", 2), (2, "released", 2)]
    first = out["epochs"][0]
    assert first["acquired_at"] <= first["ended_at"] <= out["epochs"][1]["acquired_at"]
    table = soulfra("lease", "log", "--db", db)
    assert table.returncode == 0, table.stderr
    assert "lease log (3 epochs)" in table.stdout
    assert "released" in table.stdout
    assert parsed(soulfra("lease", "log", "--db", db, "--instance", "nothing", "--json")) == {
        "epochs": [], "overlaps": []
    }  # fmt: skip


def test_two_epochs_held_at_once_exit_65_naming_them(db: str) -> None:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:  # as if epoch 1 had never ended
        conn.execute("UPDATE lease_log SET ended = NULL, ended_at = NULL WHERE key = 'w' AND epoch = 1")
    line = one_error_line(soulfra("lease", "log", "--db", db, "--json"), 65)
    assert line.startswith("soulfra: error: w: epoch 1 (pid ")
    assert "was never ended, after epoch 2 (pid " in line


def test_a_database_that_is_not_there_exits_66(tmp_path: Path) -> None:
    line = one_error_line(soulfra("lease", "log", "--db", f"sqlite:///{tmp_path / 'none.db'}"), 66)
    assert "no database at" in line
