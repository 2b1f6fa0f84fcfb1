"""`/`: every stream at a glance: ingest rate, open anomalies by severity, live model, train mode,
the LogGPT queue (depth and lag), a chart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session

from logsense.server import reports, store, streams
from logsense.server.tables import Job, Stream
from logsense.server.ui.charts import RANGES, Chart, stream_chart
from logsense.server.ui.core import OperatorDep, UiError, render

router = APIRouter()

RATE_SECONDS = 300  # the ingest rate is lines received over the last 5 minutes


@dataclass
class StreamCard:
    stream: Stream
    train_mode: bool
    state: str  # learning / calibrating / detecting / loading (StreamModel.state)
    state_reason: str
    lines_total: int
    rate_per_min: float
    open_danger: int
    open_watch: int
    model_version: int | None
    pending: dict  # windows open, queued, checking; depth (queued + checking), lag_seconds (`store.loggpt_queues`)
    rapid_pending: int  # lines whose new text waits for the background encoder
    last_job: Job | None
    chart: Chart


def cards(request: Request, range_name: str) -> list[StreamCard]:
    engine = request.app.state.engine
    now = datetime.now(timezone.utc)
    with Session(engine) as db:
        found = streams.all_streams(db)
        totals = store.line_totals(db)
        recent = store.line_totals(db, since=now - timedelta(seconds=RATE_SECONDS))  # to the 10 s slot
        opens = reports.open_by_stream(db)
        live = reports.live_versions(db)
        queues = store.loggpt_queues(db, now, with_open=True)
        rapid_pending = store.rapid_pending(db, [s.id for s in found])
        none_pending = {"open": 0, "queued": 0, "checking": 0, "depth": 0, "lag_seconds": 0.0}
        out = []
        for s in found:
            last_job = reports.last_job(db, s.id)
            state, reason = request.app.state.registry.state(s)
            out.append(StreamCard(
                stream=s, train_mode=s.config().train_mode, state=state, state_reason=reason,
                lines_total=totals.get(s.id, 0),
                rate_per_min=recent.get(s.id, 0) * 60.0 / RATE_SECONDS,
                open_danger=opens.get((s.id, "danger"), 0), open_watch=opens.get((s.id, "watch"), 0),
                model_version=live.get(s.id), pending=queues.get(s.id, none_pending),
                rapid_pending=rapid_pending[s.id], last_job=last_job,
                chart=None,  # type: ignore[arg-type]
            ))
    for c in out:
        c.chart = stream_chart(engine, c.stream.id, range_name, now, c.stream.name)
    return out


@router.get("/")
def overview(request: Request, op: OperatorDep, range: str = "24h") -> Response:  # noqa: A002 (query name)
    if range not in RANGES:
        raise UiError(400, f"range must be one of {', '.join(RANGES)}, not {range[:20]!r}")
    ready = request.app.state.registry.ready_reason() if getattr(request.app.state, "registry", None) else None
    from logsense.server.retention import database_bytes, human_bytes

    with Session(request.app.state.engine) as db:
        opens = reports.open_counts(db)
    engine = request.app.state.engine
    return render(request, "overview/list.html", {
        "section": "overview", "cards": cards(request, range), "range": range, "ranges": list(RANGES),
        "models_note": ready, "opens": opens, "db_size": human_bytes(database_bytes(engine)),
        "db_kind": "SQLite file and WAL" if engine.dialect.name == "sqlite" else "PostgreSQL database"},
        partial="overview/cards.html")
