"""The schema comes from Alembic, and the migrations match server/tables.py exactly."""

import io
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import server.tables  # noqa: F401
from server.db import alembic_config, make_engine, upgrade_database


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    finally:
        engine.dispose()


def test_upgrade_head_matches_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nested/dir/fresh.db"
    assert _diff(url), "an empty database must differ from the metadata (else the check below proves nothing)"
    upgrade_database(url)
    assert _diff(url) == []
    engine = make_engine(url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    assert set(SQLModel.metadata.tables) <= names


def test_upgrade_is_idempotent_and_downgrade_is_clean(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    upgrade_database(url)
    upgrade_database(url)  # a second start is a no-op
    command.downgrade(alembic_config(url), "base")
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()
    upgrade_database(url)
    assert _diff(url) == []


def test_migrations_render_for_postgresql() -> None:
    """Offline SQL for PostgreSQL: the migrations use nothing SQLite-only."""
    config = alembic_config("postgresql+psycopg://user:p%40ss@localhost/logsense")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    assert "CREATE TABLE log_lines" in sql and "BIGSERIAL" in sql  # line ids are 64-bit there
    assert "ON DELETE CASCADE" in sql
    assert "PRAGMA" not in sql and "AUTOINCREMENT" not in sql
