"""The world core imports only the standard library's pure modules, numpy, and its own package."""

from __future__ import annotations

import ast
from pathlib import Path

import soulfra.meta.package
import soulfra.world

WORLD = Path(soulfra.world.__file__).parent
ALLOWED_ROOTS = {
    "__future__", "collections", "dataclasses", "decimal", "enum", "functools", "hashlib", "itertools", "re",
    "struct", "tomllib", "typing", "numpy",
}  # fmt: skip
ALLOWED_PROJECT = ("soulfra.world", "soulfra.errors")
FORBIDDEN_NAMES = {"open", "print", "input", "eval", "exec", "__import__"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            found.append(node.module or "")
    return found


def test_world_imports_only_the_allow_list() -> None:
    offenders = []
    files = sorted(WORLD.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        for name in _imports(path):
            root = name.split(".")[0]
            if root == "soulfra":
                if not name.startswith(ALLOWED_PROJECT):
                    offenders.append(f"{path.relative_to(WORLD)}: {name}")
            elif root not in ALLOWED_ROOTS:
                offenders.append(f"{path.relative_to(WORLD)}: {name}")
    assert offenders == []


def test_world_calls_no_io_or_dynamic_code() -> None:
    offenders = []
    for path in sorted(WORLD.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_NAMES:
                offenders.append(f"{path.relative_to(WORLD)}:{node.lineno}: {node.func.id}()")
    assert offenders == []


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import random\nfrom time import monotonic\nimport soulfra.cli\n")
    names = _imports(bad)
    assert [n for n in names if n.split(".")[0] not in ALLOWED_ROOTS and not n.startswith(ALLOWED_PROJECT)] == [
        "random",
        "time",
        "soulfra.cli",
    ]


def test_the_package_codec_keeps_its_sides_apart() -> None:
    """The manifest's rules know no ZIP or signature; the writer and the reader never import each other."""
    root = Path(soulfra.meta.package.__file__).parent
    forbidden = {
        "common.py": {
            "zipfile",
            "soulfra.meta.package.manifest",
            "soulfra.meta.package.reader",
            "soulfra.meta.package.writer",
        },
        "manifest.py": {"zipfile", "soulfra.meta.keys", "soulfra.meta.package.reader", "soulfra.meta.package.writer"},
        "writer.py": {"soulfra.meta.package.reader"},
        "reader.py": {"soulfra.meta.package.writer"},
    }
    offenders = [
        f"{name}: {module}"
        for name, banned in sorted(forbidden.items())
        for module in _imports(root / name)
        if module in banned
    ]
    assert offenders == []


def test_the_platforms_name_no_concrete_adapter_and_nothing_above_them() -> None:
    """Platforms reach storage and the bus through their ports; adapters are chosen by the composition root."""
    platforms = Path(soulfra.world.__file__).parent.parent / "platforms"
    forbidden = (
        "soulfra.store.sql", "soulfra.store.lease", "soulfra.store.database", "soulfra.bus.nats", "soulfra.bus.memory",
        "soulfra.meta", "soulfra.api", "soulfra.system", "soulfra.cli", "soulfra.cli.runner", "soulfra.cli.console",
        "sqlalchemy", "nats",
    )  # fmt: skip
    files = sorted(platforms.glob("*.py"))
    assert len(files) > 5
    offenders = [
        f"{path.name}: {name}"
        for path in files
        for name in _imports(path)
        if any(name == banned or name.startswith(banned + ".") for banned in forbidden)
    ]
    assert offenders == []
