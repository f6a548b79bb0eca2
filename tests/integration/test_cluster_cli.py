"""``soulfra cluster join`` refuses in one line what it cannot do before it starts anything: joining a cluster
without its Ray token."""

from __future__ import annotations

import pytest

from .support import one_error_line, soulfra


def test_joining_without_the_cluster_s_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    line = one_error_line(soulfra("cluster", "join", "--address", "127.0.0.1:1"), 2)
    assert line == (
        "soulfra: error: joining a cluster needs its Ray token: set RAY_AUTH_TOKEN as for soulfra cluster local"
    )
