"""``soulfra up --db`` keeps its worlds in the database it is given: on PostgreSQL a whisper the server acknowledged
is there after a restart, the history verifies, nothing goes to a SQLite file, and a database that is not there is
one line saying how to create it."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from soulfra.store import SqlStore

from .support import free_port, one_error_line, running_server, soulfra_at

pytestmark = pytest.mark.postgres


def test_a_server_on_postgresql_keeps_what_it_acknowledged_across_a_restart(pg_url: str, tmp_path: Path) -> None:
    with running_server(tmp_path, extra=["--db", pg_url]) as server:
        with server.client() as api:
            default = api.get("/api/instances").json()["default"]
            ack = api.post(f"/api/instances/{default}/whispers", json={"text": "kept in postgres", "target": "arty"})
            assert ack.status_code == 202, ack.text
        assert "(database postgresql" in server.output()  # where it keeps the worlds, announced
    assert not (tmp_path / "data" / "soulfra.db").exists()  # nothing went to the data directory's SQLite file
    store = SqlStore.open(pg_url)
    try:
        logged = [s.input for s in store.inputs.read(default)]
        assert any(getattr(i, "text", "") == "kept in postgres" for i in logged)
        assert [e.action for e in store.audit.read(instance_id=default) if e.action.endswith("/whispers")] == [
            "POST /api/instances/{instance_id}/whispers"
        ]
    finally:
        store.close()
    with running_server(tmp_path, extra=["--db", pg_url]) as again, again.client() as api:
        assert api.get("/api/instances").json()["default"] == default  # the same world, continued
    verified = soulfra_at(tmp_path / "home", "verify", "--db", pg_url, "--instance", default)
    assert verified.returncode == 0, verified.stderr


def test_a_missing_postgresql_database_is_one_line_saying_how_to_create_it(pg_url: str, tmp_path: Path) -> None:
    base, _, query = pg_url.partition("?")
    missing = base.rsplit("/", 1)[0] + "/soulfra_nowhere" + (f"?{query}" if query else "")
    done = soulfra_at(tmp_path / "home", "up", "--db", missing, "--port", str(free_port()))
    assert "createdb soulfra_nowhere" in one_error_line(done, 69)
    gc.collect()  # the socket it bound is closed, not left for the collector to find (pytest reports that here)
