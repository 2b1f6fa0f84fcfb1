"""Read-only figures the pages and the API show: jobs, model versions, the overview's counts
and the charts' buckets. Nothing here writes; each function is one or two queries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, cast, extract, func, literal_column, select
from sqlmodel import Session

from logsense.server.tables import SLOT_SECONDS, Anomaly, Job, LineCount, ModelVersion, Stream

# --------------------------------------------------------------------------- jobs


def jobs(session: Session, stream: str | None = None, state: str | None = None,
         limit: int = 50) -> list[tuple[Job, str | None]]:
    """Newest jobs first, each with its stream's name (None: a job of no stream)."""
    q = select(Job, Stream.name).outerjoin(Stream, Stream.id == Job.stream_id)
    if stream is not None:
        q = q.where(Stream.name == stream)
    if state is not None:
        q = q.where(Job.state == state)
    return [(j, name) for j, name in session.execute(q.order_by(Job.id.desc()).limit(limit)).all()]


def job(session: Session, job_id: int) -> tuple[Job, str | None] | None:
    """One job with its stream's name; None when there is no such job."""
    found = session.get(Job, job_id)
    if found is None:
        return None
    stream = session.get(Stream, found.stream_id) if found.stream_id is not None else None
    return found, stream.name if stream is not None else None


def last_job(session: Session, stream_id: int) -> Job | None:
    return session.execute(select(Job).where(Job.stream_id == stream_id).order_by(Job.id.desc())).scalars().first()


# --------------------------------------------------------------------------- model versions


def versions(session: Session, stream_id: int) -> list[ModelVersion]:
    """Every trained version of the stream, newest first."""
    return list(session.execute(select(ModelVersion).where(ModelVersion.stream_id == stream_id)
                                .order_by(ModelVersion.id.desc())).scalars().all())


def loggpt_version(session: Session, stream_id: int, version: int) -> ModelVersion:
    """The stream's LogGPT version `version` (sqlalchemy's NoResultFound when there is none)."""
    return session.execute(select(ModelVersion).where(
        ModelVersion.stream_id == stream_id, ModelVersion.kind == "loggpt", ModelVersion.version == version
    )).scalars().one()


def live_versions(session: Session) -> dict[int, int]:
    """{stream id: its live LogGPT version}."""
    return dict(session.execute(select(ModelVersion.stream_id, ModelVersion.version).where(
        ModelVersion.kind == "loggpt", ModelVersion.live == True)).all())  # noqa: E712


# --------------------------------------------------------------------------- anomalies


def open_total(session: Session) -> int:
    """Open anomalies over every stream: the nav's queue badge."""
    return session.execute(select(func.count(Anomaly.id)).where(Anomaly.status == "open")).scalar() or 0


def open_counts(session: Session) -> dict[str, int]:
    """Open anomalies by severity, over every stream, and their `total`."""
    rows = session.execute(select(Anomaly.severity, func.count(Anomaly.id)).where(Anomaly.status == "open")
                           .group_by(Anomaly.severity)).all()
    out = {"danger": 0, "watch": 0, **{s: n for s, n in rows}}
    out["total"] = sum(n for s, n in rows)
    return out


def open_by_stream(session: Session) -> dict[tuple[int, str], int]:
    """{(stream id, severity): open anomalies}."""
    return {(s, sev): n for s, sev, n in session.execute(
        select(Anomaly.stream_id, Anomaly.severity, func.count(Anomaly.id))
        .where(Anomaly.status == "open").group_by(Anomaly.stream_id, Anomaly.severity)).all()}


# --------------------------------------------------------------------------- chart buckets


def _epoch_bucket(column: Any, dialect: str, start: int, width: int) -> Any:
    """The bucket number of a time column. The two ints are inlined (they are ints): the same
    expression then renders identically in SELECT and GROUP BY (PostgreSQL insists)."""
    start_sql, width_sql = literal_column(str(int(start))), literal_column(str(int(width)))
    if dialect == "sqlite":  # naive UTC text; integer division of non-negative ints is a floor
        return cast((cast(func.strftime(literal_column("'%s'"), column), Integer) - start_sql) / width_sql, Integer)
    return func.floor((extract("epoch", column) - start_sql) / width_sql)


def line_buckets(session: Session, stream_id: int, start: datetime, width: int) -> dict[int, int]:
    """Lines per bucket of `width` seconds from `start`, from line_counts (buckets start on a whole
    slot: widths are multiples of it)."""
    first = int(start.timestamp())
    out: dict[int, int] = {}
    rows = session.execute(select(LineCount.slot, LineCount.n).where(
        LineCount.stream_id == stream_id, LineCount.slot >= first // SLOT_SECONDS)).all()
    for slot, n in rows:
        b = (slot * SLOT_SECONDS - first) // width
        out[b] = out.get(b, 0) + n
    return out


def anomaly_buckets(session: Session, stream_id: int, start: datetime, width: int) -> dict[int, int]:
    """Anomalies created per bucket of `width` seconds from `start`."""
    dialect = session.get_bind().dialect.name
    bucket = _epoch_bucket(Anomaly.created_at, dialect, int(start.timestamp()), width).label("b")
    rows = session.execute(select(bucket, func.count()).where(Anomaly.stream_id == stream_id,
                                                              Anomaly.created_at >= start).group_by(bucket)).all()
    return {int(b): int(n) for b, n in rows if b is not None}
