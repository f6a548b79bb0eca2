"""Logging as the serving processes configure it: one formatted line per record at the chosen level and above, as
JSON or as a readable line, with the fields bound in the context it was logged in."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from soulfra.errors import ConfigError
from soulfra.logs import (
    ConsoleFormatter,
    JsonFormatter,
    bind,
    bound,
    checked_request_id,
    configure_logging,
    current_request_id,
    formatter_for,
    note,
    rebind,
)

SCRIPT = """
import logging, warnings
from soulfra.logs import configure_logging
configure_logging({level!r}, {log_format!r})
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
        [sys.executable, "-c", SCRIPT.format(level="info", log_format="console")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
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


def test_json_lines_in_a_service_one_object_per_record_with_the_traceback_as_a_field() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(level="info", log_format="auto")],  # stderr is a pipe: JSON
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["level"], line["logger"], line["event"]) for line in lines[:2]] == [
        ("info", "soulfra.meta.engine", "instance world-0 started"),
        ("error", "soulfra.meta.engine", "a tick failed"),
    ]
    assert lines[1]["exception"].startswith("Traceback (most recent call last):")
    assert lines[1]["exception"].endswith("ZeroDivisionError: division by zero")
    assert lines[2]["logger"] == "py.warnings"
    assert "UserWarning: a library warned" in lines[2]["event"]
    assert len(lines) == 3  # nothing below the level, no chatty library


def test_an_unknown_level_or_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown log level 'loud'"):
        configure_logging("loud")
    with pytest.raises(ConfigError, match="unknown log format 'xml'; expected one of auto, json, console"):
        configure_logging("info", "xml")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_console_on_a_terminal_and_json_otherwise() -> None:
    assert type(formatter_for("auto", Terminal())) is ConsoleFormatter
    assert type(formatter_for("auto", io.StringIO())) is JsonFormatter
    assert type(formatter_for("json", Terminal())) is JsonFormatter
    assert type(formatter_for("console", io.StringIO())) is ConsoleFormatter


def record(message: str = "tick %d done", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("soulfra.platforms.runtime", logging.INFO, __file__, 1, message, args or (7,), None)
    made.__dict__.update(extra)
    made.created = datetime(2026, 12, 6, 16, 42, 44, 123456, tzinfo=UTC).timestamp()
    return made


def test_a_json_line_has_time_level_event_logger_and_the_bound_fields() -> None:
    with bind(request_id="abc123", identity="alice"), bind(instance="world-0", tick=None):
        line = json.loads(JsonFormatter().format(record()))
    assert line == {
        "time": "2026-12-06T16:42:44.123Z", "level": "info", "event": "tick 7 done",
        "logger": "soulfra.platforms.runtime", "instance": "world-0", "request_id": "abc123", "identity": "alice",
    }  # fmt: skip
    assert list(line)[4:] == ["instance", "request_id", "identity"]  # the context fields in their fixed order
    assert "request_id" not in json.loads(JsonFormatter().format(record()))  # the binding ended with its block


def test_a_records_own_extra_fields_win_over_the_bound_ones_and_none_is_left_out() -> None:
    with bind(request_id="abc123", instance="world-0"):
        line = json.loads(JsonFormatter().format(record(tick=12, seqs=[3, 4], instance=None, request_id="r2")))
    assert (line["tick"], line["seqs"], line["instance"], line["request_id"]) == (12, [3, 4], "world-0", "r2")


def test_a_json_line_is_one_line_whatever_the_message() -> None:
    text = JsonFormatter().format(record('a "quoted"\nmessage %s', "é"))
    assert "\n" not in text
    assert json.loads(text)["event"] == 'a "quoted"\nmessage é'


def test_a_console_line_is_the_readable_line_then_the_fields() -> None:
    formatter = ConsoleFormatter()
    assert formatter.format(record()).endswith(" INFO soulfra.platforms.runtime: tick 7 done")
    with bind(request_id="abc123"):
        shown = formatter.format(record(tick=7, seqs=[3, 4]))
    assert shown.endswith(" INFO soulfra.platforms.runtime: tick 7 done [tick=7 request_id=abc123 seqs=3,4]")


def test_note_adds_to_the_innermost_binding_until_it_ends_and_does_nothing_outside_one() -> None:
    note(identity="nobody")
    assert bound() == {}
    with bind(request_id="abc123"):
        with bind(instance="world-0"):
            note(identity="alice")
            assert bound() == {"request_id": "abc123", "instance": "world-0", "identity": "alice"}
        assert bound() == {"request_id": "abc123"}
        assert current_request_id() == "abc123"
    assert current_request_id() is None


def test_rebind_drops_what_was_bound_for_work_that_outlives_its_request() -> None:
    with bind(request_id="abc123", identity="alice"):
        with rebind(instance="world-0"):
            assert bound() == {"instance": "world-0"}
        assert bound() == {"request_id": "abc123", "identity": "alice"}


def test_a_task_keeps_the_fields_bound_when_it_started() -> None:
    async def main() -> tuple[str | None, str | None]:
        async def later() -> str | None:
            await asyncio.sleep(0)
            return current_request_id()

        with bind(request_id="abc123"):
            task = asyncio.create_task(later())
        with bind(request_id="other"):
            return await task, current_request_id()

    assert asyncio.run(main()) == ("abc123", "other")


@pytest.mark.parametrize(
    ("given", "kept"),
    [("abc123", "abc123"), ("a.b_c-D9", "a.b_c-D9"), ("x" * 64, "x" * 64), ("x" * 65, None), ("", None),
     ("a b", None), ("a\nb", None), ("abc\n", None), ('a"b', None), (123, None), (None, None)],
)  # fmt: skip
def test_a_request_id_from_outside_is_kept_only_when_it_is_a_safe_token(given: object, kept: str | None) -> None:
    assert checked_request_id(given) == kept
