"""The SQL adapter's layout: one module a port, none importing another port's module, and the names the rest of
Soulfra imports from ``soulfra.store.sql`` still there."""

from __future__ import annotations

import ast
from pathlib import Path

import soulfra.store.sql
from soulfra.store import SqlStore

PACKAGE = Path(soulfra.store.sql.__file__).parent
PORTS = {"audit", "inputs", "instances", "rituals", "sessions", "snapshots", "tokens", "vault"}


def _project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("soulfra."):
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("soulfra."))
    return found


def test_each_port_has_its_module_and_none_imports_another_port() -> None:
    assert {path.stem for path in PACKAGE.glob("*.py")} == PORTS | {"__init__", "clock", "store"}
    for port in sorted(PORTS):
        imported = _project_imports(PACKAGE / f"{port}.py")
        others = {f"soulfra.store.sql.{other}" for other in PORTS - {port}}
        assert imported & others == set(), port


def test_the_adapter_imports_nothing_above_the_store() -> None:
    # soulfra.projection: pure JSON projections of a state (the agents table's columns), below every adapter
    allowed = ("soulfra.codec", "soulfra.errors", "soulfra.projection", "soulfra.store", "soulfra.world")
    offenders = [
        f"{path.name}: {name}"
        for path in sorted(PACKAGE.glob("*.py"))
        for name in sorted(_project_imports(path))
        if not name.startswith(allowed)
    ]
    assert offenders == []


def test_the_names_importers_use_are_still_exported() -> None:
    assert soulfra.store.sql.SqlStore is SqlStore
    for name in (
        "SqlStore", "raw_hash", "KEYFRAME_EVERY", "DICTIONARY_MAX_RAW",
        "DICTIONARY_SAMPLES", "STATUSES",
    ):  # fmt: skip
        assert name in soulfra.store.sql.__all__, name
        assert hasattr(soulfra.store.sql, name), name
