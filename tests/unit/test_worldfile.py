"""World files (TOML): the documented example, defaults, and every kind of invalid file naming its source."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from soulfra.cli.runner import load_world_file
from soulfra.errors import WorldFileError
from soulfra.world import worldfile
from soulfra.world.genesis import DEFAULT_AGENTS, DEFAULT_LOOP_LENGTH, AgentDefinition, WorldSpec
from soulfra.world.minds import MIND_ALIASES, MINDS
from soulfra.world.minds.voice import VOICES
from soulfra.world.model import TRAITS
from soulfra.world.worldfile import parse_world

SOURCE = "worlds/harbor.toml"


def _docstring_example() -> str:
    doc = worldfile.__doc__
    assert doc is not None
    lines = [line for line in doc.splitlines() if line.startswith("    ") or not line.strip()]
    block = textwrap.dedent("\n".join(lines)).strip()
    assert block.startswith("[world]")
    return block + "\n"


def _agent(text: str, extra: str = "") -> str:
    """A world without the default agents whose only agent has the given body lines."""
    return f"[world]\ndefault_agents = false\n{extra}\n[[agents]]\n{textwrap.dedent(text)}"


def _by_id(spec: WorldSpec) -> dict[str, AgentDefinition]:
    return {definition.spec.id: definition for definition in spec.agents}


def _error(text: str, source: str = SOURCE) -> WorldFileError:
    with pytest.raises(WorldFileError) as info:
        parse_world(text, source=source)
    message = str(info.value)
    assert message.startswith(f"{source}: "), message
    assert info.value.detail == message
    return info.value


# ---------------------------------------------------------------------------------------------------------------
# Valid files


def test_documented_example_parses() -> None:
    spec = parse_world(_docstring_example(), source="example.toml")
    assert spec.name == "harbor"
    assert spec.loop_length == 50
    assert spec.agents[: len(DEFAULT_AGENTS)] == DEFAULT_AGENTS
    assert len(spec.agents) == len(DEFAULT_AGENTS) + 2
    mira, sage = spec.agents[-2:]
    assert mira.spec.id == "mira"
    assert mira.spec.name == "Mira"
    assert mira.spec.mind == "orchestrator"
    assert mira.spec.voice == "lyrical"
    assert mira.spec.goals == ("lanterns", "tides")
    assert mira.traits == (800_000, 700_000, 300_000, 400_000)
    assert mira.spec.model == ""
    assert (sage.spec.mind, sage.spec.model) == ("governor", "smollm2")  # a language mind, falling back to a governor


def test_empty_file_is_the_default_world() -> None:
    spec = parse_world("")
    assert spec == WorldSpec(name="soulfra", loop_length=DEFAULT_LOOP_LENGTH, agents=DEFAULT_AGENTS)


def test_world_table_without_agents_keeps_the_defaults() -> None:
    spec = parse_world('[world]\nname = "quiet"\nloop_length = 7\n')
    assert spec.name == "quiet"
    assert spec.loop_length == 7
    assert spec.agents == DEFAULT_AGENTS


def test_agents_without_world_table_follow_the_defaults() -> None:
    spec = parse_world('[[agents]]\nid = "solo"\nmind = "executor"\n')
    assert spec.name == "soulfra"
    assert spec.loop_length == DEFAULT_LOOP_LENGTH
    assert [d.spec.id for d in spec.agents] == [*(d.spec.id for d in DEFAULT_AGENTS), "solo"]


def test_default_agents_false_keeps_only_the_files_agents_in_order() -> None:
    text = _agent('id = "b"\nmind = "executor"\n') + '[[agents]]\nid = "a"\nmind = "governor"\n'
    spec = parse_world(text)
    assert [d.spec.id for d in spec.agents] == ["b", "a"]


def test_agent_defaults() -> None:
    spec = parse_world(_agent('id = "mira"\nmind = "executor"\n'))
    (mira,) = spec.agents
    assert mira.spec.name == "mira"
    assert mira.spec.voice == "measured"
    assert mira.spec.goals == ()
    assert mira.traits == (500_000, 500_000, 500_000, 500_000)


def test_missing_traits_default_to_half() -> None:
    spec = parse_world(_agent('id = "mira"\nmind = "executor"\ntraits = { chaos = 0.9, warmth = 0.1 }\n'))
    assert TRAITS == ("warmth", "curiosity", "order", "chaos")
    assert spec.agents[0].traits == (100_000, 500_000, 500_000, 900_000)


@pytest.mark.parametrize(
    ("toml_value", "expected"),
    [
        ("0.7", 700_000),
        ("0.1", 100_000),
        ("0", 0),
        ("1", 1_000_000),
        ("0.0", 0),
        ("1.0", 1_000_000),
        ("0.333333", 333_333),
        ("7e-1", 700_000),
        # more digits than a float holds: as a float this would be the tie 0.1234565 and round to even
        ("0.12345650000000000001", 123_457),
    ],
)
def test_trait_numbers_are_read_exactly(toml_value: str, expected: int) -> None:
    spec = parse_world(_agent(f'id = "mira"\nmind = "executor"\ntraits = {{ order = {toml_value} }}\n'))
    assert spec.agents[0].traits[2] == expected


@pytest.mark.parametrize(("alias", "key"), sorted(MIND_ALIASES.items()))
def test_mind_by_class_name_is_normalised_to_its_key(alias: str, key: str) -> None:
    spec = parse_world(_agent(f'id = "mira"\nmind = "{alias}"\n'))
    assert spec.agents[0].spec.mind == key


def test_cal_riven_agent_class_name_is_the_governor() -> None:
    spec = parse_world(_agent('id = "mira"\nmind = "CalRivenAgent"\n'))
    assert spec.agents[0].spec.mind == "governor"


@pytest.mark.parametrize("key", list(MINDS))
def test_every_mind_key_is_accepted(key: str) -> None:
    assert parse_world(_agent(f'id = "mira"\nmind = "{key}"\n')).agents[0].spec.mind == key


@pytest.mark.parametrize("voice", VOICES)
def test_every_voice_is_accepted(voice: str) -> None:
    assert parse_world(_agent(f'id = "mira"\nmind = "executor"\nvoice = "{voice}"\n')).agents[0].spec.voice == voice


@pytest.mark.parametrize("agent_id", ["a", "0", "a-b", "mira-2", "9lives", "a" * 64, "a" + "-" * 63])
def test_valid_ids(agent_id: str) -> None:
    assert parse_world(_agent(f'id = "{agent_id}"\nmind = "executor"\n')).agents[0].spec.id == agent_id


def test_loop_length_bounds_are_inclusive() -> None:
    assert parse_world("[world]\nloop_length = 1\n").loop_length == 1
    assert parse_world("[world]\nloop_length = 1000000\n").loop_length == 1_000_000


def test_goal_limits_are_inclusive() -> None:
    goals = ", ".join(f'"{letter * 64}"' for letter in "abcdefgh")
    spec = parse_world(_agent(f'id = "mira"\nmind = "executor"\ngoals = [{goals}]\n'))
    assert len(spec.agents[0].spec.goals) == 8
    assert all(len(goal) == 64 for goal in spec.agents[0].spec.goals)


def test_name_of_64_characters_is_accepted() -> None:
    spec = parse_world(_agent(f'id = "mira"\nname = "{"N" * 64}"\nmind = "executor"\n'))
    assert spec.agents[0].spec.name == "N" * 64


# ---------------------------------------------------------------------------------------------------------------
# Invalid files: every error is a WorldFileError whose message starts with the source name


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[world]\ndefault_agents = false\n", "no agents"),
        ("[world\nname = 1\n", "not valid TOML"),
        ('[world]\nname = "a"\nname = "b"\n', "not valid TOML"),
        ("just words\n", "not valid TOML"),
        ("[world]\nloop_length = 0\n", "loop_length"),
        ("[world]\nloop_length = -3\n", "loop_length"),
        ("[world]\nloop_length = 1000001\n", "loop_length"),
        ('[world]\nloop_length = "50"\n', "loop_length"),
        ("[world]\nloop_length = 50.0\n", "loop_length"),
        ("[world]\nloop_length = true\n", "loop_length"),
        ('[world]\nname = ""\n', "world.name"),
        ("[world]\nname = 3\n", "world.name"),
        ('[world]\ndefault_agents = "yes"\n', "default_agents"),
        ("[world]\ndefault_agents = 0\n", "default_agents"),
        ("[world]\nseed = 3\n", "unknown key(s) in [world]: seed"),
        ("world = 3\n", "[world] must be a table"),
        ("[weather]\nsky = 1\n", "unknown table(s) weather"),
        ("[agents]\nid = 'a'\n", "array of tables"),
        ("agents = [1]\n", "agent #1 must be a table"),
        ('[[agents]]\nid = "a"\nmind = "executor"\n[[agents]]\nid = "a"\nmind = "governor"\n', "'a' is used twice"),
        ('[[agents]]\nid = "arty"\nmind = "executor"\n', "'arty' is used twice"),
    ],
)
def test_invalid_world_files(text: str, fragment: str) -> None:
    assert fragment in str(_error(text))


@pytest.mark.parametrize(
    "agent_id",
    ["Mira", "-mira", "", "mi ra", "mira_2", "mïra", "a" * 65, "mira\n"],
)
def test_bad_agent_ids(agent_id: str) -> None:
    escaped = agent_id.replace("\n", "\\n")
    message = str(_error(_agent(f'id = "{escaped}"\nmind = "executor"\n')))
    assert "agent #1: id must be lower case letters, digits and dashes" in message
    assert repr(agent_id) in message


@pytest.mark.parametrize("line", ['mind = "executor"\n', 'id = 7\nmind = "executor"\n'])
def test_missing_or_non_string_id(line: str) -> None:
    assert "agent #1: id must be" in str(_error(_agent(line)))


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('mind = "dreamer"\n', "unknown mind 'dreamer'"),
        ('mind = "calrivenagent"\n', "unknown mind"),
        ("", "mind is required"),
        ("mind = 3\n", "mind is required"),
        ('mind = "executor"\nvoice = "shouty"\n', "unknown voice 'shouty'"),
        ('mind = "executor"\nvoice = 1\n', "unknown voice"),
        ('mind = "executor"\ntraits = { kindness = 0.5 }\n', "unknown trait(s) kindness"),
        ('mind = "executor"\ntraits = { warmth = 1.5 }\n', "trait warmth must be between 0 and 1"),
        ('mind = "executor"\ntraits = { chaos = -0.1 }\n', "trait chaos must be between 0 and 1"),
        ('mind = "executor"\ntraits = { order = 2 }\n', "trait order must be between 0 and 1"),
        ('mind = "executor"\ntraits = { order = "high" }\n', "trait order must be a number"),
        ('mind = "executor"\ntraits = { order = true }\n', "trait order must be a number"),
        ('mind = "executor"\ntraits = { order = nan }\n', "trait order must be finite"),
        ('mind = "executor"\ntraits = { order = inf }\n', "trait order must be finite"),
        ('mind = "executor"\ntraits = [0.5]\n', "traits must be a table"),
        ('mind = "executor"\nname = ""\n', "name must be a string of 1 to 64 characters"),
        (f'mind = "executor"\nname = "{"N" * 65}"\n', "name must be a string of 1 to 64 characters"),
        ('mind = "executor"\nname = 5\n', "name must be a string"),
        ('mind = "executor"\ngoals = "tides"\n', "goals must be a list"),
        ('mind = "executor"\ngoals = [""]\n', "goals must be a list"),
        ('mind = "executor"\ngoals = [1]\n', "goals must be a list"),
        (f'mind = "executor"\ngoals = ["{"g" * 65}"]\n', "goals must be a list"),
        ('mind = "executor"\ngoals = ["a","b","c","d","e","f","g","h","i"]\n', "goals must be a list"),
    ],
)
def test_invalid_agents(body: str, fragment: str) -> None:
    message = str(_error(_agent('id = "mira"\n' + body)))
    assert "agent 'mira'" in message
    assert fragment in message


def test_unknown_agent_key() -> None:
    message = str(_error(_agent('id = "mira"\nmind = "executor"\nmood = "happy"\n')))
    assert "agent #1: unknown key(s) mood" in message


def test_error_names_the_offending_agent_by_position_before_its_id_is_known() -> None:
    text = '[[agents]]\nid = "ok"\nmind = "executor"\n[[agents]]\nid = "Bad"\nmind = "executor"\n'
    assert "agent #2" in str(_error(text))


def test_default_source_name() -> None:
    with pytest.raises(WorldFileError, match=r"^<world>: "):
        parse_world("[world]\nloop_length = 0\n")


def test_error_code_is_stable() -> None:
    assert _error("[world]\nloop_length = 0\n").code == "invalid_world_file"


# ---------------------------------------------------------------------------------------------------------------
# load_world_file


def test_load_world_file_reads_and_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "harbor.toml"
    good.write_text(_docstring_example(), encoding="utf-8")
    assert load_world_file(good) == parse_world(_docstring_example())

    bad = tmp_path / "bad.toml"
    bad.write_text("[world]\nloop_length = 0\n", encoding="utf-8")
    with pytest.raises(WorldFileError) as info:
        load_world_file(bad)
    assert str(info.value).startswith(f"{bad}: ")


def test_load_world_file_on_a_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(WorldFileError) as info:
        load_world_file(missing)
    assert str(info.value).startswith(f"{missing}: cannot read world file")


def test_load_world_file_on_a_directory(tmp_path: Path) -> None:
    with pytest.raises(WorldFileError, match="cannot read world file"):
        load_world_file(tmp_path)


def test_load_world_file_on_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[world]\nname = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(WorldFileError, match="cannot read world file"):
        load_world_file(path)
