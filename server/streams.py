"""Streams as clients and operators manage them: find one by name, create one, change its
settings, delete it, and what each has queued.

`/api/v1/streams` and the `/streams` pages both go through here, so a taken name or a refused
setting reads the same in both. A stream cannot be renamed: ingest clients address it by name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from logsense.server import store
from logsense.server.tables import Job, LogLine, ModelVersion, Stream, StreamSettings, Window, utcnow

LOW_HEADER_PARSE_RATE = 0.5  # under this share of lines whose header parsed, the format does not fit: a warning


class StreamExists(Exception):
    """The name is taken (the API's 409)."""

    def __init__(self, name: str):
        super().__init__(f"a stream named {name!r} already exists")


def by_name(session: Session, name: str) -> Stream | None:
    return session.execute(select(Stream).where(Stream.name == name)).scalars().first()


def names(session: Session) -> list[str]:
    """Every stream's name, sorted: the pages' stream pickers."""
    return list(session.execute(select(Stream.name).order_by(Stream.name)).scalars().all())


def all_streams(session: Session, name: str | None = None) -> list[Stream]:
    """Every stream by name (or only the one named `name`, if it exists)."""
    q = select(Stream).order_by(Stream.name)
    if name is not None:
        q = q.where(Stream.name == name)
    return list(session.execute(q).scalars().all())


def create(session: Session, name: str, settings: StreamSettings) -> Stream:
    """A new stream, committed; StreamExists when the name is taken (also when taken concurrently)."""
    if session.execute(select(Stream.id).where(Stream.name == name)).first() is not None:
        raise StreamExists(name)
    stream = Stream(name=name, settings=settings.model_dump(mode="json"))
    session.add(stream)
    try:
        session.commit()
    except IntegrityError:  # created concurrently since the check above
        session.rollback()
        raise StreamExists(name) from None
    session.refresh(stream)
    return stream


def update_settings(session: Session, stream: Stream, changes: dict[str, Any]) -> Stream:
    """Change the settings named in `changes` (None resets an optional one), committed. The result
    is validated as a whole: pydantic's ValidationError names the field refused."""
    new = StreamSettings.model_validate({**stream.config().model_dump(mode="json"), **changes})
    stream.settings = new.model_dump(mode="json")
    stream.updated_at = utcnow()
    session.add(stream)
    session.commit()
    session.refresh(stream)
    return stream


def has_data(session: Session, stream_id: int) -> bool:
    """Whether the stream holds lines, windows, jobs or model versions (a delete wants `force` then)."""
    return any(
        session.execute(select(exists().where(table.stream_id == stream_id))).scalar()
        for table in (LogLine, Window, Job, ModelVersion)
    )


def delete(session: Session, stream: Stream) -> None:
    """Delete the stream; ON DELETE CASCADE removes its rows."""
    session.delete(stream)
    session.commit()


def queues_of(session: Session, stream_ids: list[int], now: datetime) -> dict[int, dict]:
    """Per stream id, its LogGPT queue (`store.loggpt_queues`) and `rapid_pending` lines."""
    queues = store.loggpt_queues(session, now, stream_ids[0] if len(stream_ids) == 1 else None)
    pending = store.rapid_pending(session, stream_ids)
    return {sid: {**queues.get(sid, {}), "rapid_pending": pending[sid]} for sid in stream_ids}


def header_report(model: Any) -> tuple[float | None, str | None]:
    """(header parse rate, layout) of a stream's loaded model (`models.parsing.LogParser`): the
    share of lines since the model was loaded whose header the format read (None: no line yet),
    and the preset reading them (`auto`'s choice, `custom` for a format_regex). (None, None)
    without a model."""
    parser = getattr(model, "parser", None)
    if parser is None:
        return None, None
    rate = parser.header_parse_rate
    return (None if rate is None else round(float(rate), 4)), parser.layout
