"""The schema comes from Alembic, and the migrations match server/tables.py exactly."""

import io
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import logsense.server.tables  # noqa: F401
from logsense.server.db import alembic_config, make_engine, upgrade_database


def _not_fts(name: str | None, type_: str, parent_names: dict) -> bool:
    """The FTS5 index of lines (and its shadow tables) is made by SQL in 0015, not by the metadata."""
    return not (type_ == "table" and name is not None and name.startswith("line_search"))


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": _not_fts})
            return compare_metadata(ctx, SQLModel.metadata)
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


def test_line_counts_are_filled_from_the_lines_already_stored(tmp_path: Path) -> None:
    """Migration 0003 counts the lines of a database that had none of it, per stream and slot."""
    from datetime import datetime, timezone

    from sqlmodel import Session, select

    from logsense.server import store
    from logsense.server.tables import LineCount, LogLine, Stream

    url = f"sqlite:///{tmp_path}/old.db"
    upgrade_database(url, "0002")
    engine = make_engine(url)
    t0 = datetime(2026, 11, 30, 12, 0, 5, tzinfo=timezone.utc)  # slots: 12:00:00-09 twice, 12:00:10 once
    t1 = datetime(2026, 11, 30, 12, 0, 12, tzinfo=timezone.utc)
    with engine.begin() as conn:  # the tables as 0002 left them: no line_counts yet
        conn.exec_driver_sql("INSERT INTO streams (id, name, settings, created_at, updated_at) "
                             "VALUES (1, 'a', '{}', '2026-11-30', '2026-11-30'), (2, 'b', '{}', '2026-11-30', '2026-11-30')")
        for stream_id, when in ((1, t0), (1, t0), (1, t1), (2, t1)):
            conn.exec_driver_sql(
                "INSERT INTO log_lines (stream_id, received_at, raw, masked, sessions, severity) "
                "VALUES (?, ?, 'x', 'x', '[]', 'normal')", (stream_id, when.replace(tzinfo=None).isoformat(" ")))
    engine.dispose()
    upgrade_database(url)
    engine = make_engine(url)
    with Session(engine) as s:
        got = {(c.stream_id, c.slot): c.n for c in s.exec(select(LineCount)).all()}
        assert got == {(1, store.slot_of(t0)): 2, (1, store.slot_of(t1)): 1, (2, store.slot_of(t1)): 1}
        assert store.line_totals(s) == {1: 3, 2: 1} == {sid: len(s.exec(select(LogLine).where(LogLine.stream_id == sid)).all())
                                                        for sid in (1, 2)}
        assert store.line_totals(s, since=t1) == {1: 1, 2: 1}
        s.delete(s.get(Stream, 2))
        s.commit()
        assert store.line_totals(s) == {1: 3}  # cascades with the stream
    engine.dispose()


def test_template_counts_are_filled_from_the_lines_already_stored(tmp_path: Path) -> None:
    """Migration 0004 counts the lines of each template per slot, with the train-mode ones and the
    slot's first line; the anomaly page's questions are then answered from the counts."""
    from datetime import datetime, timezone

    from sqlmodel import Session, select

    from logsense.server import store
    from logsense.server.tables import Stream, TemplateCount

    url = f"sqlite:///{tmp_path}/old.db"
    upgrade_database(url, "0003")
    engine = make_engine(url)
    t0 = datetime(2026, 11, 30, 12, 0, 5, tzinfo=timezone.utc)
    t1 = datetime(2026, 11, 30, 12, 0, 12, tzinfo=timezone.utc)  # the next slot
    with engine.begin() as conn:  # the tables as 0003 left them: no template_counts yet
        conn.exec_driver_sql("INSERT INTO streams (id, name, settings, created_at, updated_at) "
                             "VALUES (1, 'a', '{}', '2026-11-30', '2026-11-30'), (2, 'b', '{}', '2026-11-30', '2026-11-30')")
        lines = [(1, t0, 7, "train"), (1, t0, 7, "normal"), (1, t1, 7, "watch"), (1, t1, 8, "watch"),
                 (1, t1, None, "normal"), (2, t1, 7, "normal")]  # ids 1..6
        for stream_id, when, tid, severity in lines:
            conn.exec_driver_sql(
                "INSERT INTO log_lines (stream_id, received_at, raw, masked, template_id, sessions, severity) "
                "VALUES (?, ?, 'x', 'x', ?, '[]', ?)", (stream_id, when.replace(tzinfo=None).isoformat(" "), tid, severity))
    engine.dispose()
    upgrade_database(url)
    engine = make_engine(url)
    s0, s1 = store.slot_of(t0), store.slot_of(t1)
    with Session(engine) as s:
        got = {(c.stream_id, c.template_id, c.slot): (c.n, c.n_train, c.first_line_id)
               for c in s.exec(select(TemplateCount)).all()}
        assert got == {(1, 7, s0): (2, 1, 1), (1, 7, s1): (1, 0, 3), (1, 8, s1): (1, 0, 4), (2, 7, s1): (1, 0, 6)}
        assert store.template_first_line(s, 1, 8) == 4 and store.template_first_line(s, 1, 9) is None
        assert store.template_lines_before(s, 1, 7, 3, s1) == 2  # both lines of the earlier slot
        assert store.template_lines_before(s, 1, 7, 2, s0) == 1  # the slot's first line, by a scan
        assert store.template_lines(s, 1, 7, s0, s1) == 1 and store.template_lines(s, 1, 7, s0 - 1, s1) == 3
        assert store.template_has_normal(s, 1, 7) and not store.template_has_normal(s, 1, 8)
        s.execute(text("UPDATE log_lines SET label = 'normal' WHERE id = 4"))  # an operator refuted it
        assert store.template_has_normal(s, 1, 8)
        s.delete(s.get(Stream, 2))
        s.commit()
        assert {c.stream_id for c in s.exec(select(TemplateCount)).all()} == {1}  # cascades with the stream
    engine.dispose()
