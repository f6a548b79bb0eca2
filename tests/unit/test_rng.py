"""SplitMix64 keyed by (seed, tick, agent, purpose, counter): constants, scalar/vector agreement, ranges."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from soulfra.world.rng import (
    GOLDEN,
    MASK,
    Purpose,
    Stream,
    below,
    below_array,
    below_each,
    draw,
    draw_rows,
    draws,
    draws_spread,
    mix64,
    mix64_array,
    signed_noise,
    spread,
    tick_key,
)

U64_MAX = (1 << 64) - 1

u64 = st.integers(0, U64_MAX)
seeds = st.integers(0, U64_MAX)
ticks = st.integers(0, 1 << 40)
purposes = st.one_of(st.sampled_from(list(Purpose)).map(int), st.integers(0, 1 << 16))
counters = st.integers(0, 1 << 20)
agent_indices = st.integers(0, (1 << 32) - 1)
u64_arrays: st.SearchStrategy[npt.NDArray[np.uint64]] = hnp.arrays(
    np.uint64, st.integers(0, 32), elements=st.integers(0, U64_MAX)
)


def _reference_splitmix64(state: int, count: int) -> list[int]:
    out = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) % (1 << 64)
        out.append(mix64(state))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Constants


def test_mix64_known_answers_pin_the_splitmix64_constants() -> None:
    assert _reference_splitmix64(1234567, 5) == [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ]


def test_public_constants() -> None:
    assert MASK == (1 << 64) - 1
    assert GOLDEN == 0x9E3779B97F4A7C15


def test_purpose_values_never_change() -> None:
    # Each purpose's number is part of every draw's key, so renumbering one would change every replay.
    assert {p.name: p.value for p in Purpose} == {
        "GENESIS": 1,
        "MOOD_VALENCE": 2,
        "MOOD_AROUSAL": 3,
        "ACTIVATE": 4,
        "DECIDE": 5,
        "CONTAGION_PICK": 6,
        "CONTAGION_NOISE": 7,
        "RITUAL": 8,
    }


# ---------------------------------------------------------------------------------------------------------------
# mix64


@given(st.integers())
def test_mix64_takes_its_argument_modulo_2_64(z: int) -> None:
    result = mix64(z)
    assert 0 <= result <= U64_MAX
    assert result == mix64(z % (1 << 64))
    assert result == mix64(z + (1 << 64))


def test_mix64_of_minus_one_is_mix64_of_mask() -> None:
    assert mix64(-1) == mix64(MASK)


@given(u64, u64)
def test_mix64_is_a_bijection_on_distinct_inputs(a: int, b: int) -> None:
    assert (mix64(a) == mix64(b)) == (a == b)


@settings(max_examples=60)
@given(u64_arrays)
def test_mix64_array_equals_mix64_elementwise(values: npt.NDArray[np.uint64]) -> None:
    before = values.copy()
    mixed = mix64_array(values)
    assert mixed.dtype == np.uint64
    assert mixed.shape == values.shape
    assert [int(v) for v in mixed] == [mix64(int(v)) for v in values]
    assert np.array_equal(values, before), "mix64_array must return a new array, not mix in place"


# ---------------------------------------------------------------------------------------------------------------
# draw / draws / Stream


@settings(max_examples=100)
@given(seeds, ticks, hnp.arrays(np.uint64, st.integers(0, 16), elements=agent_indices), purposes, counters)
def test_draws_equals_draw_for_every_agent(
    seed: int, tick: int, agents: npt.NDArray[np.uint64], purpose: int, counter: int
) -> None:
    vector = draws(seed, tick, agents, purpose, counter)
    assert vector.dtype == np.uint64
    assert vector.shape == agents.shape
    assert [int(v) for v in vector] == [draw(seed, tick, int(a), purpose, counter) for a in agents]


@settings(max_examples=100)
@given(seeds, ticks, hnp.arrays(np.uint64, st.integers(0, 16), elements=agent_indices), st.lists(purposes, max_size=4))
def test_draw_rows_are_draws_for_each_purpose(
    seed: int, tick: int, agents: npt.NDArray[np.uint64], chosen: list[int]
) -> None:
    rows = draw_rows(seed, tick, spread(agents), tuple(chosen))
    assert rows.dtype == np.uint64
    assert rows.shape == (len(chosen), len(agents))
    for row, purpose in zip(rows, chosen, strict=True):
        assert [int(v) for v in row] == [draw(seed, tick, int(a), purpose) for a in agents]
        assert np.array_equal(draws_spread(seed, tick, spread(agents), purpose), row)
    assert np.array_equal(spread(agents.astype(np.int64)), spread(agents))  # any integer indices, never floats


@settings(max_examples=40)
@given(seeds, ticks, purposes)
def test_draws_agrees_with_draw_at_extreme_agent_indices(seed: int, tick: int, purpose: int) -> None:
    agents = np.array([0, 1, (1 << 63) - 1, 1 << 63, U64_MAX - 1, U64_MAX], dtype=np.uint64)
    assert [int(v) for v in draws(seed, tick, agents, purpose)] == [draw(seed, tick, int(a), purpose) for a in agents]


@given(seeds, ticks, agent_indices, purposes)
def test_draw_counter_defaults_to_zero(seed: int, tick: int, agent: int, purpose: int) -> None:
    assert draw(seed, tick, agent, purpose) == draw(seed, tick, agent, purpose, counter=0)
    agents = np.array([agent], dtype=np.uint64)
    assert int(draws(seed, tick, agents, purpose)[0]) == draw(seed, tick, agent, purpose, counter=0)


@given(seeds, ticks, agent_indices, purposes, counters)
def test_draw_is_a_64_bit_pure_function_of_its_key(seed: int, tick: int, agent: int, purpose: int, c: int) -> None:
    value = draw(seed, tick, agent, purpose, c)
    assert 0 <= value <= U64_MAX
    assert draw(seed, tick, agent, purpose, c) == value


@given(seeds, ticks, agent_indices, purposes, counters, st.integers(1, U64_MAX))
def test_changing_any_one_key_component_changes_the_draw(
    seed: int, tick: int, agent: int, purpose: int, counter: int, delta: int
) -> None:
    # Every component enters through a bijection, so any change modulo 2**64 gives a different value.
    value = draw(seed, tick, agent, purpose, counter)
    assert draw((seed + delta) % (1 << 64), tick, agent, purpose, counter) != value
    assert draw(seed, tick + delta, agent, purpose, counter) != value
    assert draw(seed, tick, agent + delta, purpose, counter) != value
    assert draw(seed, tick, agent, purpose + delta, counter) != value
    assert draw(seed, tick, agent, purpose, counter + delta) != value


def test_purposes_are_independent_streams() -> None:
    values = {draw(42, 7, 3, p) for p in Purpose}
    assert len(values) == len(Purpose)


def test_tick_key_depends_on_seed_tick_and_purpose() -> None:
    base = tick_key(1, 2, Purpose.DECIDE)
    assert tick_key(1, 2, Purpose.DECIDE) == base
    assert tick_key(2, 2, Purpose.DECIDE) != base
    assert tick_key(1, 3, Purpose.DECIDE) != base
    assert tick_key(1, 2, Purpose.RITUAL) != base
    assert 0 <= base <= U64_MAX


@settings(max_examples=60)
@given(seeds, ticks, agent_indices, purposes, st.integers(1, 12))
def test_stream_next_k_times_equals_draw_with_counter_k(
    seed: int, tick: int, agent: int, purpose: int, count: int
) -> None:
    stream = Stream(seed, tick, agent, purpose)
    assert [stream.next() for _ in range(count)] == [draw(seed, tick, agent, purpose, counter=k) for k in range(count)]


@given(seeds, ticks, agent_indices)
def test_stream_purpose_defaults_to_decide(seed: int, tick: int, agent: int) -> None:
    assert Stream(seed, tick, agent).next() == draw(seed, tick, agent, Purpose.DECIDE)


@given(seeds, ticks, agent_indices, purposes, st.integers(1, 1 << 40))
def test_stream_below_uses_the_next_draw(seed: int, tick: int, agent: int, purpose: int, n: int) -> None:
    stream = Stream(seed, tick, agent, purpose)
    first = stream.below(n)
    second = stream.below(n)
    assert first == below(draw(seed, tick, agent, purpose, 0), n)
    assert second == below(draw(seed, tick, agent, purpose, 1), n)
    assert 0 <= first < n
    assert 0 <= second < n


@given(seeds, ticks, agent_indices)
def test_stream_chance_extremes(seed: int, tick: int, agent: int) -> None:
    stream = Stream(seed, tick, agent)
    assert not any(stream.chance(0) for _ in range(20))
    assert all(stream.chance(1_000_000) for _ in range(20))


@given(seeds, ticks, agent_indices, st.integers(0, 1_000_000))
def test_stream_chance_matches_below_one_million(seed: int, tick: int, agent: int, per_million: int) -> None:
    expected = below(draw(seed, tick, agent, Purpose.DECIDE, 0), 1_000_000) < per_million
    assert Stream(seed, tick, agent).chance(per_million) is expected


@given(seeds, ticks, agent_indices, st.lists(st.text(max_size=3), min_size=1, max_size=6).map(tuple))
def test_stream_choice_picks_the_indexed_item(seed: int, tick: int, agent: int, items: tuple[str, ...]) -> None:
    index = below(draw(seed, tick, agent, Purpose.DECIDE, 0), len(items))
    assert Stream(seed, tick, agent).choice(items) == items[index]


def test_stream_choice_covers_every_item_eventually() -> None:
    stream = Stream(5, 6, 7)
    items = ("a", "b", "c")
    assert {stream.choice(items) for _ in range(200)} == set(items)


# ---------------------------------------------------------------------------------------------------------------
# Range mapping


@given(u64, st.integers(1, 1 << 70))
def test_below_is_always_in_range(value: int, n: int) -> None:
    assert 0 <= below(value, n) < n


@given(st.integers(1, 1 << 40))
def test_below_reaches_both_ends(n: int) -> None:
    assert below(0, n) == 0
    assert below(U64_MAX, n) == n - 1


def test_below_is_monotone_in_the_draw() -> None:
    values = [0, 1 << 62, 1 << 63, 3 << 62, U64_MAX]
    assert [below(v, 4) for v in values] == [0, 1, 2, 3, 3]


@settings(max_examples=60)
@given(u64_arrays, st.integers(1, 1 << 40))
def test_below_array_is_in_range_and_is_the_remainder(values: npt.NDArray[np.uint64], n: int) -> None:
    result = below_array(values, n)
    assert result.dtype == np.int64
    assert [int(r) for r in result] == [int(v) % n for v in values]
    assert all(0 <= int(r) < n for r in result)


@settings(max_examples=200)
@given(u64_arrays, st.integers(1, (1 << 32) - 1))
def test_below_each_is_below_of_every_value_exactly(values: npt.NDArray[np.uint64], n: int) -> None:
    assert below_each(values, n).tolist() == [below(int(v), n) for v in values]


def test_below_each_is_exact_at_the_extremes() -> None:
    values = np.array([0, 1, (1 << 32) - 1, 1 << 32, (1 << 63) + 1, U64_MAX - 1, U64_MAX], dtype=np.uint64)
    for n in (1, 2, 3, 100, 600_001, (1 << 31) + 7, (1 << 32) - 1):
        assert below_each(values, n).tolist() == [below(int(v), n) for v in values]


@pytest.mark.parametrize("n", [0, -1, 1 << 32])
def test_below_each_refuses_a_range_it_cannot_take_exactly(n: int) -> None:
    with pytest.raises(ValueError, match="below_each"):
        below_each(np.array([1], dtype=np.uint64), n)


@settings(max_examples=60)
@given(u64_arrays, st.integers(0, 1 << 30))
def test_signed_noise_is_within_the_amplitude(values: npt.NDArray[np.uint64], amplitude: int) -> None:
    noise = signed_noise(values, amplitude)
    assert noise.dtype == np.int64
    assert noise.shape == values.shape
    assert all(-amplitude <= int(v) <= amplitude for v in noise)
    assert [int(v) for v in noise] == [int(v) % (2 * amplitude + 1) - amplitude for v in values]


@given(st.integers(0, 1 << 30))
def test_signed_noise_reaches_both_ends(amplitude: int) -> None:
    values = np.array([0, 2 * amplitude, amplitude], dtype=np.uint64)
    assert signed_noise(values, amplitude).tolist() == [-amplitude, amplitude, 0]


def test_signed_noise_of_zero_amplitude_is_zero() -> None:
    values = np.array([0, 1, 12345, U64_MAX], dtype=np.uint64)
    assert signed_noise(values, 0).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("purpose", list(Purpose))
def test_draws_spread_over_the_full_64_bit_range(purpose: Purpose) -> None:
    # A coarse sanity check on the vectorised path: 4096 draws land in all 16 top-nibble buckets.
    values = draws(2024, 3, np.arange(4096, dtype=np.uint64), purpose)
    assert len(set(values >> np.uint64(60))) == 16
    assert len(set(values.tolist())) == 4096
