"""`/api/v1/streams`: create, list, read, update (PATCH) and delete streams; run a stream's
retention now (`POST .../retention`, `server.retention`).

Delete refuses with 409 while the stream holds data (lines, windows, jobs, model versions),
unless `?force=true`: then the database cascades every row of the stream away and its
artifact folder is removed. A stream cannot be renamed (ingest clients address it by name).
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from logsense.server import streams
from logsense.server.api.deps import SessionDep, SettingsDep, StreamDep
from logsense.server.streams import LOW_HEADER_PARSE_RATE, header_report
from logsense.server.tables import Stream, StreamSettings

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"

router = APIRouter(prefix="/api/v1/streams", tags=["streams"])


class StreamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN, description="Letters, digits, `_`, `.`, `-`; 1 to 64 characters; not `.` or `..`.")
    settings: StreamSettings = Field(default_factory=StreamSettings)

    @field_validator("name")
    @classmethod
    def _reachable(cls, value: str) -> str:
        if value in (".", ".."):
            raise ValueError("'.' and '..' cannot be named in a URL path")
        return value


class StreamUpdate(BaseModel):
    """Only the settings named are changed; `null` resets an optional one (e.g. back to calibrated)."""

    model_config = ConfigDict(extra="forbid")
    settings: dict[str, Any] = Field(default_factory=dict, description="A partial `StreamSettings`.")


ABOUT = {  # what the optional fields of StreamOut say in the schema
    "header_parse_rate": "Share of the lines since the server loaded the stream whose header its format parsed (null: "
                         f"no line yet); under {LOW_HEADER_PARSE_RATE} the format does not fit the lines",
    "layout": "The header preset reading the lines (with format auto: the detected one; custom: format_regex)",
    "queue_depth": "Windows closed and waiting for their LogGPT check (queued or being checked)",
    "queue_lag_seconds": "Age of the oldest of those windows since it closed (0: none waiting)",
    "rapid_pending": "Lines whose masked text is new and waits for the background encoder: their RAPID verdict is "
                     "`pending`",
    "rapid_unindexed": "Normal texts (train mode, restarts) not yet embedded into RAPID's core set; they already "
                       "score as normal",
    "memory_mb": "About what the stream's loaded model holds in memory: RAPID's core sets and caches, LogGPT's "
                 "weights (MB)",
}


class StreamOut(BaseModel):
    id: int
    name: str
    settings: StreamSettings
    state: str | None = None  # learning / calibrating / detecting (loading: the model is not loaded yet)
    state_reason: str | None = None
    header_parse_rate: float | None = Field(None, description=ABOUT["header_parse_rate"])
    layout: str | None = Field(None, description=ABOUT["layout"])
    queue_depth: int | None = Field(None, description=ABOUT["queue_depth"])
    queue_lag_seconds: float | None = Field(None, description=ABOUT["queue_lag_seconds"])
    rapid_pending: int | None = Field(None, description=ABOUT["rapid_pending"])
    rapid_unindexed: int | None = Field(None, description=ABOUT["rapid_unindexed"])
    memory_mb: float | None = Field(None, description=ABOUT["memory_mb"])
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, stream: Stream, registry: Any = None, queue: dict | None = None) -> "StreamOut":
        """`registry` adds the state, the header report and the model's memory, `queue` (a
        `streams.queues_of` row, or {} for none) the queues; without them those fields are null."""
        state, reason = registry.state(stream) if registry is not None else (None, None)
        model = registry.peek(stream.id) if registry is not None else None
        rate, layout = header_report(model)
        depth = lag = pending = None
        if queue is not None:
            depth, lag = queue.get("depth", 0), round(queue.get("lag_seconds", 0.0), 3)
            pending = queue.get("rapid_pending", 0)
        return cls(
            id=stream.id, name=stream.name, settings=stream.config(), state=state, state_reason=reason,
            header_parse_rate=rate, layout=layout, queue_depth=depth, queue_lag_seconds=lag,
            rapid_pending=pending, rapid_unindexed=None if model is None else model.n_unindexed,
            memory_mb=None if model is None else round(model.memory_bytes() / 2**20, 1),
            created_at=stream.created_at, updated_at=stream.updated_at,
        )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=StreamOut)
def create_stream(body: StreamCreate, session: SessionDep) -> StreamOut:
    """Create a stream (409 if the name is taken)."""
    try:
        return StreamOut.of(streams.create(session, body.name, body.settings))
    except streams.StreamExists as exc:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(exc)) from None


@router.get("", response_model=list[StreamOut])
def list_streams(session: SessionDep, request: Request) -> list[StreamOut]:
    """Every stream, by name, with its state (learning, calibrating, detecting) and why, how well
    its format parses and its LogGPT queue."""
    found = streams.all_streams(session)
    queues = streams.queues_of(session, [s.id for s in found], datetime.now(timezone.utc))
    return [StreamOut.of(s, request.app.state.registry, queues[s.id]) for s in found]


@router.get("/{name}", response_model=StreamOut)
def read_stream(stream: StreamDep, session: SessionDep, request: Request) -> StreamOut:
    """One stream with all its settings, its state, how well its format parses, its LogGPT queue,
    the lines waiting for a RAPID verdict and the memory its model holds."""
    queues = streams.queues_of(session, [stream.id], datetime.now(timezone.utc))
    return StreamOut.of(stream, request.app.state.registry, queues[stream.id])


@router.patch("/{name}", response_model=StreamOut)
def update_stream(body: StreamUpdate, stream: StreamDep, session: SessionDep) -> StreamOut:
    """Change some settings; the result is validated as a whole (422 names the field)."""
    try:
        return StreamOut.of(streams.update_settings(session, stream, body.settings))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", "settings", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_stream(
    request: Request,
    stream: StreamDep,
    session: SessionDep,
    settings: SettingsDep,
    force: Annotated[bool, Query(description="Also delete every line, window, job and model of it.")] = False,
) -> Response:
    """Delete a stream: 409 while it holds data, unless `force=true`."""
    stream_id = stream.id
    if not force and streams.has_data(session, stream_id):
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=f"stream {stream.name!r} holds data; delete with ?force=true to remove it all",
        )
    streams.delete(session, stream)
    for hook in request.app.state.stream_deleted_hooks:  # e.g. the detector registry drops its object
        hook(stream_id)
    shutil.rmtree(settings.stream_dir(stream_id), ignore_errors=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class RetentionOut(BaseModel):
    """What one retention run deleted (`server.retention`)."""

    stream: str
    retention_days: int
    cutoff: datetime  # data received before this was considered
    anomalies: int  # refuted or muted ones created before the cutoff
    windows: int
    window_lines: int
    lines: int
    incidents: int  # resolved ones with no anomaly left
    seconds: float


@router.post("/{name}/retention", response_model=RetentionOut)
def run_retention(stream: StreamDep, request: Request) -> RetentionOut:
    """Delete the stream's data older than its `retention_days` now, as the daily job does
    (lines of open or confirmed anomalies, and their windows, are kept); 409 when the stream
    keeps everything (`retention_days` null)."""
    from logsense.server.retention import prune

    days = stream.config().retention_days
    if days is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"stream {stream.name!r} keeps everything (retention_days is "
                                                      "null): set it with PATCH first")
    done = prune(request.app.state.engine, stream.id, days)
    return RetentionOut(stream=stream.name, retention_days=days, **done)
