import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlmodel import Session, select

from logsense.server.db import Checkpointer, make_engine, upgrade_database
from logsense.server.tables import ApiKey, LogLine, Stream, Window, WindowLine


def test_sqlite_connections_get_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/p.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    engine.dispose()


def test_deleting_a_stream_cascades_and_times_come_back_in_utc(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    upgrade_database(url)
    engine = make_engine(url)
    local = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with Session(engine) as s:
        stream = Stream(name="svc", settings={})
        s.add(stream)
        s.commit()
        line = LogLine(stream_id=stream.id, raw="a 1", masked="a <NUM>", sessions=["k"], received_at=local)
        window = Window(stream_id=stream.id, key="k")
        s.add_all([line, window])
        s.commit()
        s.add(WindowLine(window_id=window.id, position=0, line_id=line.id))
        s.add(ApiKey(name="n", prefix="ls_x", key_hash="0" * 64))
        s.commit()
        line_id = line.id
    with Session(engine) as s:
        got = s.get(LogLine, line_id)
        assert got.received_at == local and got.received_at.tzinfo is not None
        assert got.received_at.utcoffset() == timedelta(0) and got.sessions == ["k"]
        s.delete(s.exec(select(Stream)).one())
        s.commit()
        assert s.exec(select(LogLine)).all() == [] and s.exec(select(WindowLine)).all() == []
        assert s.exec(select(Window)).all() == []
        assert len(s.exec(select(ApiKey)).all()) == 1  # unrelated rows stay
    engine.dispose()


def _file_grows(path: Path, engine, seconds: float) -> bool:
    """Commit ~1 MB; does the database file itself (not its WAL) take it within `seconds`?"""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS blobs (b BLOB)")
    size = path.stat().st_size
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO blobs VALUES (randomblob(1000000))")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.stat().st_size > size + 500_000:
            return True
        time.sleep(0.05)
    return False


def test_the_checkpointer_moves_the_wal_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    engine = make_engine(f"sqlite:///{path}")
    assert not _file_grows(path, engine, 0.5)  # under the autocheckpoint threshold: it stays in the WAL
    checkpointer = Checkpointer(engine, every=0.05).start()
    try:
        assert _file_grows(path, engine, 5.0)
    finally:
        checkpointer.stop()
    engine.dispose()


def test_sqlite_bulk_inserts_go_in_power_of_two_statements_within_the_variable_limit(tmp_path: Path) -> None:
    """`store.insert_tuples` on SQLite: every row arrives, in order, in multi-row INSERTs of at most
    512 rows (or what SQLite's variable limit allows), each a power of two, so a few statement
    texts serve every batch size."""
    import sqlite3

    from sqlalchemy import event, text

    from logsense.server.store import insert_tuples

    engine = make_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda conn, cur, st, *a: statements.append(st))
    rows = [(i, f"line {i}", None if i % 7 else 0.5) for i in range(1, 1001)]
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, raw TEXT NOT NULL, score FLOAT)"))
        statements.clear()
        insert_tuples(conn, "t", ("id", "raw", "score"), rows)
        sizes = [st.count("(?, ?, ?)") for st in statements]
        assert sizes == [512, 256, 128, 64, 32, 8], sizes  # 1,000 rows
        assert conn.execute(text("SELECT id, raw, score FROM t ORDER BY id")).all() == rows

        statements.clear()
        conn.connection.dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)  # 33 rows of 3
        insert_tuples(conn, "t", ("id", "raw", "score"), [(i, "x", None) for i in range(2001, 2071)])
        assert [st.count("(?, ?, ?)") for st in statements] == [32, 32, 4, 2], statements
        assert conn.execute(text("SELECT count(*) FROM t WHERE id > 2000")).scalar() == 70
        insert_tuples(conn, "t", ("id", "raw", "score"), [])  # nothing to do, no statement
    engine.dispose()
