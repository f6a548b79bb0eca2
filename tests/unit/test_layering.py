"""The world core imports only the standard library's pure modules, numpy, and its own package."""

from __future__ import annotations

import ast
from pathlib import Path

import soulfra
import soulfra.meta.package
import soulfra.world

SRC = Path(soulfra.__file__).parent
WORLD = SRC / "world"
ALLOWED_ROOTS = {
    "__future__", "collections", "contextlib", "dataclasses", "decimal", "enum", "functools", "hashlib", "itertools",
    "re", "struct", "tomllib", "typing", "numpy",
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


# The layer order, lowest first: a module may import its own layer and those below it, never one above. Every
# top-level module and package of soulfra has a place here (a new one fails until it is given one).
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "__init__ errors offload metrics logs limits",
        "world",
        "codec store bus projection reflection",
        "durable verification verification_spans",
        "platforms security language",
        "meta",
        "api dashboard",
        "system services serving cluster settings",
        "bench",
        "cli __main__",
    )
)


def _layer_of(module: str) -> int:
    """The layer of ``soulfra.<top>...`` (or of the top name itself)."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 and parts[0] == "soulfra" else parts[0]
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"{module}: soulfra.{top} has no layer in LAYERS")


def _project_imports(path: Path) -> list[str]:
    """The soulfra modules a file imports, ``from soulfra import x`` read as ``soulfra.x``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names if alias.name.startswith("soulfra."))
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module == "soulfra":
                found.extend(f"soulfra.{alias.name}" for alias in node.names if alias.name != "__version__")
            elif node.module.startswith("soulfra."):
                found.append(node.module)
    return found


def _layer_violations(root: Path) -> list[str]:
    offenders = []
    for path in sorted(root.rglob("*.py")):
        own = _layer_of(".".join(("soulfra", *path.relative_to(root).with_suffix("").parts)))
        for name in _project_imports(path):
            if _layer_of(name) > own:
                offenders.append(f"{path.relative_to(root)}: {name}")
    return offenders


def test_every_module_imports_only_its_layer_and_those_below() -> None:
    """world -> codec/store/bus -> durable -> platforms/security -> meta -> api -> system -> bench -> cli."""
    tops = {path.stem for path in SRC.glob("*.py")} | {path.name for path in SRC.iterdir() if path.is_dir()}
    tops.discard("__pycache__")
    assert tops <= set().union(*LAYERS), f"give these a layer: {sorted(tops - set().union(*LAYERS))}"
    assert _layer_violations(SRC) == []


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "bad.py").write_text("from soulfra.meta.engine import PuppetMasterEngine\n")
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "fine.py").write_text("from soulfra import durable\nimport soulfra.meta.engine\n")
    assert _layer_violations(tmp_path) == ["store/bad.py: soulfra.meta.engine"]


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
        "soulfra.store.sql", "soulfra.store.lease", "soulfra.store.database", "soulfra.store.memory",
        "soulfra.bus.nats", "soulfra.bus.memory",
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
