"""``soulfra`` with a database, as a user runs it: ``run --db``, ``db upgrade``, ``state``, ``history``, ``verify``
against SQLite (and PostgreSQL where the backend matters), in this process through the real ``main``; live inputs on
stdin in a real subprocess, stopped by a signal.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from soulfra.cli.runner import load_inputs
from soulfra.store import SqlStore
from soulfra.store import schema as tables
from soulfra.world import Input, Whisper, World, schedule

from .support import one_error_line, parsed, soulfra, soulfra_each

LINE_TIMEOUT = 15.0


def ok_json_all(*commands: Sequence[str]) -> list[dict[str, Any]]:
    return [parsed(done) for done in soulfra_each(*([*args, "--json"] for args in commands))]


def ok_json(*args: str) -> dict[str, Any]:
    return ok_json_all(args)[0]


def in_memory_hash(seed: int, ticks: int, inputs: Sequence[Input] = ()) -> str:
    world = World.create(seed)
    by_tick = schedule(inputs)
    while world.tick < ticks:
        world.step(by_tick.get(world.tick, ()))
    return world.state_hash()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'worlds.db'}"


# -- schema -----------------------------------------------------------------------------------------------------


def test_db_upgrade_migrates_once_then_reports_the_revision(db_url: str) -> None:
    first = soulfra("db", "upgrade", "--db", db_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("schema migrated from empty to revision "), first.stdout
    revision = first.stdout.split()[-1]
    second = soulfra("db", "upgrade", "--db", db_url)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"schema already at revision {revision}"


# -- a stored world is the same world ---------------------------------------------------------------------------


# genesis, a snapshot, between snapshots, just before the head, the head (snapshots every 20 ticks)
STATE_CASES = [(0, 0), (200, 200), (155, 140), (399, 380), (400, 400)]


@pytest.fixture(scope="module")
def runs_from_scratch() -> dict[int, str]:
    """``run --seed 7 --ticks T --json`` hashes for ``STATE_CASES``, once for both backends (tick 0: genesis)."""
    ticks = [tick for tick, _ in STATE_CASES if tick]
    runs = ok_json_all(*(["run", "--seed", "7", "--ticks", str(tick)] for tick in ticks))
    return {0: in_memory_hash(7, 0)} | {tick: run["state_hash"] for tick, run in zip(ticks, runs, strict=True)}


def test_state_at_any_tick_is_the_world_run_from_scratch(db_url: str, runs_from_scratch: dict[int, str]) -> None:
    stored = ok_json("run", "--db", db_url, "--seed", "7", "--ticks", "400")
    assert (stored["instance"], stored["start_tick"], stored["tick"]) == ("world-7", 0, 400)
    *states, head = ok_json_all(
        *(["state", "--db", db_url, "--tick", str(tick)] for tick, _ in STATE_CASES), ["state", "--db", db_url]
    )
    for (tick, snapshot_tick), state in zip(STATE_CASES, states, strict=True):
        assert state["state_hash"] == runs_from_scratch[tick], tick
        assert (state["tick"], state["head_tick"], state["snapshot_tick"]) == (tick, 400, snapshot_tick)
        assert state["replayed_ticks"] == tick - snapshot_tick
    assert runs_from_scratch[400] == stored["state_hash"]
    assert (head["tick"], head["state_hash"]) == (400, stored["state_hash"])  # the head, by default


def test_a_second_run_continues_where_the_first_stopped(db_url: str) -> None:
    first = ok_json("run", "--db", db_url, "--seed", "5", "--ticks", "150")
    second, whole = ok_json_all(
        ["run", "--db", db_url, "--seed", "5", "--ticks", "120"], ["run", "--seed", "5", "--ticks", "270"]
    )
    assert (second["instance"], second["start_tick"], second["tick"], second["ticks"]) == ("world-5", 150, 270, 120)
    assert first["tick"] == second["start_tick"]
    assert second["state_hash"] == whole["state_hash"]


def test_fresh_starts_a_second_instance_and_instance_selects_it(sqlite_url: str) -> None:
    ok_json("run", "--db", sqlite_url, "--seed", "3", "--ticks", "20")
    fresh = ok_json("run", "--db", sqlite_url, "--seed", "3", "--ticks", "30", "--fresh")
    assert (fresh["instance"], fresh["start_tick"], fresh["tick"]) == ("world-3-2", 0, 30)
    newest, first, history, verified = ok_json_all(
        ["state", "--db", sqlite_url],
        ["state", "--db", sqlite_url, "--instance", "world-3"],
        ["history", "--db", sqlite_url, "--instance", "world-3"],
        ["verify", "--db", sqlite_url, "--instance", "world-3"],
    )
    assert (newest["instance"], newest["tick"], newest["state_hash"]) == ("world-3-2", 30, fresh["state_hash"])
    assert (first["instance"], first["tick"], first["state_hash"]) == ("world-3", 20, in_memory_hash(3, 20))
    assert (history["instance"], history["head_tick"]) == ("world-3", 20)
    assert (verified["instance"], verified["ok"], verified["ticks"]) == ("world-3", True, 20)
    again, missing = soulfra_each(
        ["run", "--db", sqlite_url, "--seed", "3", "--ticks", "5", "--json"],  # continues the newest of the seed
        ["state", "--db", sqlite_url, "--instance", "world-9"],
    )
    assert (parsed(again)["instance"], parsed(again)["start_tick"]) == ("world-3-2", 30)
    assert "world-9" in one_error_line(missing, 66)


def test_another_world_with_the_same_seed_is_refused(sqlite_url: str) -> None:
    ok_json("run", "--db", sqlite_url, "--seed", "3", "--ticks", "5")
    done = soulfra("run", "--db", sqlite_url, "--seed", "3", "--ticks", "5", "--agents", "5")
    assert "--fresh" in one_error_line(done, 2)
    assert done.stdout == ""
    fresh = ok_json("run", "--db", sqlite_url, "--seed", "3", "--ticks", "5", "--agents", "5", "--fresh")
    assert (fresh["instance"], fresh["agents"]) == ("world-3-2", 8)


def test_a_tick_beyond_the_head_is_not_found(sqlite_url: str) -> None:
    ok_json("run", "--db", sqlite_url, "--seed", "1", "--ticks", "30")
    assert soulfra("db", "upgrade", "--db", sqlite_url + ".empty").returncode == 0
    beyond, empty, missing = soulfra_each(
        ["state", "--db", sqlite_url, "--tick", "31"],
        ["history", "--db", sqlite_url + ".empty"],
        ["verify", "--db", sqlite_url + ".missing"],
    )
    line = one_error_line(beyond, 66)
    assert "tick 30" in line and "31" in line
    assert "no instance" in one_error_line(empty, 66)
    assert "no database at" in one_error_line(missing, 66)  # reading never creates an empty database
    assert not Path(sqlite_url.removeprefix("sqlite:///") + ".missing").exists()


# -- history and verify -----------------------------------------------------------------------------------------


def test_history_lists_snapshots_loops_and_inputs_with_totals(sqlite_url: str, tmp_path: Path) -> None:
    log = tmp_path / "in.jsonl"
    log.write_text(
        '{"tick": 4, "type": "whisper", "target": "arty", "text": "hold the line", "tone": "solemn"}\n'
        '{"tick": 120, "type": "possess", "agent": "cal-riven"}\n'
    )
    ok_json("run", "--db", sqlite_url, "--seed", "7", "--ticks", "250", "--inputs", str(log))
    full, latest = ok_json_all(
        ["history", "--db", sqlite_url, "--limit", "100"], ["history", "--db", sqlite_url, "--limit", "3"]
    )
    assert (full["instance"], full["seed"], full["head_tick"], full["parent"]) == ("world-7", 7, 250, None)
    assert full["totals"] == {"snapshots": 13, "loops": 2, "inputs": 2}
    assert [s["tick"] for s in full["snapshots"]] == list(range(0, 251, 20))
    assert [s["type"] for s in full["snapshots"]].count("loop-seal") == 2
    assert full["snapshots"][0]["type"] == "genesis"
    for snap in full["snapshots"]:
        assert snap["state_hash"].startswith("b2:") and snap["stored_size"] > 0 and snap["raw_size"] > 0
    assert [(loop["loop"], loop["start"], loop["end"]) for loop in full["loops"]] == [(0, 0, 99), (1, 100, 199)]
    inputs = load_inputs(log)
    assert [loop["state_hash"] for loop in full["loops"]] == [
        in_memory_hash(7, 100, inputs),
        in_memory_hash(7, 200, inputs),
    ]
    assert full["inputs"] == [
        {"seq": 1, "tick": 4, "type": "whisper", "target": "arty", "text": "hold the line", "tone": "solemn"},
        {"seq": 2, "tick": 120, "type": "possess", "agent": "cal-riven", "operator": "puppet-master"},
    ]
    assert [s["tick"] for s in latest["snapshots"]] == [200, 220, 240]
    assert [loop["loop"] for loop in latest["loops"]] == [0, 1] and len(latest["inputs"]) == 2
    assert latest["totals"] == full["totals"]
    table = soulfra("history", "--db", sqlite_url)
    assert table.returncode == 0, table.stderr
    for title in ("world-7: seed 7, durable to tick 250", "snapshots (13)", "loops sealed (2)", "inputs (2)"):
        assert title in table.stdout, table.stdout


def test_verify_passes_on_a_clean_database(db_url: str) -> None:
    run = ok_json("run", "--db", db_url, "--seed", "4", "--ticks", "120")
    done, as_json = soulfra_each(["verify", "--db", db_url], ["verify", "--db", db_url, "--json"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: world-4 replayed to tick 120") and run["state_hash"] in done.stdout
    assert parsed(as_json) == {
        "instance": "world-4", "ok": True, "ticks": 120, "inputs": 0, "snapshots_checked": 7,
        "state_hash": run["state_hash"], "mismatches": [],
    }  # fmt: skip


@pytest.mark.parametrize("tamper", ["input-text", "snapshot-hash"])
def test_verify_names_the_tick_where_a_tampered_history_stops_replaying(
    db_url: str, tmp_path: Path, tamper: str
) -> None:
    log = tmp_path / "in.jsonl"
    log.write_text('{"tick": 23, "type": "whisper", "target": "arty", "text": "the river remembers"}\n')
    ok_json("run", "--db", db_url, "--seed", "4", "--ticks", "120", "--inputs", str(log))
    store = SqlStore.open(db_url)
    try:
        with store.engine.begin() as conn:
            if tamper == "input-text":
                body = {"tick": 23, "type": "whisper", "target": "arty", "text": "the river forgets", "tone": "gentle"}
                changed = conn.execute(tables.inputs.update().where(tables.inputs.c.seq == 1).values(body=body))
                first_bad = 40  # the first snapshot after the forged input (every 20 ticks)
            else:
                forged = "b2:" + "0" * 64
                changed = conn.execute(
                    tables.snapshots.update().where(tables.snapshots.c.tick == 60).values(state_hash=forged)
                )
                first_bad = 60
        assert changed.rowcount == 1
    finally:
        store.close()
    done, as_json = soulfra_each(["verify", "--db", db_url], ["verify", "--db", db_url, "--json"])
    assert done.stdout.splitlines()[0].startswith(f"MISMATCH at tick {first_bad} "), done.stdout
    assert "do not replay" in one_error_line(done, 65)
    assert as_json.returncode == 65, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["instance"] == "world-4"
    ticks = [m["tick"] for m in report["mismatches"]]
    assert ticks and min(ticks) == first_bad, report
    for mismatch in report["mismatches"]:
        assert mismatch["stored"] != mismatch["replayed"] and mismatch["what"]


# -- what goes wrong --------------------------------------------------------------------------------------------


def test_a_database_that_cannot_be_opened_gives_one_line() -> None:
    cases = [  # a URL that names no database Soulfra can use is a bad value (2); one it cannot reach, 69
        (("run", "--ticks", "5"), "mysql://x", "unsupported database 'mysql'", 2),
        (("run", "--ticks", "5"), "worlds.db", "try sqlite:///worlds.db", 2),
        (("run", "--ticks", "5"), "sqlite:///no/such/dir/x.db", "does not exist", 69),
        (("verify",), "sqlite:///no/such/dir/x.db", "does not exist", 69),
        (("db", "upgrade"), "not a url", "not a database URL", 2),
        (("history",), "postgresql://postgres@127.0.0.1:1/nothing", "127.0.0.1", 69),  # nothing listens on port 1
    ]
    results = soulfra_each(*([*command, "--db", url] for command, url, _, _ in cases))
    for (command, url, needle, code), done in zip(cases, results, strict=True):
        assert needle in one_error_line(done, code), (command, url)
        assert done.stdout == "", (command, url)


def test_live_inputs_need_a_database() -> None:
    done = soulfra("run", "--ticks", "5", "--inputs", "-", stdin="")
    assert "--db" in one_error_line(done, 2)


def test_an_input_log_is_stored_and_gives_the_in_memory_hash(sqlite_url: str, tmp_path: Path) -> None:
    log = tmp_path / "in.jsonl"
    log.write_text(
        '{"tick": 3, "type": "whisper", "target": "arty", "text": "the lanterns want a vigil", "tone": "playful"}\n'
        '{"tick": 10, "type": "possess", "agent": "arty"}\n'
        '{"tick": 11, "type": "act", "agent": "arty", "action": "post", "text": "Hear me.", "topic": "signals"}\n'
        '{"tick": 30, "type": "release", "agent": "arty"}\n'
    )
    stored, plain = ok_json_all(
        ["run", "--db", sqlite_url, "--seed", "2", "--ticks", "60", "--inputs", str(log)],
        ["run", "--seed", "2", "--ticks", "60", "--inputs", str(log)],
    )
    assert stored["state_hash"] == plain["state_hash"] != in_memory_hash(2, 60)
    history, verified = ok_json_all(["history", "--db", sqlite_url], ["verify", "--db", sqlite_url])
    assert [(i["seq"], i["tick"], i["type"]) for i in history["inputs"]] == [
        (1, 3, "whisper"), (2, 10, "possess"), (3, 11, "act"), (4, 30, "release"),
    ]  # fmt: skip
    assert history["inputs"][0]["text"] == "the lanterns want a vigil"
    assert (verified["ok"], verified["inputs"], verified["state_hash"]) == (True, 4, plain["state_hash"])


def test_events_are_written_with_a_database(sqlite_url: str, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    ok_json("run", "--db", sqlite_url, "--seed", "6", "--ticks", "40")
    report = ok_json("run", "--db", sqlite_url, "--seed", "6", "--ticks", "70", "--events", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == sum(report["events"].values()) > 0
    assert all(40 <= line["tick"] <= 110 for line in lines)
    assert sum(line["kind"] == "loop_sealed" for line in lines) == report["loops_sealed"] == 1


# -- live inputs on stdin ---------------------------------------------------------------------------------------


class _Lines:
    """A subprocess's stdout lines on a queue, each awaited with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line)
        self.queue.put(None)

    def next(self) -> str | None:
        """The next line, or None at the end of the stream."""
        return self.queue.get(timeout=LINE_TIMEOUT)


