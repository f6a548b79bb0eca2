"""``soulfra bench cluster --quick --json`` end to end, small: a local two-node Ray cluster on the test's own NATS and
a database of the run's own on the test's PostgreSQL server, a dozen worlds, one node lost. The figures are well
formed and the run's invariants hold (every world of the lost node ran again, no acknowledged whisper was lost,
``soulfra verify`` passed); how fast is the benchmark's to say, not the test's. The run drops its database."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sqlalchemy as sa

from .topology import require_ray

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.cluster,
    pytest.mark.serial,  # alone: a Ray cluster would slow every test beside it, and they it
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.xdist_group("cluster"),
]

WORLDS = 12
KEYS = {
    "nodes", "instances", "ticks_kept", "host_rss_mib", "kills", "worlds_on_lost_node", "recovered",
    "failover_p50_s", "failover_max_s", "failover_rounds", "acknowledged_inputs", "lost_acknowledged_inputs",
    "verified", "verify_failures", "load_average", "targets",
}  # fmt: skip


def _bench_databases(url: str) -> set[str]:
    engine = sa.create_engine(sa.engine.make_url(url).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as conn:
            query = "SELECT datname FROM pg_database WHERE datname LIKE 'soulfra_bench_cluster_%'"
            return set(conn.execute(sa.text(query)).scalars())
    finally:
        engine.dispose()


def test_a_quick_run_prints_its_figures_and_loses_nothing(pg_url: str, private_nats: str) -> None:
    require_ray()
    # the server only: the run makes a database of its own there (the test's schema lives in the test's database)
    server = sa.engine.make_url(pg_url).set(query={}).render_as_string(hide_password=False)
    before = _bench_databases(server)
    done = subprocess.run(
        [sys.executable, "-m", "soulfra", "bench", "cluster", "--quick", "--json", "--db", server,
         "--nats", private_nats, "--instances", str(WORLDS), "--window", "5"],
        capture_output=True, text=True, timeout=280, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)  # one JSON object on stdout; progress went to stderr
    assert set(report) == KEYS
    assert report["nodes"] == 2 and report["instances"] == WORLDS and report["kills"] == 1
    assert 0 < report["ticks_kept"] <= 1.1  # ticks ran (a listing's timing may count a tick early)
    assert len(report["host_rss_mib"]) >= 2 and all(mib > 0 for mib in report["host_rss_mib"])
    lost = report["worlds_on_lost_node"]
    assert lost > 0 and report["recovered"] == lost  # each world of the lost node ran again elsewhere
    assert 0 < report["failover_p50_s"] <= report["failover_max_s"]
    assert report["failover_rounds"] == [
        {"worlds": lost, "recovered": lost, "p50_s": report["failover_p50_s"], "max_s": report["failover_max_s"]}
    ]
    assert report["acknowledged_inputs"] > 0 and report["lost_acknowledged_inputs"] == 0
    assert report["verified"] == min(3, lost) and report["verify_failures"] == 0
    assert report["targets"]["lost_acknowledged_inputs"] == {"target": 0, "met": True}
    assert set(report["targets"]) == {"ticks_kept", "failover_p50_s", "lost_acknowledged_inputs"}
    assert _bench_databases(server) <= before  # the run's own database is gone
