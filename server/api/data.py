"""`/api/v1/streams/{name}/lines`, `/windows`, `/flush`: line verdicts after an id, pending windows.

A client that posted lines polls `GET /lines?after_id=<last seen>` for verdicts that LogGPT
changed since, and `GET /windows?state=pending` for what is still to be checked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import select

from logsense.server import store, windows
from logsense.server.api.deps import AfterId, SessionDep, StreamDep
from logsense.server.tables import LogLine, Window, severity_is, utcnow

router = APIRouter(prefix="/api/v1/streams", tags=["lines and windows"])

PENDING = ("open", "queued", "checking")


class LineVerdict(BaseModel):
    id: int
    raw: str
    masked: str  # the message as the detectors see it (header split off, variable parts masked)
    template_id: int | None
    rapid_score: float | None
    rapid_flag: bool | None
    loggpt_flag: bool | None  # None: not checked by LogGPT (yet)
    severity: str  # train / normal / watch / danger / pending (RAPID: a new text the encoder has yet to embed)
    label: str | None  # operator: normal / anomaly
    sessions: list
    received_at: datetime
    checked_at: datetime | None


class WindowOut(BaseModel):
    id: int
    kind: str
    key: str
    state: str
    n_lines: int
    opened_at: datetime
    closed_at: datetime | None
    checked_at: datetime | None
    anomalous: bool | None
    model_version: int | None
    attempts: int
    error: str | None


class WindowsOut(BaseModel):
    counts: dict[str, int]  # open / queued / checking of the whole stream
    windows: list[WindowOut]


@router.get("/{name}/lines", response_model=list[LineVerdict])
def list_lines(
    stream: StreamDep,
    session: SessionDep,
    after_id: AfterId = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    severity: Annotated[Literal["train", "normal", "watch", "danger", "pending"] | None, Query()] = None,
) -> list[LineVerdict]:
    """Stored lines with their verdicts so far, by id."""
    q = select(LogLine).where(LogLine.stream_id == stream.id, LogLine.id > after_id)
    if severity is not None:  # normal lines (most of them) are found by id, the others by ix_log_lines_not_normal
        q = q.where(severity_is(severity))
    rows = session.execute(q.order_by(LogLine.id).limit(limit)).scalars().all()
    return [LineVerdict(**r.model_dump()) for r in rows]


@router.get("/{name}/windows", response_model=WindowsOut)
def list_windows(
    stream: StreamDep,
    session: SessionDep,
    state: Annotated[Literal["pending", "open", "queued", "checking", "done", "failed", "any"], Query(
        description="pending = open, queued or checking")] = "pending",
    after_id: AfterId = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> WindowsOut:
    """The stream's windows and sessions; by default those whose LogGPT check is still to come."""
    q = select(Window).where(Window.stream_id == stream.id, Window.id > after_id)
    if state == "pending":
        q = q.where(Window.state.in_(PENDING))
    elif state != "any":
        q = q.where(Window.state == state)
    rows = session.execute(q.order_by(Window.id).limit(limit)).scalars().all()
    return WindowsOut(counts=store.pending_counts(session, stream.id),
                      windows=[WindowOut(**r.model_dump()) for r in rows])


@router.post("/{name}/flush", response_model=WindowsOut)
async def flush(stream: StreamDep, request: Request) -> WindowsOut:
    """Close every open window and session of the stream now (queue them for LogGPT)."""
    engine = request.app.state.engine

    def close() -> None:
        with store.write_session(engine) as session:
            windows.close_all(session, stream.id, utcnow())

    await run_in_threadpool(close)
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        worker.wake()
    from sqlmodel import Session

    with Session(engine) as session:
        return WindowsOut(counts=store.pending_counts(session, stream.id), windows=[])
