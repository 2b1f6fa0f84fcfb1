"""Stored log lines and windows as clients, pages and the encoder read them: verdicts after an
id, a line's neighbours and windows, a stream's tail, and the lines still waiting for RAPID.

Ingest writes lines through `store`; the windows' life (open, close, check) is `windows` and
the worker's. What is here only reads, but for the encoder's verdicts (`save_rapid_verdicts`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlmodel import Session

from logsense.server.tables import LogLine, Stream, Window, WindowLine, severity_is

PENDING = ("open", "queued", "checking")  # windows whose LogGPT check is still to come


def verdicts(session: Session, stream_id: int, after_id: int, limit: int, severity: str | None = None) -> list[LogLine]:
    """The stream's lines after `after_id` with their verdicts so far, by id."""
    q = select(LogLine).where(LogLine.stream_id == stream_id, LogLine.id > after_id)
    if severity is not None:  # normal lines (most of them) are found by id, the others by ix_log_lines_not_normal
        q = q.where(severity_is(severity))
    return list(session.execute(q.order_by(LogLine.id).limit(limit)).scalars().all())


def windows(session: Session, stream_id: int, state: str, after_id: int, limit: int) -> list[Window]:
    """The stream's windows after `after_id` by id: `state` one of theirs, `pending` (PENDING) or `any`."""
    q = select(Window).where(Window.stream_id == stream_id, Window.id > after_id)
    if state == "pending":
        q = q.where(Window.state.in_(PENDING))
    elif state != "any":
        q = q.where(Window.state == state)
    return list(session.execute(q.order_by(Window.id).limit(limit)).scalars().all())


def with_stream(session: Session, line_id: int) -> tuple[LogLine, Stream] | None:
    """A stored line and its stream; None when there is no such line."""
    line = session.get(LogLine, line_id)
    return None if line is None else (line, session.get(Stream, line.stream_id))


def before(session: Session, stream_id: int, line_id: int | None, n: int) -> list[LogLine]:
    """Up to `n` of the stream's lines before `line_id` (None: its newest), nearest first."""
    q = select(LogLine).where(LogLine.stream_id == stream_id)
    if line_id is not None:
        q = q.where(LogLine.id < line_id)
    return list(session.execute(q.order_by(LogLine.id.desc()).limit(n)).scalars().all())


def after(session: Session, stream_id: int, line_id: int, n: int, *, inclusive: bool = False) -> list[LogLine]:
    """Up to `n` of the stream's lines after `line_id` (from it, with `inclusive`), oldest first."""
    q = select(LogLine).where(LogLine.stream_id == stream_id,
                              LogLine.id >= line_id if inclusive else LogLine.id > line_id)
    return list(session.execute(q.order_by(LogLine.id).limit(n)).scalars().all())


def raws(session: Session, ids: list[int]) -> dict[int, str]:
    """{line id: raw line} of those of `ids` still stored."""
    if not ids:
        return {}
    return dict(session.execute(select(LogLine.id, LogLine.raw).where(LogLine.id.in_(ids))).all())


def windows_of(session: Session, line_id: int) -> list[Window]:
    """The windows and sessions a line is in, oldest first."""
    return list(session.execute(
        select(Window).join(WindowLine, WindowLine.window_id == Window.id)
        .where(WindowLine.line_id == line_id).order_by(Window.id)
    ).scalars().unique().all())


def totals(session: Session) -> tuple[int, int]:
    """(lines, distinct masked texts) over every stream."""
    n, distinct = session.execute(select(func.count(), func.count(LogLine.masked.distinct()))
                                  .select_from(LogLine)).one()
    return int(n), int(distinct)


# --------------------------------------------------------------------------- the encoder's


def rapid_pending_lines(session: Session, stream_id: int, limit: int) -> list[Any]:
    """The stream's oldest lines waiting for their RAPID verdict: rows (id, masked, template_id)."""
    return list(session.execute(
        select(LogLine.id, LogLine.masked, LogLine.template_id)
        .where(LogLine.stream_id == stream_id, severity_is("pending"), LogLine.rapid_score.is_(None))
        .order_by(LogLine.id).limit(limit)
    ).all())


def save_rapid_verdicts(session: Session, rows: list[dict]) -> set[int]:
    """Write RAPID's verdicts (dicts of `_id`, `rapid_score`, `rapid_flag`, `severity`) on those
    lines still pending: an operator may have answered one meanwhile, and that answer stands.
    The ids written."""
    t = LogLine.__table__
    still = set(session.execute(select(t.c.id).where(t.c.id.in_([r["_id"] for r in rows]),
                                                     t.c.severity == "pending")).scalars())
    kept = [r for r in rows if r["_id"] in still]
    if kept:
        session.connection().execute(
            update(t).where(t.c.id == bindparam("_id"), t.c.severity == "pending").values(
                rapid_score=bindparam("rapid_score"), rapid_flag=bindparam("rapid_flag"),
                severity=bindparam("severity")),
            kept)
    return still
