"""Lines into windows and sessions, inside the ingest transaction; closed ones join the queue.

The cutting rules are `logsense.models.windowing.assign` (the benchmark's live replay runs the
same function): this module hands it the open windows a batch touches, read from the database
(or remembered, on SQLite), and stores what it answers. After each batch, windows quiet for the
idle timeout in log time are closed (`models.windowing.is_quiet`); the worker also closes windows
of streams that went quiet by the wall clock (`close_idle`).

A closed window goes to state `queued` (the durable LogGPT queue), unless every line in it is
train-mode data: then it is `done` with result `{"skipped": "train"}` and serves as training data.
"""

import weakref
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from logsense.models import windowing
from logsense.models.windowing import PLAIN, OpenWindow, WindowSpec
from logsense.server import store
from logsense.server.tables import LogLine, StreamSettings, Window, WindowLine

MAX_SESSION_LINES = windowing.MAX_SESSION_LINES  # a session this long goes on in a new window (tests lower it)
_CHUNK = 5000  # keys per IN (...) query


class LineSlot(NamedTuple):
    """What window assignment needs of one stored line (a NamedTuple: a batch makes a thousand)."""

    line_id: int
    timestamp: float | None  # epoch seconds from the line (None: use the arrival time)
    sessions: Sequence[str] = ()


class _Stale(Exception):
    """A remembered open session no longer matches the database."""


class OpenSessions:
    """The open sessions this process wrote last, per stream: key -> (window id, n_lines).

    It spares ingest the per-batch SELECT of open sessions on SQLite. It is a hint, never the
    truth: every remembered window is checked by the UPDATE that moves it on (same id, key,
    `open`, same n_lines), and one that fails rolls the batch's window work back and redoes it
    from the database. So another process writing the same file, a rolled-back transaction or
    a window closed elsewhere costs one slow batch, never a wrong window.
    """

    def __init__(self) -> None:
        self.by_stream: dict[int, dict[str, tuple[int, int, float]]] = {}  # key -> (id, n_lines, last_ts)
        self.key_of: dict[int, tuple[int, str]] = {}  # window id -> (stream id, key)

    def remember(self, stream_id: int, windows: Iterable[OpenWindow]) -> None:
        known = self.by_stream.setdefault(stream_id, {})
        for w in windows:
            known[w.key] = (w.ref, w.n_lines, w.last_ts)
            self.key_of[w.ref] = (stream_id, w.key)

    def forget(self, window_ids: Iterable[int]) -> None:
        for wid in window_ids:
            where = self.key_of.pop(wid, None)
            if where is not None:
                known = self.by_stream.get(where[0], {})
                if known.get(where[1], (None,))[0] == wid:
                    del known[where[1]]

    def drop(self, stream_id: int) -> None:
        for key_id in [i for i, (sid, _) in self.key_of.items() if sid == stream_id]:
            del self.key_of[key_id]
        self.by_stream.pop(stream_id, None)


_OPEN: "weakref.WeakKeyDictionary[Engine, OpenSessions]" = weakref.WeakKeyDictionary()


def open_sessions(engine: Engine) -> OpenSessions:
    """This process's OpenSessions of a database (touch it only inside `store.write_session`)."""
    found = _OPEN.get(engine)
    if found is None:
        found = _OPEN[engine] = OpenSessions()
    return found


def spec_of(cfg: StreamSettings) -> WindowSpec:
    """The stream's cutting rules for `models.windowing`."""
    return cfg.window_spec(MAX_SESSION_LINES)


def assign(session: Session, stream_id: int, cfg: StreamSettings, slots: Sequence[LineSlot], now: datetime) -> list[int]:
    """Put stored lines into their windows; returns the ids of windows queued by this call."""
    conn = session.connection()
    if conn.dialect.name != "sqlite" or not any(s.sessions for s in slots):
        return _assign(session, stream_id, cfg, slots, now, None)
    cache = open_sessions(conn.engine)
    conn.exec_driver_sql("SAVEPOINT assign_windows")
    try:
        queued = _assign(session, stream_id, cfg, slots, now, cache)
    except _Stale:
        conn.exec_driver_sql("ROLLBACK TO assign_windows")
        conn.exec_driver_sql("RELEASE assign_windows")
        cache.drop(stream_id)
        return _assign(session, stream_id, cfg, slots, now, None)
    conn.exec_driver_sql("RELEASE assign_windows")
    return queued