def test_live_inputs_reject_bad_lines_and_the_run_goes_on(sqlite_url: str) -> None:
    command = ["run", "--db", sqlite_url, "--seed", "9", "--ticks", "0", "--inputs", "-", "--rate", "200", "--json"]
    sent = [
        '{"type": "whisper", "target": "arty", "text": "first light"}',
        "{not json",
        '{"type": "whisper", "target": "nobody", "text": "hello?"}',
        "",  # skipped, as in an input log: no reply
        '{"type": "whisper", "target": "agent-zero", "text": "still here", "tone": "urgent"}',
    ]
    replies: dict[int, dict[str, Any]] = {}
    with subprocess.Popen(
        [sys.executable, "-m", "soulfra", *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            lines = _Lines(proc.stdout)
            for number, text in enumerate(sent, start=1):  # one at a time: each reply names its line
                proc.stdin.write(text + "\n")
                proc.stdin.flush()
                if not text:
                    continue
                line = lines.next()
                assert line is not None, proc.stderr.read()
                reply = json.loads(line)
                assert reply.get("line", reply.get("rejected")) == number, reply
                replies[number] = reply
            proc.stdin.close()  # the end of the inputs does not end the run...
            proc.send_signal(signal.SIGTERM)  # ...SIGTERM does, cleanly, after the current tick
            code = proc.wait(timeout=LINE_TIMEOUT)
            final, end = lines.next(), lines.next()
            stderr = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 0, stderr
    assert final is not None and end is None  # the report is the last line
    assert replies[2]["rejected"] == 2 and replies[2]["code"] == "invalid_input"
    assert replies[3]["code"] == "unknown_agent" and "nobody" in replies[3]["detail"]
    assert (replies[1]["ack"], replies[5]["ack"]) == (1, 2)
    report = json.loads(final)
    assert f"soulfra: stopped at tick {report['tick']} of {report['instance']}, every tick up to it stored" in stderr
    assert replies[1]["tick"] <= replies[5]["tick"] < report["tick"]
    inputs = [
        Whisper(tick=replies[1]["tick"], target="arty", text="first light"),
        Whisper(tick=replies[5]["tick"], target="agent-zero", text="still here", tone="urgent"),
    ]
    assert report["state_hash"] == in_memory_hash(9, report["tick"], inputs)
    head, history = ok_json_all(["state", "--db", sqlite_url], ["history", "--db", sqlite_url])
    assert (head["tick"], head["state_hash"]) == (report["tick"], report["state_hash"])
    assert [(i["seq"], i["tick"], i["text"]) for i in history["inputs"]] == [
        (1, replies[1]["tick"], "first light"),
        (2, replies[5]["tick"], "still here"),
    ]
