"""Lines into windows and sessions, inside the ingest transaction; closed ones join the queue.

- A line with session keys (by the stream's `session_regex`, or a record's explicit `session`)
  joins the open session of every key; a session closes after `idle_timeout_seconds` without a
  line (wall clock, checked by the worker), or when it reaches `MAX_SESSION_LINES`.
- Otherwise, in a stream without `session_regex`, lines go into the stream's one open window,
  which closes at `window_size` lines or when a line's `window_seconds` bucket (by its own
  timestamp, else the time it arrived) is later than the window's; an idle window closes too.
- In a session stream, a line without a key is in no window: its RAPID verdict is final.

A closed window goes to state `queued` (the durable LogGPT queue), unless every line in it is
train-mode data: then it is `done` with result `{"skipped": "train"}` and serves as training data.
"""

from __future__ import annotations

import math
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from logsense.server import store
from logsense.server.tables import LogLine, StreamSettings, Window, WindowLine

MAX_SESSION_LINES = 1000  # a session this long is closed and a new one opened for the same key
_CHUNK = 5000  # keys per IN (...) query


class LineSlot(NamedTuple):
    """What window assignment needs of one stored line (a NamedTuple: a batch makes a thousand)."""

    line_id: int
    timestamp: float | None  # epoch seconds from the line (None: use the arrival time)
    sessions: Sequence[str] = ()


@dataclass
class _Open:
    id: int
    key: str
    n_lines: int
    n_before: int  # n_lines in the database before this call's UPDATE (a new session: as inserted)


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
        self.by_stream: dict[int, dict[str, tuple[int, int]]] = {}
        self.key_of: dict[int, tuple[int, str]] = {}  # window id -> (stream id, key)

    def remember(self, stream_id: int, windows: Iterable[_Open]) -> None:
        known = self.by_stream.setdefault(stream_id, {})
        for w in windows:
            known[w.key] = (w.id, w.n_lines)
            self.key_of[w.id] = (stream_id, w.key)

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


def _new_window(session: Session, stream_id: int, kind: str, key: str, now: datetime) -> int:
    return session.execute(
        insert(Window).returning(Window.id),
        [{"stream_id": stream_id, "kind": kind, "key": key[:255], "state": "open", "n_lines": 0,
          "opened_at": now, "last_line_at": now, "attempts": 0}],
    ).scalar_one()


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


def _assign(session: Session, stream_id: int, cfg: StreamSettings, slots: Sequence[LineSlot], now: datetime,
            cache: OpenSessions | None) -> list[int]:
    members: list[tuple[int, int, int]] = []  # (window id, position, line id)
    touched: dict[int, _Open] = {}
    to_close: list[int] = []

    sessions: dict[str, _Open] = {}  # key -> its open session window after this call
    keyed = [s for s in slots if s.sessions]
    if keyed:
        known = cache.by_stream.get(stream_id, {}) if cache is not None else {}
        sessions = _assign_sessions(session, stream_id, keyed, now, members, touched, to_close, known)
    if cfg.session_regex is None:
        plain = [s for s in slots if not s.sessions]
        if plain:
            _assign_windows(session, stream_id, cfg, plain, now, members, touched, to_close)

    conn = session.connection()
    sqlite = conn.dialect.name == "sqlite"
    if touched:  # before the members: with remembered sessions, this is the check that they are current
        t = Window.__table__
        if sqlite:  # one DB-API executemany: the ingest path's second-largest cost otherwise
            to_db = t.c.last_line_at.type._cached_bind_processor(conn.dialect)
            stamp = to_db(now) if to_db else now
            done = conn.exec_driver_sql(
                "UPDATE windows SET n_lines = ?, last_line_at = ? WHERE id = ? AND key = ? AND state = 'open' "
                "AND n_lines = ?", [(w.n_lines, stamp, w.id, w.key, w.n_before) for w in touched.values()])
            if cache is not None and done.rowcount != len(touched):
                raise _Stale
        else:
            conn.execute(
                update(t).where(t.c.id == bindparam("_id")).values(n_lines=bindparam("n_lines"),
                                                                   last_line_at=bindparam("last_line_at")),
                [{"_id": w.id, "n_lines": w.n_lines, "last_line_at": now} for w in touched.values()],
            )
    if members:
        store.insert_tuples(conn, "window_lines", ("window_id", "position", "line_id"), members)
    queued = close(session, to_close, now) if to_close else []
    if cache is not None:  # sessions only: a count or time window is found by its own query
        closed = set(to_close)  # `close` has forgotten these
        cache.remember(stream_id, [w for w in sessions.values() if w.id not in closed])
    return queued


def open_sessions_sql(n_keys: int) -> str:
    """SQLite: the open session windows of a stream among `n_keys` keys. INDEXED BY, because
    SQLite's planner otherwise takes ix_windows_state_id and walks every open window of every
    stream, per batch (1.6 ms at 4,000 open sessions, growing with them)."""
    return ("SELECT id, key, n_lines FROM windows INDEXED BY ix_windows_stream_id_key "
            "WHERE stream_id = ? AND state = 'open' AND kind = 'session' "
            f"AND key IN ({', '.join('?' * n_keys)})")