def _last_ts(value: float | None, now: datetime) -> float:
    """Migration 0006 filled in every open window's log time; should one lack it, it counts from now."""
    return float(value) if value is not None else now.timestamp()


def _assign(session: Session, stream_id: int, cfg: StreamSettings, slots: Sequence[LineSlot], now: datetime,
            cache: OpenSessions | None) -> list[int]:
    spec = spec_of(cfg)
    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    open_windows: dict[str, OpenWindow] = {}
    before: dict[int, int] = {}  # window id -> n_lines in the database (the remembered ones are checked against it)
    keys = list(dict.fromkeys(k for s in slots for k in s.sessions))
    if keys:
        known = cache.by_stream.get(stream_id, {}) if cache is not None else {}
        _open_sessions_of(session, stream_id, keys, known, open_windows, before, now)
    if not spec.sessions and any(not s.sessions for s in slots):
        row = session.execute(
            select(Window.id, Window.key, Window.kind, Window.n_lines, Window.last_ts)
            .where(Window.stream_id == stream_id, Window.state == "open", Window.kind.in_(("count", "time")))
            .order_by(Window.id.desc()).limit(1)
        ).first()
        if row is not None:
            open_windows[PLAIN] = OpenWindow(key=row[1], kind=row[2], n_lines=row[3], last_ts=_last_ts(row[4], now),
                                             ref=row[0])
            before[row[0]] = row[3]
    cut = windowing.assign(open_windows, [windowing.LineSlot(s.timestamp, s.sessions) for s in slots], spec,
                           now.timestamp(), [s.line_id for s in slots])
    if cut.opened:  # inserted already counting the lines this batch gives them: no UPDATE for them
        ids = store.insert_rows(session, Window.__table__, [
            {"stream_id": stream_id, "kind": w.kind, "key": w.key[:255], "state": "open", "n_lines": w.n_lines,
             "opened_at": now, "last_line_at": now, "last_ts": w.last_ts, "attempts": 0} for w in cut.opened])
        for w, wid in zip(cut.opened, ids):
            w.ref = wid
    moved = [w for w in cut.touched.values() if w.ref in before]
    if moved:  # before the members: with remembered sessions, this is the check that they are current
        t = Window.__table__
        if sqlite:  # one DB-API executemany: the ingest path's second-largest cost otherwise
            to_db = t.c.last_line_at.type._cached_bind_processor(conn.dialect)
            stamp = to_db(now) if to_db else now
            done = conn.exec_driver_sql(
                "UPDATE windows SET n_lines = ?, last_line_at = ?, last_ts = ? WHERE id = ? AND key = ? "
                "AND state = 'open' AND n_lines = ?",
                [(w.n_lines, stamp, w.last_ts, w.ref, w.key[:255], before[w.ref]) for w in moved])
            if cache is not None and done.rowcount != len(moved):
                raise _Stale
        else:
            conn.execute(
                update(t).where(t.c.id == bindparam("_id")).values(
                    n_lines=bindparam("n_lines"), last_line_at=bindparam("last_line_at"), last_ts=bindparam("last_ts")),
                [{"_id": w.ref, "n_lines": w.n_lines, "last_line_at": now, "last_ts": w.last_ts} for w in moved],
            )
    if cut.members:
        store.insert_tuples(conn, "window_lines", ("window_id", "position", "line_id"),
                            [(w.ref, pos, slots[k].line_id) for w, pos, k in cut.members])
    to_close = [w.ref for w, _ in cut.closed]
    if cut.clock is not None:  # the sweep: windows of this stream quiet for the idle timeout in log time
        cutoff = cut.clock - spec.idle_timeout_seconds
        to_close += [r[0] for r in conn.exec_driver_sql(
            "SELECT id FROM windows WHERE stream_id = %s AND state = 'open' AND last_ts < %s"
            % (("?", "?") if sqlite else ("%(s)s", "%(c)s")),
            (stream_id, cutoff) if sqlite else {"s": stream_id, "c": cutoff}).all()]
    queued = close(session, to_close, now) if to_close else []
    if cache is not None:  # sessions only: a count or time window is found by its own query
        closed = set(to_close)  # `close` has forgotten these
        cache.remember(stream_id, [w for k, w in open_windows.items() if k != PLAIN and w.ref not in closed])
    return queued


