"""Database plumbing: the engine, Alembic migrations run from code, sessions outside requests.

The schema comes only from `migrations/` (`upgrade_database`), never from `create_all`.

A SQLite database is the owner's alone, whatever the umask: the file (and its `-wal`/`-shm`) is
created 0600 and tightened to 0600 if an older version left it readable by others; the folders
made for it (the data directory by default) are 0700. Folders that exist are left as they are.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

log = logging.getLogger("logsense.db")

# The migrations folder sits next to the `server` package: found from the repo and from an
# editable install alike (a wheel would need it shipped as package data).
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Pages in the WAL before a commit copies them into the database file itself. The server's
# Checkpointer does that in the background long before; this bounds the WAL (~40 MB) for
# processes without one (the CLI, tests).
SQLITE_AUTOCHECKPOINT_PAGES = 10_000


DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def make_private_dir(path: Path) -> None:
    """`mkdir -p path`, every folder it makes mode 0700 (umask-independent); existing ones untouched."""
    missing = []
    p = Path(path)
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:  # made meanwhile by another process: theirs to decide
            continue
        os.chmod(folder, DIR_MODE)


def _tighten(path: Path) -> None:
    """Mode 0600 for a file others can read or write (nothing when it is absent)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        log.warning("%s is accessible by others (mode %o); tightening to 0600", path, mode)
        os.chmod(path, FILE_MODE)


def _sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None: not SQLite, or in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:" \
            or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database)


def prepare_sqlite_file(path: Path) -> None:
    """The database file and its folders, made private before SQLite first opens it."""
    make_private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))  # empty: SQLite's new database
        os.chmod(path, FILE_MODE)  # whatever the umask took away or left
    except FileExistsError:
        pass
    for p in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES)):
        _tighten(p)


def _on_sqlite_connect(dbapi_conn, _record) -> None:  # noqa: ANN001 (DB-API objects)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cur.execute("PRAGMA synchronous=FULL")  # a commit survives power loss: acknowledged means durable
    cur.execute("PRAGMA foreign_keys=ON")  # ON DELETE CASCADE and FK checks, as on PostgreSQL
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # wait for a lock instead of failing
    cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    path = _sqlite_path(url)
    if path is not None:
        prepare_sqlite_file(path)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )
    event.listen(engine, "connect", _on_sqlite_connect)
    if path is not None:  # SQLite gives -wal/-shm the file's mode; ones an older version left open are tightened
        event.listen(engine, "connect", lambda *_: [_tighten(path.with_name(path.name + s)) for s in SQLITE_SIDE_FILES])
    return engine


def alembic_config(url: str) -> Config:
    """An Alembic config for `url` without an ini file; `env.py` reads the URL from its attributes."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url  # not via set_main_option: '%' in passwords would be interpolated
    return config


def ping(engine: Engine) -> None:
    """A round trip to the database; raises whatever keeps it from answering."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")


def upgrade_database(url: str, revision: str = "head") -> None:
    """`alembic upgrade head` on `url` (creates the SQLite file and its folder if needed)."""
    path = _sqlite_path(url)
    if path is not None:
        prepare_sqlite_file(path)
    command.upgrade(alembic_config(url), revision)


class Checkpointer:
    """SQLite: copies committed WAL pages into the database file from a background thread.

    Otherwise the commit that crosses the autocheckpoint threshold does it, and that ingest
    batch waits for it (every few batches, tens of ms). PASSIVE never waits for, nor blocks,
    readers or writers, and sqlite3 releases the GIL meanwhile, so it runs beside ingest on
    another core. Durability is unchanged: a commit is durable once it is in the WAL.
    """

    def __init__(self, engine: Engine, every: float = 0.1):
        self.engine, self.every = engine, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)

    def start(self) -> "Checkpointer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(self.every):
            try:
                with self.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                failures = 0
            except Exception:  # noqa: BLE001 - the autocheckpoint still bounds the WAL
                failures += 1
                if failures in (1, 100):
                    log.exception("WAL checkpoint failed (%d times in a row)", failures)


@contextmanager
def open_session(engine: Engine) -> Iterator[Session]:
    """A session for code outside requests (worker, scheduler, CLI); the caller commits."""
    with Session(engine) as session:
        yield session
