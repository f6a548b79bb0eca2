"""The curated public surface: what `soulfra` and `soulfra.world` export, and the error tree's codes."""

from __future__ import annotations

import soulfra
import soulfra.errors
import soulfra.world


def test_world_exports_exactly_its_public_names() -> None:
    assert sorted(soulfra.world.__all__) == sorted(
        [
            "DEFAULT_WORLD", "EVENT_KINDS", "FORMAT_VERSION", "MINDS", "SCALE", "Act", "AgentDefinition", "AlterVibe",
            "ChangePersonality", "CrossPost", "Event", "InjectRitual", "Input", "Mark", "Possess", "Release", "Whisper",
            "World", "WorldSpec", "WorldState", "decode_state", "encode_state", "event_to_json", "genesis",
            "input_to_json", "parse_input", "parse_world", "schedule", "state_hash",
        ]
    )  # fmt: skip
    for name in soulfra.world.__all__:
        assert hasattr(soulfra.world, name), name


def test_every_error_descends_from_the_root_with_a_distinct_code() -> None:
    exported = [getattr(soulfra.errors, name) for name in soulfra.errors.__all__]
    classes: list[type[soulfra.SoulfraError]] = [obj for obj in exported if isinstance(obj, type)]
    assert [obj.__name__ for obj in exported if not isinstance(obj, type)] == ["error_for_code"]
    assert all(issubclass(cls, soulfra.SoulfraError) for cls in classes)
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    # the docstring's tree names every class
    assert all(cls.__name__ in (soulfra.errors.__doc__ or "") for cls in classes)


def test_an_error_crosses_a_process_boundary_as_its_code() -> None:
    for cls in (soulfra.errors.NotFoundError, soulfra.errors.OverrideActiveError, soulfra.errors.BusTimeoutError):
        rebuilt = soulfra.errors.error_for_code(cls.code, "detail")
        assert type(rebuilt) is cls
        assert rebuilt.detail == "detail"
    unknown = soulfra.errors.error_for_code("made_up", "x")
    assert type(unknown) is soulfra.SoulfraError
    assert unknown.code == "made_up"


def test_the_seed_minds_are_registered_under_their_keys() -> None:
    assert {key: type(mind).__name__ for key, mind in soulfra.world.MINDS.items()} == {
        "governor": "CalRivenAgent",
        "orchestrator": "ArtyOrchestrator",
        "executor": "AgentZeroEngine",
        "contagion": "MoodContagion",
    }
