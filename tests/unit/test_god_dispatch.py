"""The engine's dispatch table: every god command type has exactly one handler, the handler takes that command type,
and the handlers reach the engine only through their context (``soulfra.meta.god`` never imports the engine)."""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import pytest

import soulfra.meta.god
from soulfra.cli.god import fork_spec
from soulfra.errors import InputError
from soulfra.meta.commands import COMMAND_TYPES, GodCommand
from soulfra.meta.engine import HANDLERS
from soulfra.meta.god.context import GodContext

GOD = Path(soulfra.meta.god.__file__).parent


def _members() -> tuple[type, ...]:
    union = typing.get_args(GodCommand)[0]  # Annotated[A | B | ..., discriminator]
    return typing.get_args(union)


def test_every_command_type_has_one_handler() -> None:
    members = _members()
    assert len(members) == len(COMMAND_TYPES)
    assert set(HANDLERS) == set(members)


def test_each_handler_takes_the_command_type_it_is_filed_under() -> None:
    for command_type, handler in HANDLERS.items():
        hints = typing.get_type_hints(handler)
        first, second = list(inspect.signature(handler).parameters)
        assert hints[first] is GodContext, handler.__name__
        assert hints[second] is command_type, handler.__name__


def test_handlers_do_not_import_the_engine() -> None:
    offenders: list[str] = []
    for path in sorted(GOD.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only: an import under ``if TYPE_CHECKING`` is for annotations
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offenders.extend(f"{path.name}: {name}" for name in names if name.startswith("soulfra.meta.engine"))
    assert offenders == []


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        (
            '[{"type": "whisper", "target": "*", "text": "hi"}]',
            {"modifications": [{"type": "whisper", "target": "*", "text": "hi"}]},
        ),
        ('{"id": "f1", "modifications": []}', {"id": "f1", "modifications": []}),
        ('{"modifications": []}', {"modifications": []}),
        ("whisper:*:hi", {"modifications": [{"type": "whisper", "target": "*", "text": "hi"}]}),
        ("vibe:chaos-bloom", {"modifications": [{"type": "intervene", "kind": "vibe", "condition": "chaos-bloom"}]}),
    ],
)
def test_a_fork_on_the_command_line_takes_a_list_or_the_api_s_shape(text: str, spec: dict[str, object]) -> None:
    assert fork_spec(text) == spec


@pytest.mark.parametrize("text", ['{"id": "f1", "mods": []}', '"whisper"', "3"])
def test_any_other_fork_is_refused_with_the_shapes_it_takes(text: str) -> None:
    with pytest.raises(InputError, match="--fork takes a JSON list of inputs"):
        fork_spec(text)


@pytest.mark.parametrize("text", ["whisper:arty", "dance:arty", "possess:"])
def test_a_short_fork_spelled_wrong_names_the_short_forms(text: str) -> None:
    with pytest.raises(InputError, match="--fork"):
        fork_spec(text)
