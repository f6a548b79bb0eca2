"""Migrations build exactly ``soulfra.store.schema`` on SQLite and PostgreSQL, repeat as no-ops, and keep to the
test's own PostgreSQL schema (JSON as JSONB there). Opening a database that cannot be used is a
``StorageUnavailableError``. SQL only: an in-memory store has no schema to migrate and no URL to open.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from soulfra.errors import ConfigError, StorageError, StorageUnavailableError
from soulfra.store import SqlStore, head_revision, make_engine, schema, upgrade

JSON_COLUMNS = {
    ("agents", "personality"),
    ("agents", "state"),
    ("ritual_logs", "ritual_data"),
    ("inputs", "body"),
    ("instances", "world"),
    ("audit_log", "detail"),
    ("audit_log", "instances"),
    ("api_tokens", "instances"),
    ("instance_rules", "rules"),
}


def _tables(engine: sa.Engine) -> dict[str, list[str]]:
    inspector = sa.inspect(engine)
    return {name: [c["name"] for c in inspector.get_columns(name)] for name in sorted(inspector.get_table_names())}


def _revisions(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def test_upgrade_builds_every_table_and_repeats_as_a_no_op(sql_store: SqlStore) -> None:
    before = _tables(sql_store.engine)
    assert set(before) == set(schema.metadata.tables) | {"alembic_version"}
    assert _revisions(sql_store.engine) == [head_revision()]
    assert upgrade(sql_store.engine) == (head_revision(), head_revision())
    assert upgrade(sql_store.engine) == (head_revision(), head_revision())
    assert _tables(sql_store.engine) == before
    assert _revisions(sql_store.engine) == [head_revision()]


def test_upgrade_of_an_empty_database_reports_where_it_started(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert _tables(engine) == {}
        assert upgrade(engine) == (None, head_revision())
        assert _revisions(engine) == [head_revision()]
    finally:
        engine.dispose()


def test_migrated_schema_equals_the_declared_one(sql_store: SqlStore) -> None:
    with sql_store.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert differences == []


def test_a_store_opened_without_migrating_uses_the_migrated_schema(sql_store: SqlStore, database_url: str) -> None:
    sql_store.audit.append(actor="test", action="seen", instance_id=None, detail={})
    unmigrated = SqlStore.open(database_url, migrate=False)
    try:
        assert [e.action for e in unmigrated.audit.read()] == ["seen"]
    finally:
        unmigrated.close()


@pytest.mark.postgres
def test_postgresql_keeps_every_table_in_the_tests_own_schema(postgres_store: SqlStore, postgres_schema: str) -> None:
    with postgres_store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_schema()")).scalar_one() == postgres_schema
        placed = conn.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :schema"),
            {"schema": postgres_schema},
        ).scalars()
        assert set(placed) == set(schema.metadata.tables) | {"alembic_version"}


@pytest.mark.postgres
def test_postgresql_stores_json_as_jsonb(postgres_store: SqlStore, postgres_schema: str) -> None:
    with postgres_store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = :schema AND data_type IN ('json', 'jsonb')"
            ),
            {"schema": postgres_schema},
        ).all()
    assert {(table, column): kind for table, column, kind in rows} == dict.fromkeys(JSON_COLUMNS, "jsonb")


def test_json_columns_are_declared_json_on_every_backend() -> None:
    declared = {
        (table.name, column.name)
        for table in schema.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, sa.JSON)
    }
    assert declared == JSON_COLUMNS


BAD_URLS = [
    pytest.param("mysql://x", "unsupported database 'mysql'", id="mysql"),
    pytest.param("garbage", "not a database URL", id="garbage"),
    pytest.param("worlds.db", "try sqlite:///worlds.db", id="a-file-name"),
    pytest.param("", "not a database URL", id="empty"),
    pytest.param("sqlite:///:memory:", "in-memory", id="sqlite-memory"),
]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_a_url_that_names_no_usable_database_is_a_bad_value(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SqlStore.open(url)
    assert caught.value.code == "invalid_config"
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


UNUSABLE_URLS = [
    pytest.param("sqlite:///{tmp}/missing/dir/s.db", "does not exist", id="sqlite-missing-directory"),
    pytest.param("postgresql+psycopg://postgres@127.0.0.1:1/test", "port 1 failed", id="postgresql-closed-port"),
    pytest.param("postgresql://postgres@127.0.0.1:1/test", "port 1 failed", id="postgresql-no-driver-name"),
]


@pytest.mark.parametrize(("url", "reason"), UNUSABLE_URLS)
def test_an_unusable_url_is_storage_unavailable(tmp_path: Path, url: str, reason: str) -> None:
    with pytest.raises(StorageUnavailableError) as caught:
        SqlStore.open(url.format(tmp=tmp_path))
    assert isinstance(caught.value, StorageError)
    assert caught.value.code == "storage_unavailable"
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message  # one readable line, not a driver's dump
    assert "sqlalchemy" not in message.lower()
    assert not isinstance(caught.value.__cause__, StorageError)  # translated once, at the edge


def test_a_closed_postgresql_port_fails_on_first_use_when_not_migrating() -> None:
    store = SqlStore.open("postgresql+psycopg://postgres@127.0.0.1:1/test", migrate=False)
    try:
        with pytest.raises(StorageUnavailableError, match="listing instances"):
            store.instances.list_instances()
    finally:
        store.close()


@pytest.mark.postgres
def test_a_missing_postgresql_database_says_how_to_create_it(postgres_url: str) -> None:
    url = sa.engine.make_url(postgres_url).set(database="soulfra_no_such_database")
    with pytest.raises(StorageUnavailableError) as caught:
        SqlStore.open(url.render_as_string(hide_password=False))
    assert "createdb soulfra_no_such_database" in str(caught.value)
