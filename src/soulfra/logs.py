"""Logging, configured once by the processes that serve (``soulfra up``, ``soulfra serve``): one line per record on
stderr, with time, level and logger, at the level their settings give (``--log-level`` or ``SOULFRA_LOG_LEVEL``, read
by soulfra.settings). Library code only ever logs through ``logging.getLogger(__name__)``; nothing else configures
handlers (uvicorn's records come here too)."""

from __future__ import annotations

import logging
import sys

from soulfra.errors import ConfigError

__all__ = ["LEVELS", "configure_logging"]

LEVELS = ("debug", "info", "warning", "error")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = ("alembic", "nats", "httpx", "sqlalchemy")
# asyncio logs this each time nats-py's stream protocol ends a TLS connection (it asks to stay half-open, which TLS
# cannot): nothing is wrong and nothing can be done about it, so it would only hide a real error line beside it.
NOISE = frozenset({("asyncio", "returning true from eof_received() has no effect when using ssl")})


def configure_logging(level: str) -> None:
    """Send every record at ``level`` or above to stderr, formatted; warnings from ``warnings.warn`` too."""
    if level.lower() not in LEVELS:
        raise ConfigError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_not_noise)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for chatty in QUIET:  # libraries that narrate every step at INFO: heard from at WARNING unless debugging
        logging.getLogger(chatty).setLevel(logging.DEBUG if level.lower() == "debug" else logging.WARNING)
    logging.captureWarnings(True)


def _not_noise(record: logging.LogRecord) -> bool:
    return (record.name, record.getMessage()) not in NOISE
