"""Recorded input logs must keep giving the recorded state hashes and event streams.

A failure here means a world's behaviour changed: either a bug, or an intended change that must bump
``FORMAT_VERSION`` (if the encoding changed) and regenerate these with ``python tests/golden/regenerate.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from golden import first_divergence, load_cases, play, recorded_ticks
from soulfra.cli.runner import load_inputs

HERE = Path(__file__).parent
CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_run_gives_the_recorded_hashes(case: dict[str, Any]) -> None:
    played = play(case)
    divergence = first_divergence(recorded_ticks(case), played.tick_hashes)
    assert divergence is None, f"{case['name']}: {divergence}"
    assert (played.state_hash, played.events_digest) == (case["state_hash"], case["events_digest"])


def test_a_changed_history_is_reported_at_the_tick_it_first_diverges() -> None:
    """The check above names the first divergent tick: a whisper dropped from a recorded log shows at the tick
    right after the one it was stamped for."""
    (case,) = [c for c in CASES if c["name"] == "operator-day"]
    inputs = load_inputs(HERE / case["inputs"])
    dropped = inputs[len(inputs) // 2]
    played = play(case, [item for item in inputs if item is not dropped])
    divergence = first_divergence(recorded_ticks(case), played.tick_hashes)
    assert divergence is not None
    assert divergence.startswith(f"first divergent tick: {dropped.tick + 1} ")