def open_sessions_sql(n_keys: int) -> str:
    """SQLite: the open session windows of a stream among `n_keys` keys. INDEXED BY, because
    SQLite's planner otherwise takes ix_windows_state_id and walks every open window of every
    stream, per batch (1.6 ms at 4,000 open sessions, growing with them)."""
    return ("SELECT id, key, n_lines, last_ts FROM windows INDEXED BY ix_windows_stream_id_key "
            "WHERE stream_id = ? AND state = 'open' AND kind = 'session' "
            f"AND key IN ({', '.join('?' * n_keys)})")


def _open_sessions_of(session: Session, stream_id: int, keys: list[str], known: dict, open_windows: dict,
                      before: dict, now: datetime) -> None:
    """The open session of each key that has one, remembered or read, into `open_windows`."""
    lookup = []
    for k in keys:
        hit = known.get(k)
        if hit is None:
            lookup.append(k)
        else:
            open_windows[k] = OpenWindow(key=k, kind="session", n_lines=hit[1], last_ts=hit[2], ref=hit[0])
            before[hit[0]] = hit[1]
    conn = session.connection()
    for start in range(0, len(lookup), _CHUNK):
        chunk = lookup[start : start + _CHUNK]
        if conn.dialect.name == "sqlite":  # plain SQL: building this statement per batch cost more than running it
            rows = conn.exec_driver_sql(open_sessions_sql(len(chunk)), (stream_id, *chunk)).all()
        else:
            rows = session.execute(
                select(Window.id, Window.key, Window.n_lines, Window.last_ts).where(
                    Window.stream_id == stream_id, Window.state == "open", Window.kind == "session",
                    Window.key.in_(chunk))
            ).all()
        for wid, key, n, last_ts in rows:
            open_windows[key] = OpenWindow(key=key, kind="session", n_lines=n, last_ts=_last_ts(last_ts, now), ref=wid)
            before[wid] = n


def close(session: Session, window_ids: Sequence[int], now: datetime) -> list[int]:
    """Close open windows: queued for LogGPT, or done when every line is train-mode data.
    Returns the ids that were queued."""
    ids = list(dict.fromkeys(window_ids))
    if not ids:
        return []
    open_sessions(session.get_bind()).forget(ids)
    checkable: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        checkable.update(
            session.execute(
                select(WindowLine.window_id)
                .join(LogLine, LogLine.id == WindowLine.line_id)
                .where(WindowLine.window_id.in_(chunk), LogLine.severity != "train")
                .group_by(WindowLine.window_id)
            ).scalars().all()
        )
    t = Window.__table__
    queued = [i for i in ids if i in checkable]
    training = [i for i in ids if i not in checkable]
    for chunk_ids, values in ((queued, {"state": "queued"}), (training, {"state": "done", "result": {"skipped": "train"}})):
        for start in range(0, len(chunk_ids), _CHUNK):
            session.execute(
                update(t).where(t.c.id.in_(chunk_ids[start : start + _CHUNK]), t.c.state == "open")
                .values(closed_at=now, **values)
            )
    return queued


def close_idle(session: Session, idle_seconds: dict[int, float], now: datetime) -> list[int]:
    """Close open windows of these streams idle longer than their timeout; returns the queued ids."""
    if not idle_seconds:
        return []
    shortest = min(idle_seconds.values())
    rows = session.execute(
        select(Window.id, Window.stream_id, Window.last_line_at).where(
            Window.state == "open", Window.last_line_at < now - timedelta(seconds=shortest)
        )
    ).all()
    stale = []
    for wid, stream_id, last in rows:
        limit = idle_seconds.get(stream_id)
        if limit is None:
            continue
        if last.tzinfo is None:
            last = last.replace(tzinfo=timezone.utc)
        if (now - last).total_seconds() >= limit:
            stale.append(wid)
    return close(session, stale, now) if stale else []


def close_all(session: Session, stream_id: int, now: datetime) -> list[int]:
    """Close every open window of a stream now (flush); returns the queued ids."""
    ids = session.execute(
        select(Window.id).where(Window.stream_id == stream_id, Window.state == "open")
    ).scalars().all()
    return close(session, list(ids), now)


def count_open(session: Session, stream_id: int) -> int:
    return session.execute(
        select(func.count(Window.id)).where(Window.stream_id == stream_id, Window.state == "open")
    ).scalar() or 0
