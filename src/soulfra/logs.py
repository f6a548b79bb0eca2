"""Logging, configured once by the processes that serve (``soulfra up``, ``soulfra serve``): one line per record on
stderr at the level their settings give (``--log-level``), as JSON objects or as readable lines (``--log-format``:
``auto`` is readable on a terminal, JSON otherwise). Library code only ever logs through
``logging.getLogger(__name__)``; nothing else configures handlers (uvicorn's records come here too).

What a record is about comes from the context it is logged in: ``bind(request_id=..., identity=..., instance=...)``
holds fields for the duration of an HTTP request or a bus request (contextvars, so each task has its own), and a
record's own ``extra`` fields add to them. Must not import anything of Soulfra's but its errors.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from soulfra.errors import ConfigError

__all__ = [
    "FIELDS",
    "FORMATS",
    "LEVELS",
    "ConsoleFormatter",
    "JsonFormatter",
    "bind",
    "bound",
    "checked_request_id",
    "configure_logging",
    "current_request_id",
    "formatter_for",
    "note",
    "rebind",
]

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("auto", "json", "console")
FIELDS = ("instance", "tick", "request_id", "identity")  # the context fields, in the order lines show them
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = ("alembic", "nats", "httpx", "sqlalchemy")
# asyncio logs this each time nats-py's stream protocol ends a TLS connection (it asks to stay half-open, which TLS
# cannot): nothing is wrong and nothing can be done about it, so it would only hide a real error line beside it.
NOISE = frozenset({("asyncio", "returning true from eof_received() has no effect when using ssl")})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")

# The fields bound in this context. Each ``bind`` sets a new dict (never changes the one it found), so a task started
# inside a binding keeps what was bound when it started and nothing leaks out of the block.
_EMPTY: Mapping[str, Any] = {}
_BOUND: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("soulfra_log_fields", default=_EMPTY)


class bind:  # noqa: N801 -- used as a function: ``with bind(request_id=...)``
    """Add ``fields`` (those not None) to every record logged in this context until the block ends. (A class, not a
    generator: it runs for every request a platform handles.)"""

    __slots__ = ("_fields", "_reset")

    def __init__(self, **fields: Any) -> None:
        self._fields = {k: v for k, v in fields.items() if v is not None}
        self._reset: contextvars.Token[Mapping[str, Any]] | None = None

    def _bound(self) -> Mapping[str, Any]:
        return {**_BOUND.get(), **self._fields}

    def __enter__(self) -> None:
        self._reset = _BOUND.set(self._bound())

    def __exit__(self, *exc: object) -> None:
        if self._reset is not None:
            _BOUND.reset(self._reset)
            self._reset = None


class rebind(bind):  # noqa: N801
    """``bind`` that drops what was bound before: for work that outlives the request that started it (a tick loop
    launched by an HTTP request is not about that request)."""

    __slots__ = ()

    def _bound(self) -> Mapping[str, Any]:
        return dict(self._fields)


def note(**fields: Any) -> None:
    """Add ``fields`` to the innermost ``bind`` in progress, for the rest of its block: for what is learnt partway
    through a request (who sent it, once authenticated). Outside every binding it does nothing."""
    current = _BOUND.get()
    if current is not _EMPTY:
        _BOUND.set({**current, **{k: v for k, v in fields.items() if v is not None}})


def bound() -> Mapping[str, Any]:
    """The fields bound in this context."""
    return _BOUND.get()


def current_request_id() -> str | None:
    """The request this context is handling, if one is bound."""
    found = _BOUND.get().get("request_id")
    return found if isinstance(found, str) else None


def checked_request_id(value: object) -> str | None:
    """``value`` if it can be a request id (1 to 64 of letters, digits, ``.``, ``_``, ``-``), else None: an id from
    outside (a header, a bus message) goes into logs only when it cannot forge or break a line."""
    return value if isinstance(value, str) and _REQUEST_ID.fullmatch(value) else None


# The attributes every LogRecord has: any other one came from ``extra`` and is shown as a field.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The bound fields, then the record's own ``extra`` (which win), context fields first."""
    extra = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and v is not None}
    merged = {**_BOUND.get(), **extra}
    ordered = {name: merged.pop(name) for name in FIELDS if name in merged}
    return {**ordered, **merged}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601, UTC), level, event (the message), logger, the context fields
    (instance, tick, request_id, identity, when known), any ``extra``, and ``exception`` with its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line: dict[str, Any] = {
            "time": stamp,
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        for name, value in _fields(record).items():
            line.setdefault(name, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """A readable line: time, level, logger and message, then the context fields as ``name=value``."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 -- logging.Formatter's name
        line = super().formatMessage(record)
        fields = _fields(record)
        if not fields:
            return line
        shown = " ".join(f"{name}={_shown(value)}" for name, value in fields.items())
        return f"{line} [{shown}]"


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def configure_logging(level: str, log_format: str = "auto", *, stream: TextIO | None = None) -> None:
    """Send every record at ``level`` or above to ``stream`` (stderr), one line each in ``log_format``; warnings
    from ``warnings.warn`` too."""
    if level.lower() not in LEVELS:
        raise ConfigError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    if log_format not in FORMATS:
        raise ConfigError(f"unknown log format {log_format!r}; expected one of {', '.join(FORMATS)}")
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter_for(log_format, out))
    handler.addFilter(_not_noise)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for chatty in QUIET:  # libraries that narrate every step at INFO: heard from at WARNING unless debugging
        logging.getLogger(chatty).setLevel(logging.DEBUG if level.lower() == "debug" else logging.WARNING)
    logging.captureWarnings(True)


def formatter_for(log_format: str, stream: TextIO) -> logging.Formatter:
    """The formatter of ``log_format`` for lines written to ``stream``: ``auto`` is console on a terminal."""
    if log_format == "auto":
        log_format = "console" if stream.isatty() else "json"
    return JsonFormatter() if log_format == "json" else ConsoleFormatter()


def _not_noise(record: logging.LogRecord) -> bool:
    return (record.name, record.getMessage()) not in NOISE
