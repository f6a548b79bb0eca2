"""The long package commands report their replay as it goes (the CLI draws it as a bar on a terminal): importing
with --verify-replay, importing a compact package (its history is replayed as it is read), and a rewrite in
``package edit``. Each hears every tick replayed, in order, up to the head."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from soulfra.meta.offline import edit_package, import_db

from .support import soulfra

HEAD = 40


@pytest.fixture
def packages(tmp_path: Path) -> dict[str, Path]:
    """A full and a compact package of one instance run to ``HEAD``, signed by the installation at ``tmp_path``."""
    source = f"sqlite:///{tmp_path / 'source.db'}"
    assert soulfra("run", "--db", source, "--seed", "3", "--ticks", str(HEAD), home=tmp_path).returncode == 0
    made = {"full": tmp_path / "full.soulpkg", "compact": tmp_path / "compact.soulpkg"}
    for kind, path in made.items():
        done = soulfra("export", "--db", source, "-o", str(path), *(["--compact"] if kind == "compact" else []),
                       home=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
    return made


def heard() -> tuple[list[tuple[int, int]], Callable[[int, int], None]]:
    calls: list[tuple[int, int]] = []
    return calls, lambda done, total: calls.append((done, total))


def every_tick_to_the_head(calls: list[tuple[int, int]]) -> bool:
    return calls == [(tick, HEAD) for tick in range(1, HEAD + 1)]


@pytest.mark.parametrize(("kind", "verify_replay"), [("full", True), ("compact", False)])
def test_an_import_that_replays_reports_every_tick(
    packages: dict[str, Path], tmp_path: Path, kind: str, verify_replay: bool
) -> None:
    calls, on_tick = heard()
    target = f"sqlite:///{tmp_path / 'target.db'}"
    reply = import_db(target, packages[kind], home=tmp_path, verify_replay=verify_replay, on_tick=on_tick)
    assert [row["head_tick"] for row in reply["imported"]] == [HEAD]
    assert every_tick_to_the_head(calls), calls


def test_an_import_that_does_not_replay_reports_no_tick(packages: dict[str, Path], tmp_path: Path) -> None:
    calls, on_tick = heard()
    import_db(f"sqlite:///{tmp_path / 'target.db'}", packages["full"], home=tmp_path, on_tick=on_tick)
    assert calls == []


def test_a_rewrite_reports_every_tick_it_replays(packages: dict[str, Path], tmp_path: Path) -> None:
    calls, on_tick = heard()
    rewrite = {"op": "rewrite", "from_tick": 10, "drop": [], "add": [{"type": "release", "agent": "arty"}]}
    edit_package(packages["full"], tmp_path / "edited.soulpkg", [rewrite], home=tmp_path, on_tick=on_tick)
    assert every_tick_to_the_head(calls), calls
