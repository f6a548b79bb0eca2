"""``soulfra audit verify`` and ``soulfra audit list`` on `soulfra up`'s data directory: a log that holds verifies
(exit 0, its rows and signed head named); a tampered one exits 65 with one line naming the first bad row; an edited
head file is reported; ``list`` reads the rows back, filtered, as a table or JSON."""

from __future__ import annotations

import getpass
import json
import sqlite3
from pathlib import Path

import pytest

from soulfra.meta.keys import KeyRing
from soulfra.security.audit import AuditRecorder
from soulfra.security.identity import Identity, process_identity
from soulfra.store import SqlStore

from .support import one_error_line, parsed, soulfra

ALICE = Identity(name="alice", role="puppet-master")


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`soulfra up`'s data directory in the working directory, with five audited actions, its head signed by the
    installation at ``tmp_path / "home"``."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "soulfra-data"
    folder.mkdir()
    store = SqlStore.open(f"sqlite:///{folder / 'soulfra.db'}")
    try:
        signer = KeyRing(tmp_path / "home").signer()
        recorder = AuditRecorder(store, signer=signer, head_file=folder / "soulfra.db.audit-head.json", sign_every=3600)
        recorder.record(ALICE, "god.clone_instance", instance_id="b", instances=["a"], source="127.0.0.1")
        recorder.record(ALICE, "god.merge_instances", instances=["a", "b"], outcome="merge_failed")
        recorder.record(process_identity("freeze-timer"), "god.thaw_time", instances=["a"])
        recorder.record(ALICE, "instance.delete", instance_id="b")
        recorder.record(ALICE, "god.freeze_time", instances=["a"])
        recorder.sign_head()
    finally:
        store.close()
    return folder


def test_an_untouched_log_verifies(data: Path, tmp_path: Path) -> None:
    done = soulfra("audit", "verify", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("audit log verified: 5 rows, head ")
    assert done.stdout.strip().endswith("(signed at row 5)")
    report = parsed(soulfra("audit", "verify", "--db", f"sqlite:///{data / 'soulfra.db'}", "--json",
                            home=tmp_path / "home"))  # fmt: skip
    assert (report["ok"], report["rows"], report["signed"]["signature_checked"]) == (True, 5, True)


def test_a_tampered_row_exits_65_naming_it(data: Path, tmp_path: Path) -> None:
    with sqlite3.connect(data / "soulfra.db") as conn:
        conn.execute("UPDATE audit_log SET outcome = 'ok' WHERE id = 2")
    line = one_error_line(soulfra("audit", "verify", home=tmp_path / "home"), 65)
    assert (
        line == "soulfra: error: audit log row 2: does not match its hash: it was edited, or moved from another place"
    )


def test_a_truncated_tail_exits_65_naming_the_first_missing_row(data: Path, tmp_path: Path) -> None:
    with sqlite3.connect(data / "soulfra.db") as conn:
        (last_hash,) = conn.execute("SELECT row_hash FROM audit_log WHERE id = 3").fetchone()
        conn.execute("DELETE FROM audit_log WHERE id > 3")
        conn.execute("DELETE FROM audit_heads")
        conn.execute("UPDATE audit_chain SET last_id = 3, last_hash = ?", (last_hash,))
    line = one_error_line(soulfra("audit", "verify", home=tmp_path / "home"), 65)
    assert "audit log row 4: is missing" in line and "head file" in line


def test_an_edited_head_file_is_reported(data: Path, tmp_path: Path) -> None:
    head = data / "soulfra.db.audit-head.json"
    head.write_text(json.dumps({**json.loads(head.read_text()), "row_id": 4}))
    line = one_error_line(soulfra("audit", "verify", "--head", str(head), home=tmp_path / "home"), 65)
    assert "row 4" in line and "does not verify" in line


def test_another_installation_does_not_vouch_for_the_head(data: Path, tmp_path: Path) -> None:
    KeyRing(tmp_path / "elsewhere").signer()
    line = one_error_line(soulfra("audit", "verify", home=tmp_path / "elsewhere"), 65)
    assert "does not verify with this installation's key" in line
    public = KeyRing(tmp_path / "home").export_public(tmp_path / "home.pub")  # verified elsewhere with its key
    done = soulfra("audit", "verify", "--public-key", str(public), home=tmp_path / "elsewhere")
    assert done.returncode == 0 and "(signed at row 5)" in done.stdout
    unchecked = soulfra("audit", "verify", home=tmp_path / "keyless")
    assert unchecked.returncode == 0 and "signature not checked" in unchecked.stdout


def test_list_reads_the_rows_filtered(data: Path, tmp_path: Path) -> None:
    rows = parsed(soulfra("audit", "list", "--json", home=tmp_path / "home"))["entries"]
    assert [r["action"] for r in rows][:2] == ["god.clone_instance", "god.merge_instances"]
    assert rows[0]["actor"] == "alice" and rows[0]["role"] == "puppet-master" and rows[0]["source"] == "127.0.0.1"
    refused = parsed(soulfra("audit", "list", "--outcome", "merge_failed", "--json", home=tmp_path / "home"))
    assert [r["id"] for r in refused["entries"]] == [2]
    by_timer = parsed(soulfra("audit", "list", "--actor", "freeze-timer", "--action", "god.", "--json"))
    assert [r["id"] for r in by_timer["entries"]] == [3]
    of_b = parsed(soulfra("audit", "list", "--instance", "b", "--after", "1", "--limit", "5", "--json"))
    assert [r["id"] for r in of_b["entries"]] == [2, 4]
    table = soulfra("audit", "list", home=tmp_path / "home")
    assert table.returncode == 0 and "god.merge_instances" in table.stdout and "merge_failed" in table.stdout


def test_a_missing_database_is_not_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "soulfra-data").mkdir()
    one_error_line(soulfra("audit", "verify", home=tmp_path / "home"), 66)
    assert not (tmp_path / "soulfra-data" / "soulfra.db").exists()


def test_worlds_run_from_the_cli_are_audited_as_its_user(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    for _ in range(2):
        assert soulfra("run", "--db", db, "--seed", "5", "--ticks", "3").returncode == 0
    rows = parsed(soulfra("audit", "list", "--db", db, "--json"))["entries"]
    assert [r["action"] for r in rows] == ["instance.create", "instance.run"]
    assert {r["actor"] for r in rows} == {f"cli:{getpass.getuser()}"} and {r["role"] for r in rows} == {"admin"}
    assert [(r["detail"]["from_tick"], r["detail"]["to_tick"]) for r in rows] == [(0, 3), (3, 6)]
    assert rows[0]["instance_id"] == rows[1]["instance_id"] and rows[0]["detail"]["seed"] == 5
    assert soulfra("audit", "verify", "--db", db, home=tmp_path / "home").returncode == 0
