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

from golden import load_cases, play

CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_run_gives_the_recorded_hashes(case: dict[str, Any]) -> None:
    state_hash, events_digest = play(case)
    assert (state_hash, events_digest) == (case["state_hash"], case["events_digest"])
