"""Reading anomalies: the API's list, the queue's rows and counts, what an anomaly's page shows
beside it, and muting the templates of some.

One filter (`Match`) serves the API's `GET /api/v1/anomalies` and the UI's queue, so both pick
the same anomalies for the same filters. Answers (refute, confirm, reopen) are `feedback`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from logsense.server.feedback import mute_template
from logsense.server.incidents import Group, fill_details, incidents_of, rows_select
from logsense.server.services import Services
from logsense.server.tables import Anomaly, Feedback, LogLine, Stream, TemplateMute


@dataclass(frozen=True)
class Match:
    """Which anomalies: each filter left None (status "any") takes every one."""

    stream: str | None = None  # by name
    severity: str | None = None
    status: str = "open"
    kind: str | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    after_id: int | None = None

    def where(self, q: Any) -> Any:
        """`q` (a select joined to Stream) narrowed to these anomalies."""
        if self.stream is not None:
            q = q.where(Stream.name == self.stream)
        if self.severity is not None:
            q = q.where(Anomaly.severity == self.severity)
        if self.status != "any":
            q = q.where(Anomaly.status == self.status)
        if self.kind is not None:
            q = q.where(Anomaly.kind == self.kind)
        if self.since is not None:
            q = q.where(Anomaly.created_at >= self.since)
        if self.until is not None:
            q = q.where(Anomaly.created_at < self.until)
        if self.after_id is not None:
            q = q.where(Anomaly.id > self.after_id)
        return q


def listed(session: Session, match: Match, limit: int) -> list[tuple[Anomaly, Stream, LogLine | None]]:
    """The matching anomalies oldest first, each with its stream and line (None: a window anomaly's)."""
    q = select(Anomaly, Stream, LogLine).join(Stream, Stream.id == Anomaly.stream_id).outerjoin(
        LogLine, LogLine.id == Anomaly.line_id)
    return [tuple(r) for r in session.execute(match.where(q).order_by(Anomaly.id).limit(limit)).all()]


def with_parts(session: Session, anomaly_id: int) -> tuple[Anomaly, Stream, LogLine | None] | None:
    """One anomaly with its stream and line; None when there is no such anomaly."""
    a = session.get(Anomaly, anomaly_id)
    if a is None:
        return None
    return a, session.get(Stream, a.stream_id), session.get(LogLine, a.line_id) if a.line_id is not None else None


def newest_rows(session: Session, match: Match, limit: int) -> list[Any]:
    """The newest matching anomalies as `incidents.incidents_of` reads them (`incidents.rows_select`)."""
    return list(session.execute(match.where(rows_select()).order_by(Anomaly.id.desc()).limit(limit)).all())


def count(session: Session, match: Match) -> int:
    return session.execute(select(func.count()).select_from(match.where(rows_select()).subquery())).scalar() or 0


def groups_of_ids(session: Session, registry: Any, ids: list[int]) -> list[Group]:
    """The anomalies `ids` as groups (by stream and template), with details: rows drawn again."""
    if not ids:
        return []
    rows = session.execute(rows_select().where(Anomaly.id.in_(ids))).all()
    groups = [g for inc in incidents_of(rows, float("inf")) for g in inc.groups]
    fill_details(session, registry, groups)
    return groups


class NoTemplate(ValueError):
    """Nothing to mute: none of the anomalies has a template."""


def mute(services: Services, ids: list[int], until: datetime, author: str | None) -> tuple[int, int]:
    """Mute the templates of the anomalies `ids` until then; (templates muted, anomalies found).
    LookupError when none of them exists, NoTemplate when none has a template."""
    with Session(services.engine) as session:
        rows = session.execute(select(Anomaly).where(Anomaly.id.in_(ids))).scalars().all()
    if not rows:
        raise LookupError(f"no anomaly with id {', '.join(map(str, ids[:5]))}")
    pairs = {(a.stream_id, a.template_id) for a in rows if a.template_id is not None}
    if not pairs:
        raise NoTemplate("this anomaly has no template to mute")
    for stream_id, template_id in sorted(pairs):
        mute_template(services, stream_id, template_id, until, author=author)
    return len(pairs), len(rows)


# --------------------------------------------------------------------------- beside an anomaly


def line_threshold(session: Session, line_id: int) -> float | None:
    """The RAPID threshold a line was judged by at ingest: in its line anomaly's reasons."""
    reasons = session.execute(select(Anomaly.reasons).where(Anomaly.line_id == line_id, Anomaly.kind == "line")
                              .order_by(Anomaly.id)).scalars().first()
    value = (reasons or {}).get("rapid_threshold")
    return float(value) if value is not None else None


def related(session: Session, anomaly: Anomaly) -> list[Anomaly]:
    """The other anomalies about the same line, oldest first."""
    if anomaly.line_id is None:
        return []
    return list(session.execute(select(Anomaly).where(Anomaly.line_id == anomaly.line_id, Anomaly.id != anomaly.id)
                                .order_by(Anomaly.id)).scalars().all())


def feedback_of(session: Session, anomaly_id: int) -> list[Feedback]:
    """The answers given on an anomaly, oldest first."""
    return list(session.execute(select(Feedback).where(Feedback.anomaly_id == anomaly_id)
                                .order_by(Feedback.id)).scalars().all())


def muted_until(session: Session, stream_id: int, template_id: int, now: datetime) -> datetime | None:
    """Until when the template's alerts are muted (UTC); None when they are not (any more)."""
    mute = session.execute(select(TemplateMute).where(TemplateMute.stream_id == stream_id,
                                                      TemplateMute.template_id == template_id)).scalars().first()
    if mute is None:
        return None
    until = mute.until if mute.until.tzinfo else mute.until.replace(tzinfo=timezone.utc)
    return until if until > now else None
