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
from sqlmodel import Session

from logsense.server import lines, store, windows
from logsense.server.api.deps import AfterId, SessionDep, StreamDep
from logsense.server.tables import utcnow

router = APIRouter(prefix="/api/v1/streams", tags=["lines and windows"])


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
    return [LineVerdict(**r.model_dump()) for r in lines.verdicts(session, stream.id, after_id, limit, severity)]


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
    rows = lines.windows(session, stream.id, state, after_id, limit)
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
    worker = request.app.state.services.worker
    if worker is not None:
        worker.wake()
    with Session(engine) as session:
        return WindowsOut(counts=store.pending_counts(session, stream.id), windows=[])
