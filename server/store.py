"""Database writes and the queries behind them: one place that knows the SQL of lines, windows,
anomalies and training data.

SQLite has a single writer. Every write transaction goes through `write_session`: a per-engine
lock serializes writers inside the process, and on SQLite `BEGIN IMMEDIATE` takes the file's
write lock up front, so two processes on one file queue (busy_timeout) instead of deadlocking
on a read-to-write upgrade. On PostgreSQL it is an ordinary transaction.

Bulk paths (ingest, the worker) write many rows per statement (`insert_tuples`, Core statements
with many parameter sets) instead of one ORM object per line.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import weakref
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from itertools import chain
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import JSON, Boolean, Float, Integer, String, and_, bindparam, column, func, or_, select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from logsense.models.parsing.sessions import canonical_order
from logsense.server.tables import (SLOT_SECONDS, Anomaly, Incident, IncidentNote, LineCount, LogLine, TemplateCount,
                                    UtcDateTime, Window, WindowLine, severity_is, utcnow)

_LOCKS: "weakref.WeakKeyDictionary[Engine, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()



def write_lock(engine: Engine) -> threading.RLock:
    """The lock every writer of this engine's database holds in this process."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(engine)
        if lock is None:
            lock = _LOCKS[engine] = threading.RLock()
        return lock


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose transaction holds the write lock; committed on success, rolled back on error."""
    with write_lock(engine), Session(engine, expire_on_commit=False) as session:
        if engine.dialect.name == "sqlite":
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def window_keys(session: Session, window_ids: Sequence[int]) -> dict[int, str]:
    """Window id -> key (the held-back choice reads it)."""
    out: dict[int, str] = {}
    ids = list(window_ids)
    for start in range(0, len(ids), 5000):
        out.update(session.execute(select(Window.id, Window.key).where(Window.id.in_(ids[start : start + 5000]))).all())
    return out


# --------------------------------------------------------------------------- lines


def insert_lines(session: Session, stream_id: int, received_at: datetime, columns: dict[str, Sequence]) -> list[int]:
    """Insert log_lines of one stream received at one time, given column by column (`columns`:
    name -> one value per line; `raw`, `masked` and `severity` at least); their ids in order.
    Counts them in line_counts and template_counts too (they share a slot: one upsert for the
    stream, one per template).

    Column by column: a dict per line, taken apart again for the INSERT, cost ingest 7.5 ms of
    Python per 1,000 HDFS lines, building the rows' tuples from columns 1.3 (microbenchmark)."""
    n = len(columns["raw"])
    if not n:
        return []
    conn = session.connection()
    ids = _new_ids(conn, LogLine.__tablename__, n)
    insert_columns(conn, LogLine.__table__, {"id": ids, "stream_id": [stream_id] * n, "received_at": [received_at] * n,
                                              **columns})
    slot = slot_of(received_at)
    count_lines(session, {(stream_id, slot): n})
    count_templates(session, stream_id, slot, ids, columns.get("template_id", ()), columns["severity"])
    return ids


