"""A cluster host's process collects garbage less often than Python's default: young collections wait for
``GC_YOUNG`` allocations (a higher setting the process already has is kept), the older generations' thresholds as
they were."""

from __future__ import annotations

import gc

from soulfra.cluster.host import GC_YOUNG, collect_less_often


def test_a_host_raises_the_young_threshold_and_keeps_the_older_ones() -> None:
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 11, 12)
        collect_less_often()
        assert gc.get_threshold() == (GC_YOUNG, 11, 12)
        gc.set_threshold(GC_YOUNG * 3, 5, 6)
        collect_less_often()
        assert gc.get_threshold() == (GC_YOUNG * 3, 5, 6)
    finally:
        gc.set_threshold(*saved)
