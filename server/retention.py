"""Data retention per stream (`StreamSettings.retention_days`; None: keep everything).

`prune(engine, stream_id, days)` deletes what is older than `days` (by arrival, `received_at`):
1. anomalies refuted or muted and created before the cutoff (their feedback and alert rows
   cascade with them); open and confirmed ones stay, whatever their age;
2. windows wholly older (their newest line arrived before the cutoff), finished (done or
   failed), with no operator label, no anomaly of their own and no line of a remaining anomaly
   or an operator-labelled line: with their `window_lines`;
3. lines received before the cutoff that are in no remaining window, belong to no remaining
   anomaly and carry no operator label. So a kept anomaly keeps its line and its windows whole,
   and a kept window keeps all its lines: windows and window_lines stay consistent;
4. resolved incidents last seen before the cutoff with no anomaly left (their notes with them).

Each chunk (`CHUNK` ids) is its own short write transaction, so ingest waits for one chunk at
most, never for the whole run. Lines are walked by id from the stream's oldest (ids grow with
arrival), so a run costs what it deletes, not the stream's history.

`line_counts` and `template_counts` are history and are not pruned: the overview's totals and
charts count lines received, and the anomaly page's reasons ("new template", "never in normal
data", bursts) need a template's whole history; a template count's `first_line_id` may then
name a deleted line. Operator-labelled lines and windows are kept: they are the model's
training and validation truth (a restart relearns refuted lines from them).

The scheduler runs `prune_all` daily (`server.scheduler.RETENTION_CRON`); `POST
/api/v1/streams/{name}/retention` runs it for one stream now.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, exists, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from logsense.server import store
from logsense.server.tables import Anomaly, Incident, LogLine, Stream, Window, WindowLine, utcnow

log = logging.getLogger("logsense.retention")

CHUNK = 10_000  # ids per delete transaction


def prune(engine: Engine, stream_id: int, days: int, now: datetime | None = None, chunk: int = CHUNK) -> dict:
    """Delete the stream's data older than `days` as the module says; what was deleted:
    {"cutoff", "anomalies", "windows", "window_lines", "lines", "incidents", "seconds"}."""
    started = time.monotonic()
    cutoff = (now or utcnow()) - timedelta(days=days)
    out = {"cutoff": cutoff, "anomalies": _anomalies(engine, stream_id, cutoff, chunk)}
    out["windows"], out["window_lines"] = _windows(engine, stream_id, cutoff, chunk)
    out["lines"] = _lines(engine, stream_id, cutoff, chunk)
    out["incidents"] = _incidents(engine, stream_id, cutoff, chunk)
    out["seconds"] = round(time.monotonic() - started, 3)
    return out


def prune_all(engine: Engine, now: datetime | None = None) -> dict[str, dict]:
    """`prune` every stream with a `retention_days`; {stream name: what was deleted}."""
    with Session(engine) as db:
        streams = db.execute(select(Stream)).scalars().all()
    done = {}
    for s in streams:
        days = s.config().retention_days
        if days is None:
            continue
        try:
            done[s.name] = prune(engine, s.id, days, now)
        except Exception:  # noqa: BLE001 (one stream's failure leaves the others to run)
            log.exception("retention of stream %s failed", s.name)
            continue
        log.info("retention of stream %s (%d days): %s", s.name, days, done[s.name])
    return done


def _chunks(engine: Engine, pick: Any, chunk: int, remove: Any) -> int:
    """Repeat: pick up to `chunk` ids (a select, in the write transaction), delete them
    (`remove(session, ids)`), commit; until none is picked. The number removed."""
    total = 0
    while True:
        with store.write_session(engine) as db:
            ids = list(db.execute(pick.limit(chunk)).scalars().all())
            if ids:
                remove(db, ids)
        total += len(ids)
        if len(ids) < chunk:
            return total


def _anomalies(engine: Engine, stream_id: int, cutoff: datetime, chunk: int) -> int:
    a = Anomaly.__table__.c
    pick = select(a.id).where(a.stream_id == stream_id, a.status.in_(("refuted", "muted")), a.created_at < cutoff)
    return _chunks(engine, pick, chunk, lambda db, ids: db.execute(delete(Anomaly.__table__).where(a.id.in_(ids))))


def _windows(engine: Engine, stream_id: int, cutoff: datetime, chunk: int) -> tuple[int, int]:
    w, wl, a, ln = Window.__table__.c, WindowLine.__table__.c, Anomaly.__table__.c, LogLine.__table__.c
    held_line = (select(wl.line_id).join(Anomaly.__table__, a.line_id == wl.line_id)
                 .where(wl.window_id == w.id).exists())
    labelled_line = (select(wl.line_id).join(LogLine.__table__, ln.id == wl.line_id)
                     .where(wl.window_id == w.id, ln.label.is_not(None)).exists())
    pick = select(w.id).where(
        w.stream_id == stream_id, w.state.in_(("done", "failed")), w.last_line_at < cutoff, w.label.is_(None),
        ~exists().where(a.window_id == w.id), ~held_line, ~labelled_line,
    ).order_by(w.id)
    removed_lines = 0

    def remove(db: Session, ids: list[int]) -> None:
        nonlocal removed_lines
        removed_lines += db.execute(delete(WindowLine.__table__).where(wl.window_id.in_(ids))).rowcount or 0
        db.execute(delete(Window.__table__).where(w.id.in_(ids)))

    return _chunks(engine, pick, chunk, remove), removed_lines


def _lines(engine: Engine, stream_id: int, cutoff: datetime, chunk: int) -> int:
    """Walk the stream's lines by id from the oldest, `chunk` at a time, until one arrived after
    the cutoff; delete each chunk's old lines that nothing keeps."""
    ln, a, wl = LogLine.__table__.c, Anomaly.__table__.c, WindowLine.__table__.c
    stmt = delete(LogLine.__table__).where(
        ln.stream_id == stream_id, ln.id >= bindparam("lo"), ln.id <= bindparam("hi"), ln.received_at < cutoff,
        ln.label.is_(None), ~exists().where(a.line_id == ln.id), ~exists().where(wl.line_id == ln.id))
    total, after = 0, 0
    while True:
        with Session(engine) as db:  # the walk reads outside the write lock
            rows = db.execute(select(ln.id, ln.received_at).where(ln.stream_id == stream_id, ln.id > after)
                              .order_by(ln.id).limit(chunk)).all()
        old = [r.id for r in rows if r.received_at < cutoff]
        if old:
            with store.write_session(engine) as db:
                total += db.execute(stmt, {"lo": old[0], "hi": old[-1]}).rowcount or 0
        if len(rows) < chunk or len(old) < len(rows):  # the end, or lines newer than the cutoff: done
            return total
        after = rows[-1].id


def _incidents(engine: Engine, stream_id: int, cutoff: datetime, chunk: int) -> int:
    i, a = Incident.__table__.c, Anomaly.__table__.c
    pick = select(i.id).where(i.stream_id == stream_id, i.status == "resolved", i.last_seen_at < cutoff,
                              ~exists().where(a.incident_id == i.id))
    return _chunks(engine, pick, chunk, lambda db, ids: db.execute(delete(Incident.__table__).where(i.id.in_(ids))))


# --------------------------------------------------------------------------- database size


def database_bytes(engine: Engine) -> int | None:
    """The database's size on disk: SQLite, the file plus its WAL; PostgreSQL, pg_database_size.
    None when it cannot be told (in memory, or not allowed)."""
    if engine.dialect.name == "sqlite":
        path = engine.url.database
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        total = 0
        for p in (path, path + "-wal"):
            try:
                total += os.path.getsize(p)
            except OSError:
                pass
        return total
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar() or 0)
    except Exception:  # noqa: BLE001
        return None


def human_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