def _assign_sessions(session, stream_id, slots, now, members, touched, to_close, known) -> dict[str, _Open]:  # noqa: ANN001
    keys = list(dict.fromkeys(k for s in slots for k in s.sessions))
    open_by_key: dict[str, _Open] = {}
    lookup = []
    for k in keys:
        hit = known.get(k)
        if hit is None:
            lookup.append(k)
        else:
            open_by_key[k] = _Open(hit[0], k, hit[1], hit[1])
    conn = session.connection()
    for start in range(0, len(lookup), _CHUNK):
        chunk = lookup[start : start + _CHUNK]
        if conn.dialect.name == "sqlite":  # plain SQL: building this statement per batch cost more than running it
            rows = conn.exec_driver_sql(open_sessions_sql(len(chunk)), (stream_id, *chunk)).all()
        else:
            rows = session.execute(
                select(Window.id, Window.key, Window.n_lines).where(
                    Window.stream_id == stream_id, Window.state == "open", Window.kind == "session",
                    Window.key.in_(chunk))
            ).all()
        for wid, key, n in rows:
            open_by_key[key] = _Open(wid, key, n, n)
    missing = [k for k in keys if k not in open_by_key]
    fresh = _insert_new_sessions(session, stream_id, missing, slots, now, open_by_key) if missing else set()
    add = members.append
    for s in slots:
        line_id = s.line_id
        for key in _distinct(s.sessions):
            w = open_by_key[key]
            if w.n_lines >= MAX_SESSION_LINES:
                to_close.append(w.id)
                touched[w.id] = w
                w = open_by_key[key] = _Open(_new_window(session, stream_id, "session", key, now), key, 0, 0)
            add((w.id, w.n_lines, line_id))
            w.n_lines += 1
            touched[w.id] = w
    for wid in fresh:  # inserted with the lines they got: nothing to update
        w = touched.get(wid)
        if w is not None and w.n_lines == w.n_before:
            del touched[wid]
    return open_by_key


def _distinct(keys: Sequence[str]) -> Iterable[str]:
    return keys if len(keys) < 2 else dict.fromkeys(keys)


def _insert_new_sessions(session, stream_id, keys, slots, now, open_by_key) -> set[int]:  # noqa: ANN001
    """Insert new session windows for `keys`, each already counting the lines of `slots` it will
    get, into `open_by_key`; their ids. Counted up front, the ~70 new sessions of a 1,000-line
    HDFS batch need no UPDATE after their lines are assigned (the ~30 older ones still do)."""
    wanted = set(keys)
    counts = Counter(k for s in slots for k in _distinct(s.sessions) if k in wanted)
    n_lines = {k: min(counts[k], MAX_SESSION_LINES) for k in keys}
    ids = store.insert_rows(session, Window.__table__, [
        {"stream_id": stream_id, "kind": "session", "key": k[:255], "state": "open", "n_lines": n_lines[k],
         "opened_at": now, "last_line_at": now, "attempts": 0} for k in keys])
    for k, wid in zip(keys, ids):
        open_by_key[k] = _Open(wid, k, 0, n_lines[k])  # n_lines counts up to n_before as the lines are assigned
    return set(ids)


def _bucket(cfg: StreamSettings, slot: LineSlot, now: datetime) -> int | None:
    if cfg.window_seconds is None:
        return None
    ts = slot.timestamp if slot.timestamp is not None and math.isfinite(slot.timestamp) else now.timestamp()
    return int(ts // cfg.window_seconds)


def _window_bucket(key: str) -> int | None:
    """Time windows are keyed `time:<bucket>`."""
    if key.startswith("time:"):
        try:
            return int(key.split(":", 1)[1])
        except ValueError:
            return None
    return None


def _assign_windows(session, stream_id, cfg: StreamSettings, slots, now, members, touched, to_close) -> None:  # noqa: ANN001
    row = session.execute(
        select(Window.id, Window.key, Window.n_lines)
        .where(Window.stream_id == stream_id, Window.state == "open", Window.kind.in_(("count", "time")))
        .order_by(Window.id.desc())
        .limit(1)
    ).first()
    w = _Open(row[0], row[1], row[2], row[2]) if row else None
    kind = "time" if cfg.window_seconds is not None else "count"
    for s in slots:
        bucket = _bucket(cfg, s, now)
        if w is not None and bucket is not None:
            current = _window_bucket(w.key)
            if current is not None and bucket > current:  # a later bucket: the window is over
                to_close.append(w.id)
                w = None
        if w is None:
            key = f"time:{bucket}" if bucket is not None else f"line:{s.line_id}"
            w = _Open(_new_window(session, stream_id, kind, key, now), key, 0, 0)
        members.append((w.id, w.n_lines, s.line_id))
        w.n_lines += 1
        touched[w.id] = w
        if cfg.window_size is not None and w.n_lines >= cfg.window_size:
            to_close.append(w.id)
            w = None


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
            from datetime import timezone

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
