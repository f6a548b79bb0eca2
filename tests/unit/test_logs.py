"""Logging as the serving processes configure it: one formatted line per record at the chosen level and above."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from soulfra.errors import ConfigError
from soulfra.logs import configure_logging

SCRIPT = """
import logging, warnings
from soulfra.logs import configure_logging
configure_logging({level!r})
log = logging.getLogger("soulfra.meta.engine")
log.debug("not shown at info")
log.info("instance %s started", "world-0")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("a tick failed")
warnings.warn("a library warned", UserWarning, stacklevel=1)
logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
"""


def test_records_at_the_level_and_above_are_one_formatted_line_each_with_tracebacks() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(level="info")], capture_output=True, text=True, check=True, timeout=60
    )
    lines = done.stderr.splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(rf"{stamp} INFO soulfra\.meta\.engine: instance world-0 started", lines[0])
    assert re.fullmatch(rf"{stamp} ERROR soulfra\.meta\.engine: a tick failed", lines[1])
    assert lines[2] == "Traceback (most recent call last):"
    assert "ZeroDivisionError: division by zero" in done.stderr
    assert re.search(rf"{stamp} WARNING py\.warnings: .*UserWarning: a library warned", done.stderr)
    assert "not shown" not in done.stderr
    assert "SQLiteImpl" not in done.stderr  # a chatty library's INFO stays out


def test_an_unknown_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown log level 'loud'"):
        configure_logging("loud")