def slot_of(when: datetime) -> int:
    """The slot of a time in line_counts and template_counts (naive means UTC, as stored)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp()) // SLOT_SECONDS


_COUNT_LINES = text("INSERT INTO line_counts (stream_id, slot, n) VALUES (:stream_id, :slot, :n) "
                    "ON CONFLICT (stream_id, slot) DO UPDATE SET n = line_counts.n + excluded.n")  # SQLite and PostgreSQL


def count_lines(session: Session, counts: dict[tuple[int, int], int]) -> None:
    """Add to line_counts: {(stream id, slot): lines}."""
    if counts:
        session.connection().execute(_COUNT_LINES, [{"stream_id": sid, "slot": slot, "n": n}
                                                    for (sid, slot), n in counts.items()])


_COUNT_TEMPLATES = text(
    "INSERT INTO template_counts (stream_id, template_id, slot, n, n_train, first_line_id) "
    "VALUES (:stream_id, :template_id, :slot, :n, :n_train, :first_line_id) ON CONFLICT (stream_id, template_id, slot) "
    "DO UPDATE SET n = template_counts.n + excluded.n, n_train = template_counts.n_train + excluded.n_train"
)  # first_line_id stays: ids only grow


def count_templates(session: Session, stream_id: int, slot: int, ids: Sequence[int], template_ids: Sequence[int | None],
                    severities: Sequence[str]) -> None:
    """Add stored lines of one slot (their ids, template ids and severities) to template_counts."""
    n = Counter(template_ids)
    n.pop(None, None)
    if not n:
        return
    first = dict(zip(reversed(template_ids), reversed(ids)))  # the last write of a key wins: its first line
    kinds = set(severities)
    if "train" not in kinds:
        n_train: dict = {}
    elif kinds == {"train"}:  # a train-mode batch
        n_train = n
    else:
        n_train = Counter(t for t, s in zip(template_ids, severities) if s == "train")
    session.connection().execute(_COUNT_TEMPLATES, [
        {"stream_id": stream_id, "template_id": tid, "slot": slot, "n": k, "n_train": n_train.get(tid, 0),
         "first_line_id": first[tid]} for tid, k in n.items()])


def line_totals(session: Session, since: datetime | None = None) -> dict[int, int]:
    """Lines per stream id (received at or after `since`, to the slot), from line_counts."""
    q = select(LineCount.stream_id, func.sum(LineCount.n)).group_by(LineCount.stream_id)
    if since is not None:
        q = q.where(LineCount.slot >= slot_of(since))
    return {sid: int(n) for sid, n in session.execute(q).all()}


def template_first_line(session: Session, stream_id: int, template_id: int) -> int | None:
    """The id of the stream's first line of a template (None: no line has it): its earliest
    slot's, from template_counts (one index seek, however long the template's history)."""
    c = TemplateCount
    return session.execute(select(c.first_line_id).where(c.stream_id == stream_id, c.template_id == template_id)
                           .order_by(c.slot).limit(1)).scalar()


def template_lines(session: Session, stream_id: int, template_id: int, after_slot: int, to_slot: int) -> int:
    """Lines of a template received in slots after `after_slot` up to `to_slot`, from template_counts."""
    c = TemplateCount
    return int(session.execute(select(func.coalesce(func.sum(c.n), 0)).where(
        c.stream_id == stream_id, c.template_id == template_id, c.slot > after_slot, c.slot <= to_slot)).scalar())


def template_lines_before(session: Session, stream_id: int, template_id: int, line_id: int, slot: int) -> int:
    """Lines of a template stored before line `line_id` (received in `slot`): the counts of the
    earlier slots, plus the lines of its own slot before it (a scan from the slot's first line)."""
    c = TemplateCount
    earlier = template_lines(session, stream_id, template_id, -1, slot - 1)
    first = session.execute(select(c.first_line_id).where(
        c.stream_id == stream_id, c.template_id == template_id, c.slot == slot)).scalar()
    if first is None or first >= line_id:
        return earlier
    same = session.execute(select(func.count(LogLine.id)).where(
        LogLine.stream_id == stream_id, LogLine.id >= first, LogLine.id < line_id,
        LogLine.template_id == template_id)).scalar()
    return earlier + int(same or 0)


def template_has_normal(session: Session, stream_id: int, template_id: int) -> bool:
    """Has any line of the template been normal data: train-mode (template_counts) or labelled
    normal by an operator (through ix_log_lines_labelled)?"""
    c = TemplateCount
    if session.execute(select(c.slot).where(c.stream_id == stream_id, c.template_id == template_id, c.n_train > 0)
                       .limit(1)).first() is not None:  # train mode comes first: found in the earliest slots
        return True
    return session.execute(select(LogLine.id).where(
        LogLine.stream_id == stream_id, LogLine.label == "normal", LogLine.template_id == template_id).limit(1)
    ).first() is not None


def newest_normal_lines(session: Session, stream_id: int, columns: Sequence[Any], limit: int,
                        template_id: int | None = None) -> list[Any]:
    """The newest known-normal lines (train-mode, or labelled normal), newest first: rows of
    `columns` (the first must be LogLine.id). Two index walks (severity, label) merged: the cost
    is `limit` rows (for one template: at most the train-mode lines walked to find them), not
    the stream's history."""
    out = []
    for cond in (severity_is("train"), LogLine.label == "normal"):
        q = select(*columns).where(LogLine.stream_id == stream_id, cond)
        if template_id is not None:
            q = q.where(LogLine.template_id == template_id)
        out += session.execute(q.order_by(LogLine.id.desc()).limit(limit)).all()
    seen: set[int] = set()
    merged = []
    for row in sorted(out, key=itemgetter(0), reverse=True):  # a labelled train line is in both
        if row[0] not in seen:
            seen.add(row[0])
            merged.append(row)
    return merged[:limit]


def insert_rows(session: Session, table: Any, rows: list[dict]) -> list[int]:
    """Insert rows (dicts of column values) into a table with an integer `id`; the new ids in order."""
    if not rows:
        return []
    conn = session.connection()
    ids = _new_ids(conn, table.name, len(rows))
    executemany_rows(conn, table, rows, {"id": ids})
    return ids


def _new_ids(conn: Any, table_name: str, n: int) -> list[int]:
    """Ids for `n` rows about to be inserted into `table_name` in this transaction."""
    if conn.dialect.name == "sqlite":
        # The transaction holds SQLite's write lock (BEGIN IMMEDIATE): nobody else can insert, so
        # explicit ids after the current maximum are safe, and plain multi-row INSERTs beat RETURNING
        # (which SQLite can only order by running the statement row by row).
        first = (conn.exec_driver_sql(f"SELECT max(id) FROM {table_name}").scalar() or 0) + 1
        return list(range(first, first + n))
    # PostgreSQL: the ids from the table's sequence in one round trip, then one COPY
    # (`insert_tuples`). INSERT ... RETURNING through SQLAlchemy's insertmanyvalues built one
    # statement of 13,000 placeholders per batch, which psycopg re-parsed in Python each time
    # (2,400 lines/s of ingest, against 5,200 now).
    return sorted(conn.exec_driver_sql(
        f"SELECT nextval(pg_get_serial_sequence('{table_name}', 'id')) FROM generate_series(1, {n})"
    ).scalars().all())


def executemany_rows(conn: Any, table: Any, rows: list[dict], extra: dict[str, list] | None = None) -> None:
    """INSERT rows (dicts of column values, the same keys in each) as `insert_columns` does.
    `extra`: whole columns given as lists (the ids)."""
    names = [c.name for c in table.columns if c.name != "id" and c.name in rows[0] and c.name not in (extra or {})]
    getter = itemgetter(*names)
    picked = [getter(row) for row in rows]
    insert_columns(conn, table, {**(extra or {}), **dict(zip(names, zip(*picked) if len(names) > 1 else [picked]))})


def insert_columns(conn: Any, table: Any, columns: dict[str, Sequence]) -> None:
    """INSERT rows given column by column (`columns`: name -> one value per row) in one go
    (`insert_tuples`: SQLite's multi-row INSERTs, PostgreSQL's COPY), each column converted once
    (`_db_values`). About 3x the speed of Core on the ingest path.

    A column that is None in every row and has no server default is left out of the statement
    (it is NULL all the same): SQLite binds fewer parameters, ~30% less time per line row."""
    names, values = [], []
    for name, column in columns.items():
        c = table.c[name]
        if c.server_default is None and all(v is None for v in column):
            continue
        names.append(name)
        values.append(_db_values(conn, c, column))
    insert_tuples(conn, table.name, names, list(zip(*values)))


def _db_values(conn: Any, column: Any, values: Sequence) -> Sequence:
    """A column's values as the driver takes them: JSON dumped directly (orjson, not the JSON
    type's processor), other SQLAlchemy types through their bind processor once per distinct
    value, what sqlite3 and psycopg take as they are left alone."""
    if isinstance(column.type, JSON):
        return [None if v is None else _dump_json(v) for v in values]
    if isinstance(column.type, (Boolean, Integer, Float, String)):
        return values
    proc = column.type._cached_bind_processor(conn.dialect)
    if proc is None:
        return values
    done: dict[Any, Any] = {}
    return [None if v is None else done[v] if v in done else done.setdefault(v, proc(v)) for v in values]


def insert_tuples(conn: Any, table_name: str, names: Sequence[str], tuples: list[tuple]) -> None:
    """Rows as tuples of DB-API values into `table_name` (`names`: its columns, trusted text).
    SQLite: multi-row INSERTs (`_insert_sqlite`). PostgreSQL: one COPY (row-by-row INSERTs, even
    pipelined, cost ~0.2 ms each on the server)."""
    if conn.dialect.name == "sqlite":
        _insert_sqlite(conn, table_name, names, tuples)
        return
    cur = conn.connection.dbapi_connection.cursor()  # inside this transaction
    try:
        if not hasattr(cur, "copy"):  # not psycopg 3 (e.g. psycopg2): its executemany
            cur.executemany(f"INSERT INTO {table_name} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
                            tuples)
            return
        with cur.copy(f"COPY {table_name} ({', '.join(names)}) FROM STDIN") as copy:
            for row in tuples:
                copy.write_row(row)
    finally:
        cur.close()


SQLITE_ROWS_PER_INSERT = 512  # rows in one multi-row INSERT at most (fewer if the variable limit says so)


def _insert_sqlite(conn: Any, table_name: str, names: Sequence[str], tuples: list[tuple]) -> None:
    """`INSERT ... VALUES (...), (...), ...` of up to 512 rows each. Against executemany (one
    statement step per row): 1,000 log_lines-like rows in 2.6 instead of 5.7 ms, and sqlite3
    lets go of the GIL once per statement instead of once per row, so a busy Python thread
    beside it no longer stalls it for a switch interval per row (5 s instead of 14 ms for 1,000
    rows, measured). The sizes are powers of two, so a table needs at most ten statement texts
    in sqlite3's statement cache, whatever the batch sizes."""
    if not tuples:
        return
    width = len(names)
    limit = conn.connection.dbapi_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    most = 1 << (max(1, min(SQLITE_ROWS_PER_INSERT, limit // width)).bit_length() - 1)
    head = f"INSERT INTO {table_name} ({', '.join(names)}) VALUES "
    row = f"({', '.join('?' * width)})"
    start = 0
    while start < len(tuples):
        size = min(most, 1 << ((len(tuples) - start).bit_length() - 1))
        part = tuples[start : start + size]
        conn.exec_driver_sql(head + ", ".join([row] * size), tuple(chain.from_iterable(part)))
        start += size


def _dump_json(value: Any) -> str:
    """JSON text of a column value: orjson (a line's session keys at ~0.3 us), json for what orjson
    refuses (integers over 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:
        return json.dumps(value)


_MUTED = text("SELECT template_id FROM template_mutes WHERE stream_id = :stream_id AND until > :now").bindparams(
    bindparam("now", type_=UtcDateTime()))


def muted_templates(session: Session, stream_id: int, now: datetime | None = None) -> set[int]:
    """Template ids of the stream muted right now. Plain SQL: ingest asks once a batch, and the
    ORM select took 1.26 ms of Python for it, this 0.28."""
    rows = session.connection().execute(_MUTED, {"stream_id": stream_id, "now": now or utcnow()})
    return {r[0] for r in rows}


_CONFIRMED_SINCE = text(
    "SELECT DISTINCT template_id FROM anomalies WHERE stream_id = :stream_id AND status = 'confirmed' "
    "AND template_id IS NOT NULL AND (created_at >= :since OR updated_at >= :since)").bindparams(
    bindparam("since", type_=UtcDateTime()))


def route_anomalies(session: Session, stream_id: int, rows: list[dict], now: datetime, gap_seconds: float) -> None:
    """New anomalies' status before they are stored: muted for a muted template; confirmed, as part
    of the incident, for a template an operator confirmed within `gap_seconds` (its incident goes
    on: no new queue item); open otherwise. Then their incident (`assign_incidents`: each row's
    `incident_id`)."""
    if not rows:
        return
    muted = muted_templates(session, stream_id, now)
    ongoing = {r[0] for r in session.connection().execute(
        _CONFIRMED_SINCE, {"stream_id": stream_id, "since": now - timedelta(seconds=gap_seconds)})}
    for row in rows:
        if row["template_id"] in muted:
            row["status"] = "muted"
        elif row["template_id"] in ongoing:
            row["status"] = "confirmed"
            row["reasons"] = {**row["reasons"], "incident": "joined an incident an operator confirmed"}
    assign_incidents(session, stream_id, rows, now, gap_seconds)


# --------------------------------------------------------------------------- incidents

INCIDENT_OPEN = ("open", "acknowledged")  # not resolved: new anomalies may join
CLOSED_ANOMALY = ("confirmed", "refuted", "muted")
_NEWEST_INCIDENT = text(
    "SELECT id, last_seen_at FROM incidents WHERE stream_id = :stream_id AND status IN ('open', 'acknowledged') "
    "ORDER BY id DESC LIMIT 1").columns(column("id", Integer), column("last_seen_at", UtcDateTime()))
_EXTEND_INCIDENT = text(
    "UPDATE incidents SET n_anomalies = n_anomalies + :n, "
    "last_seen_at = CASE WHEN last_seen_at < :last_seen_at THEN :last_seen_at ELSE last_seen_at END, "
    "severity = CASE WHEN :danger = 1 THEN 'danger' ELSE severity END, updated_at = :now WHERE id = :id"
).bindparams(bindparam("last_seen_at", type_=UtcDateTime()), bindparam("now", type_=UtcDateTime()))


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def assign_incidents(session: Session, stream_id: int, rows: list[dict], now: datetime, gap_seconds: float) -> None:
    """Set `incident_id` on new anomaly rows of one stream (before `insert_anomalies`): a run of
    them within `gap_seconds` of the stream's newest unresolved incident's last anomaly joins it,
    else opens a new incident (born resolved, "auto", when none of its anomalies is open: muted
    or joining a confirmed template). A batch's rows share one `created_at`: one SELECT, then one
    UPDATE or one INSERT (and one SELECT of its first line's masked text for the title)."""
    if not rows:
        return
    order = sorted(range(len(rows)), key=lambda i: _aware(rows[i].get("created_at") or now))
    runs: list[list[dict]] = []
    last: datetime | None = None
    for i in order:
        when = _aware(rows[i].get("created_at") or now)
        if last is None or (when - last).total_seconds() > gap_seconds:
            runs.append([])
        runs[-1].append(rows[i])
        last = when
    conn = session.connection()
    newest = conn.execute(_NEWEST_INCIDENT, {"stream_id": stream_id}).first()
    for k, run in enumerate(runs):
        first_at = _aware(run[0].get("created_at") or now)
        last_at = _aware(run[-1].get("created_at") or now)
        danger = any(r.get("severity") == "danger" for r in run)
        if k == 0 and newest is not None and (first_at - _aware(newest.last_seen_at)).total_seconds() <= gap_seconds:
            conn.execute(_EXTEND_INCIDENT, {"n": len(run), "last_seen_at": last_at, "danger": int(danger),
                                            "now": now, "id": newest.id})
            incident_id = newest.id
        else:
            is_open = any(r.get("status", "open") == "open" for r in run)
            head = run[0]
            title = ""
            if head.get("line_id") is not None:
                title = conn.execute(select(LogLine.masked).where(LogLine.id == head["line_id"])).scalar() or ""
            (incident_id,) = insert_rows(session, Incident.__table__, [{
                "stream_id": stream_id, "status": "open" if is_open else "resolved",
                "severity": "danger" if danger else "watch", "title": title[:255],
                "template_id": head.get("template_id"), "assignee": None, "n_anomalies": len(run),
                "opened_at": first_at, "last_seen_at": last_at, "acknowledged_at": None,
                "resolved_at": None if is_open else now, "resolved_by": None if is_open else "auto",
                "updated_at": now}])
        for r in run:
            r["incident_id"] = incident_id


def settle_incidents(session: Session, now: datetime, stream_id: int | None = None,
                     incident_ids: Sequence[int] | None = None, dry_run: bool = False,
                     reopen_since: datetime | None = None) -> tuple[list[int], list[int]]:
    """Keep the incidents' derived state up to date with their anomalies:
    - resolve ("auto") the unresolved ones none of whose anomalies is open any more, where an
      anomaly changed since the incident last did (so an operator's reopen stands until its
      anomalies change again);
    - reopen one it resolved so once an anomaly of it is open again (an answer undone): for
      `incident_ids`, or those resolved since `reopen_since`;
    - raise to danger those holding a danger anomaly (the worker raises line anomalies after
      they are stored).
    Returns (ids resolved, ids reopened or raised); `dry_run`: only says so (SELECTs, no write
    lock needed). Cheap: unresolved incidents are few, each looked up through ix_anomalies_incident_id."""
    i, a = Incident.__table__.c, Anomaly.__table__.c
    where = []
    if stream_id is not None:
        where.append(i.stream_id == stream_id)
    if incident_ids is not None:
        where.append(i.id.in_(list(incident_ids)))
    scope = [*where, i.status.in_(INCIDENT_OPEN)]
    has_open = select(a.id).where(a.incident_id == i.id, a.status == "open").exists()
    changed = select(a.id).where(a.incident_id == i.id, a.updated_at >= i.updated_at).exists()
    empty = ~select(a.id).where(a.incident_id == i.id).exists()
    done = list(session.execute(select(i.id).where(*scope, ~has_open, changed | empty)).scalars().all())
    worse = select(a.id).where(a.incident_id == i.id, a.severity == "danger").exists()
    raised = list(session.execute(select(i.id).where(*scope, i.severity != "danger", worse)).scalars().all())
    reopened: list[int] = []
    if incident_ids is not None or reopen_since is not None:
        q = select(i.id).where(*where, i.status == "resolved", i.resolved_by == "auto", has_open)
        if reopen_since is not None:
            q = q.where(i.resolved_at >= reopen_since)
        reopened = list(session.execute(q).scalars().all())
    if dry_run:
        return done, raised + reopened
    t = Incident.__table__
    if raised:
        session.execute(update(t).where(i.id.in_(raised)).values(severity="danger"))
    if done:
        session.execute(update(t).where(i.id.in_(done), i.status.in_(INCIDENT_OPEN)).values(
            status="resolved", resolved_at=now, resolved_by="auto", updated_at=now))
    if reopened:
        session.execute(update(t).where(i.id.in_(reopened), i.status == "resolved").values(
            status="open", resolved_at=None, resolved_by=None, acknowledged_at=None, updated_at=now))
    return done, raised + reopened


def set_incident(session: Session, incident_id: int, now: datetime, actor: str, status: str | None = None,
                 assignee: str | None = None, unassign: bool = False) -> Any:
    """An operator's change to an incident: `status` open (reopen), acknowledged or resolved;
    `assignee` (a name) or `unassign`. The updated row; LookupError when there is none."""
    row = session.get(Incident, incident_id)
    if row is None:
        raise LookupError(f"no incident with id {incident_id}")
    if status is not None and status != row.status:
        if status == "resolved":
            row.resolved_at, row.resolved_by = now, actor
        else:
            row.resolved_at = row.resolved_by = None
            row.acknowledged_at = now if status == "acknowledged" else None
        row.status = status
    if unassign:
        row.assignee = None
    elif assignee is not None:
        row.assignee = assignee
    row.updated_at = now
    session.add(row)
    session.flush()
    return row


def add_incident_note(session: Session, incident_id: int, author: str, note: str, now: datetime) -> Any:
    """A note on an incident; LookupError when there is no such incident."""
    if session.get(Incident, incident_id) is None:
        raise LookupError(f"no incident with id {incident_id}")
    row = IncidentNote(incident_id=incident_id, author=author, text=note, created_at=now)
    session.add(row)
    session.flush()
    return row


ANOMALY_HOOKS: "weakref.WeakKeyDictionary[Engine, Any]" = weakref.WeakKeyDictionary()
"""Per engine, while an app runs: `server.alerts.AlertHook`, told of new anomalies in their transaction."""


def insert_anomalies(session: Session, rows: list[dict]) -> None:
    """Insert anomalies rows (dicts of column values, the same keys in each). With an alert hook
    for the engine and a channel that may want them, the open ones queue alerts in this
    transaction (`server.alerts`); without channels nothing more is done."""
    if not rows:
        return
    hook = ANOMALY_HOOKS.get(session.get_bind()) if ANOMALY_HOOKS else None
    rules = hook.wants(session, rows) if hook is not None else None
    if not rules:
        executemany_rows(session.connection(), Anomaly.__table__, rows)  # a batch can flag hundreds of lines
        return
    hook.fired(session, rows, insert_rows(session, Anomaly.__table__, rows), rules)  # the ids: the alerts name them


def update_lines(session: Session, rows: list[dict]) -> None:
    """Set loggpt_flag, severity, checked_at of lines: dicts with `_id`, `loggpt_flag`, `severity`, `checked_at`."""
    if not rows:
        return
    stmt = (
        update(LogLine.__table__)
        .where(LogLine.__table__.c.id == bindparam("_id"))
        .values(loggpt_flag=bindparam("loggpt_flag"), severity=bindparam("severity"),
                checked_at=bindparam("checked_at"))
    )
    session.connection().execute(stmt, rows)


# --------------------------------------------------------------------------- windows


def session_context(session: Session, stream_id: int, window_ids: Sequence[int], limit: int) -> dict[int, list[dict]]:
    """Per window: the lines of the earlier closed windows with the same key (the session's
    earlier parts, cut by the idle timeout or the length cap), oldest first, at most `limit`
    (the newest). `models.stream.ClosedWindow.context_*` is built from them."""
    ids = list(window_ids)
    out: dict[int, list[dict]] = {i: [] for i in ids}
    if not ids:
        return out
    keys = window_keys(session, ids)
    c = Window.__table__.c
    earlier: dict[str, list[tuple[int, int]]] = {}  # key -> (id, n_lines), oldest first
    wanted = list(dict.fromkeys(keys.values()))
    for start in range(0, len(wanted), 5000):
        rows = session.execute(
            select(c.id, c.key, c.n_lines).where(c.stream_id == stream_id, c.key.in_(wanted[start : start + 5000]),
                                                 c.id < max(ids), c.state != "open").order_by(c.id)
        ).all()
        for wid, key, n in rows:
            earlier.setdefault(key, []).append((wid, n))
    chosen: dict[int, list[int]] = {}
    for wid in ids:
        before, total = [], 0
        for eid, n in reversed([e for e in earlier.get(keys.get(wid), []) if e[0] < wid]):
            if total >= limit:
                break
            before.append(eid)
            total += n
        chosen[wid] = before[::-1]
    lines = window_lines(session, {e for v in chosen.values() for e in v})
    for wid, before in chosen.items():
        out[wid] = [x for e in before for x in lines[e]][-limit:]
    return out


def window_lines(session: Session, window_ids: Iterable[int]) -> dict[int, list[dict]]:
    """Per window: its lines in order, each a dict of id, timestamp, template_id, masked,
    rapid_flag, rapid_score, loggpt_flag, severity, label.

    The order is arrival order with the lines of one timestamp sorted by template id
    (`models.parsing.sessions.canonical_order`): LogGPT reads, trains on and reports positions in
    this order, so ties of a coarse clock do not look like anomalies."""
    ids = list(window_ids)
    out: dict[int, list[dict]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = session.execute(
        select(WindowLine.window_id, LogLine.id, LogLine.template_id, LogLine.masked, LogLine.rapid_flag,
               LogLine.rapid_score, LogLine.loggpt_flag, LogLine.severity, LogLine.label, LogLine.timestamp,
               LogLine.level)
        .join(LogLine, LogLine.id == WindowLine.line_id)
        .where(WindowLine.window_id.in_(ids))
        .order_by(WindowLine.window_id, WindowLine.position)
    ).all()
    for r in rows:
        out[r[0]].append({"id": r[1], "template_id": r[2], "masked": r[3], "rapid_flag": r[4], "rapid_score": r[5],
                          "loggpt_flag": r[6], "severity": r[7], "label": r[8], "timestamp": r[9], "level": r[10]})
    for wid, members in out.items():
        order = canonical_order([x["timestamp"] for x in members], [x["template_id"] for x in members])
        out[wid] = [members[i] for i in order]
    return out


def claim_windows(session: Session, limit: int, owner: str | None = None,
                  now: datetime | None = None) -> list[tuple[int, int]]:
    """Move up to `limit` queued windows, oldest first, to `checking` for `owner`: their (id,
    stream id). On PostgreSQL rows another worker is claiming are skipped (SKIP LOCKED), so
    workers on several hosts never wait for or take each other's windows."""
    t = Window.__table__
    pick = select(t.c.id).where(t.c.state == "queued").order_by(t.c.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    rows = session.execute(
        update(t).where(t.c.id.in_(pick.scalar_subquery()), t.c.state == "queued")
        .values(state="checking", attempts=t.c.attempts + 1, claimed_by=owner, claimed_at=now or utcnow())
        .returning(t.c.id, t.c.stream_id)
    ).all()
    return sorted((r[0], r[1]) for r in rows)


def unclaim_windows(session: Session, window_ids: Sequence[int]) -> None:
    """Claimed windows back to the queue, their claim not counted as an attempt."""
    t = Window.__table__
    session.execute(update(t).where(t.c.id.in_(list(window_ids)), t.c.state == "checking")
                    .values(state="queued", attempts=t.c.attempts - 1))


def requeue_checking(session: Session, owner: str | None = None, dead_before: datetime | None = None) -> int:
    """Windows a dead worker was checking go back to the queue. One process (no `owner`): all of
    them, at start. A cluster: those `owner` claimed (this node, restarted) and those of nodes
    not seen since `dead_before`."""
    t = Window.__table__
    q = update(t).where(t.c.state == "checking")
    if owner is not None:
        alive = live_nodes(dead_before)
        q = q.where(or_(t.c.claimed_by == owner, t.c.claimed_by.is_(None), t.c.claimed_by.not_in(alive)))
    return session.execute(q.values(state="queued", claimed_by=None, claimed_at=None)).rowcount or 0


def live_nodes(dead_before: datetime) -> Any:
    """The names of the cluster's nodes seen since `dead_before`, as a subquery: work claimed by
    any other name is a dead node's."""
    from logsense.server.tables import ClusterNode

    return select(ClusterNode.name).where(ClusterNode.seen_at >= dead_before).scalar_subquery()


def fail_windows(session: Session, window_ids: Sequence[int], error: str, max_attempts: int) -> None:
    """Windows whose check failed: back to the queue, or `failed` after `max_attempts` claims."""
    t = Window.__table__
    for wid in window_ids:
        attempts = session.execute(select(t.c.attempts).where(t.c.id == wid)).scalar() or 0
        state = "failed" if attempts >= max_attempts else "queued"
        session.execute(update(t).where(t.c.id == wid).values(state=state, error=error[:2000]))


def save_window_checks(session: Session, rows: list[dict]) -> None:
    """The worker's results (`_id`, state, checked_at, anomalous, model_version, result), on the
    windows it still holds (`checking`)."""
    t = Window.__table__
    session.connection().execute(
        update(t).where(t.c.id == bindparam("_id"), t.c.state == "checking").values(
            state=bindparam("state"), checked_at=bindparam("checked_at"), anomalous=bindparam("anomalous"),
            model_version=bindparam("model_version"), result=bindparam("result"), error=None),
        rows,
    )


def raise_line_anomalies(session: Session, line_ids: list[int], now: datetime) -> None:
    """Open line anomalies of lines that became danger follow their line."""
    t = Anomaly.__table__
    for start in range(0, len(line_ids), 5000):
        session.execute(
            update(t).where(t.c.line_id.in_(line_ids[start : start + 5000]), t.c.kind == "line",
                            t.c.status == "open").values(severity="danger", updated_at=now)
        )


def pending_counts(session: Session, stream_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Window.state, func.count(Window.id))
        .where(Window.stream_id == stream_id, Window.state.in_(("open", "queued", "checking")))
        .group_by(Window.state)
    ).all()
    return {"open": 0, "queued": 0, "checking": 0, **{state: n for state, n in rows}}


def loggpt_queues(session: Session, now: datetime, stream_id: int | None = None,
                  with_open: bool = False) -> dict[int, dict]:
    """Per stream id, its LogGPT queue in one grouped query (the indexes on windows (state, id)
    and (stream_id, state, id) serve it): `queued` and `checking` counts, `depth` (their sum:
    closed and waiting for the LogGPT worker, or being checked) and `lag_seconds` (`now` minus the
    `closed_at` of the oldest of them; 0 when there is none); `open` too with `with_open` (else 0).
    Streams with none of these windows are left out; `stream_id` limits it to one stream."""
    states = ("open", "queued", "checking") if with_open else ("queued", "checking")
    q = (select(Window.stream_id, Window.state, func.count(Window.id), func.min(Window.closed_at))
         .where(Window.state.in_(states)))
    if stream_id is not None:
        q = q.where(Window.stream_id == stream_id)
    out: dict[int, dict] = {}
    for sid, state, n, oldest in session.execute(q.group_by(Window.stream_id, Window.state)).all():
        row = out.setdefault(sid, {"open": 0, "queued": 0, "checking": 0, "depth": 0, "lag_seconds": 0.0})
        row[state] = int(n)
        if state == "open":
            continue
        row["depth"] += int(n)
        if oldest is not None:
            if isinstance(oldest, str):  # an aggregate SQLite hands back untyped
                oldest = datetime.fromisoformat(oldest)
            if oldest.tzinfo is None:  # stored as naive UTC
                oldest = oldest.replace(tzinfo=timezone.utc)
            row["lag_seconds"] = max(row["lag_seconds"], (now - oldest).total_seconds(), 0.0)
    return out


def rapid_pending(session: Session, stream_ids: Iterable[int]) -> dict[int, int]:
    """Per stream id, its lines waiting for their RAPID verdict (`server.encoder`); 0 for none.
    One index range per stream (ix_log_lines_not_normal)."""
    out = {}
    for sid in stream_ids:
        out[sid] = session.execute(
            select(func.count()).select_from(LogLine).where(LogLine.stream_id == sid, severity_is("pending"))
        ).scalar() or 0
    return out


# --------------------------------------------------------------------------- training data


def normal_window_ids(session: Session, stream_id: int, after_window_id: int = 0) -> list[int]:
    """Windows that are normal training data: every line train-mode or labeled normal by an operator
    (or the window refuted as a whole), and nothing in them confirmed anomalous."""
    c = Window.__table__.c
    # Per window, stop at its first line that is not normal data (NOT EXISTS): a NOT IN over every
    # such line of the stream took 1.1 s at 1.1M lines, this 0.25 s (post-training windows fail at their first line).
    has_bad_line = (
        select(WindowLine.line_id)
        .join(LogLine, LogLine.id == WindowLine.line_id)
        .where(
            WindowLine.window_id == c.id,
            or_(LogLine.label == "anomaly", and_(LogLine.severity != "train", or_(LogLine.label.is_(None),
                                                                                   LogLine.label != "normal"))),
        )
        .exists()
    )
    rows = session.execute(
        select(c.id)
        .where(
            c.stream_id == stream_id,
            c.id > after_window_id,
            c.n_lines > 0,
            or_(c.label.is_(None), c.label != "anomaly"),
            or_(c.label == "normal", ~has_bad_line),
        )
        .order_by(c.id)
    ).all()
    return [r[0] for r in rows]


def confirmed_anomaly_window_ids(session: Session, stream_id: int) -> list[int]:
    """Windows an operator confirmed as anomalous (the window, or a line in it)."""
    c = Window.__table__.c
    by_line = (
        select(WindowLine.window_id)
        .join(LogLine, LogLine.id == WindowLine.line_id)
        .where(LogLine.stream_id == stream_id, LogLine.label == "anomaly")
    )
    rows = session.execute(
        select(c.id).where(c.stream_id == stream_id, or_(c.label == "anomaly", c.id.in_(by_line))).order_by(c.id)
    ).all()
    return [r[0] for r in rows]


def normal_texts(session: Session, stream_id: int, after_line_id: int = 0) -> list[str]:
    """Distinct masked texts known normal: train-mode lines and lines an operator labeled normal."""
    rows = session.execute(
        select(LogLine.masked)
        .where(LogLine.stream_id == stream_id, LogLine.id > after_line_id,
               or_(severity_is("train"), LogLine.label == "normal"))
        .distinct()
    ).all()
    return [r[0] for r in rows]


def max_line_id(session: Session, stream_id: int) -> int:
    return session.execute(select(func.max(LogLine.id)).where(LogLine.stream_id == stream_id)).scalar() or 0


def as_dicts(rows: Iterable[Any]) -> list[dict]:
    return [dict(r._mapping) for r in rows]


# --------------------------------------------------------------------------- idempotent ingest

INGEST_KEY_DAYS = 1  # how long a batch's Idempotency-Key answers a retry


def stored_answer(session: Session, stream_id: int, key: str) -> tuple[int, bytes] | None:
    """The (status, answer) a batch posted earlier with this key got, if any."""
    from logsense.server.tables import IngestKey

    row = session.execute(select(IngestKey.status, IngestKey.answer)
                          .where(IngestKey.stream_id == stream_id, IngestKey.key == key)).first()
    if row is None:
        return None
    answer = bytes(row.answer)
    return row.status, (answer if answer[:1] == b"{" else zlib.decompress(answer))  # JSON, or zlib'd JSON


def save_answer(session: Session, stream_id: int, key: str, status: int, answer: bytes, now: datetime) -> None:
    """Keep a keyed batch's answer in the batch's transaction; forget keys older than a day."""
    from logsense.server.tables import IngestKey

    t = IngestKey.__table__
    session.execute(t.delete().where(t.c.created_at < now - timedelta(days=INGEST_KEY_DAYS)))
    # zlib here, not the database's own compression: a cluster keys every batch, and this process
    # compresses off the database's cores
    session.add(IngestKey(stream_id=stream_id, key=key, status=status, answer=zlib.compress(answer, 1), created_at=now))


# --------------------------------------------------------------------------- the training review


def save_review(session: Session, stream_id: int, items: Sequence, statuses: dict[int, str]) -> None:
    """Store the training review's items (`models.review.ReviewItem`): new ones with the model's
    status, known ones with fresh counts (an operator's answer stands)."""
    from logsense.server.tables import TemplateReview

    known = {r.template_id: r for r in session.execute(
        select(TemplateReview).where(TemplateReview.stream_id == stream_id)).scalars().all()}
    for it in items:
        row = known.get(it.template_id) or TemplateReview(stream_id=stream_id, template_id=it.template_id,
                                                          status=statuses.get(it.template_id, "unconfirmed"))
        row.reasons, row.n_lines, row.n_windows = list(it.reasons), it.n_lines, it.n_windows
        row.first_ts, row.last_ts, row.example = it.first_ts, it.last_ts, it.example[:2000]
        row.shape = list(it.shape) if it.shape is not None else None
        session.add(row)


def review_rows(session: Session, stream_id: int, status: str | None = None) -> list:
    """The stream's training review, unanswered first, then by how few windows hold the template."""
    from logsense.server.tables import TemplateReview

    q = select(TemplateReview).where(TemplateReview.stream_id == stream_id)
    if status is not None:
        q = q.where(TemplateReview.status == status)
    rows = session.execute(q).scalars().all()
    return sorted(rows, key=lambda r: (r.status != "unconfirmed", r.n_windows, r.template_id))


def read_review(session: Session, stream_id: int, model: Any) -> None:
    """Bring the model's training review (`StreamModel.reviews`, `review_shapes`) up to the stored
    answers: the rows are the truth across restarts."""
    from logsense.server.tables import TemplateReview

    rows = session.execute(select(TemplateReview.template_id, TemplateReview.status, TemplateReview.shape)
                           .where(TemplateReview.stream_id == stream_id)).all()
    model.reviews.update({r.template_id: r.status for r in rows})
    model.review_shapes.update({r.template_id: tuple(r.shape) for r in rows if r.shape})


def confirm_reviews(session: Session, stream_id: int, template_ids: Sequence[int], actor: str | None) -> None:
    """Unconfirmed review items an operator's "normal" on a line or window answered."""
    from logsense.server.tables import TemplateReview

    t = TemplateReview.__table__
    session.execute(update(t).where(t.c.stream_id == stream_id, t.c.template_id.in_(list(template_ids)),
                                    t.c.status == "unconfirmed")
                    .values(status="normal", answered_at=datetime.now(timezone.utc), actor=actor))


# --------------------------------------------------------------------------- a cluster's templates


def save_templates(session: Session, stream_id: int, n_templates: int, state: dict, now: datetime) -> None:
    """The stream's template miner, in the batch's transaction that created templates: a new owner
    or another replica reads the ids the stored lines carry (`templates_of`)."""
    from logsense.server.tables import StreamParser

    blob = zlib.compress(orjson.dumps(state), 1)
    row = session.get(StreamParser, stream_id)
    if row is None:
        session.add(StreamParser(stream_id=stream_id, n_templates=n_templates, state=blob, updated_at=now))
    else:
        row.n_templates, row.state, row.updated_at = n_templates, blob, now
        session.add(row)


def templates_of(session: Session, stream_id: int, newer_than: int = -1) -> dict | None:
    """The stream's saved miner state, if it has more than `newer_than` templates."""
    from logsense.server.tables import StreamParser

    row = session.execute(select(StreamParser.state).where(StreamParser.stream_id == stream_id,
                                                           StreamParser.n_templates > newer_than)).first()
    return None if row is None else orjson.loads(zlib.decompress(row[0]))
