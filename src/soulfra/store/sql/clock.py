"""The times the SQL adapter stamps rows with, and their reading back: everything Soulfra stores is UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything Soulfra stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
