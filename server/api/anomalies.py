"""`/api/v1/anomalies`: the operator's queue (list, read, or grouped as the UI's rows),
feedback on one anomaly or on a group, and undoing a recent answer (`reopen`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlmodel import Session

from logsense.server.api.deps import MAX_ID, AfterId, CurrentKey, RowId, SessionDep, UtcTime, actor_name, unprocessable
from logsense.server import anomalies, incidents
from logsense.server.feedback import UNDO_SECONDS, answer_group, apply_feedback, reopen
from logsense.server.tables import Anomaly, LogLine, Stream

router = APIRouter(prefix="/api/v1/anomalies", tags=["anomalies"])


class AnomalyOut(BaseModel):
    id: int
    stream: str
    kind: str  # line (RAPID flagged the line) / window (LogGPT flagged its window or session)
    severity: str  # watch / danger
    status: str  # open / confirmed / refuted / muted
    line_id: int | None
    window_id: int | None
    line: str | None  # the raw line
    masked: str | None
    template_id: int | None
    template: str | None
    rapid_score: float | None
    reasons: dict  # rapid_score, rapid_threshold; for windows loggpt_misses: actual and expected top-K
    created_at: datetime
    updated_at: datetime


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Literal["normal", "anomaly"] | None = Field(
        None, description="normal: refute (teach the model); anomaly: confirm; leave out to only mute (suppress_until)")
    scope: Literal["line", "template"] = Field("line", description="template: every line of its template is normal")
    suppress_until: UtcTime | None = Field(None, description="mute alerts from this template until then")
    note: str | None = Field(None, max_length=2000, pattern=r"^[^\x00]*$", description="free text (no NUL)")

    @model_validator(mode="after")
    def _label_or_mute(self) -> "FeedbackIn":
        if self.label is None and self.suppress_until is None:
            raise ValueError("send a label (normal or anomaly), a suppress_until, or both")
        return self


def _template(request: Request, stream: Stream, template_id: int | None) -> str | None:
    model = request.app.state.registry.peek(stream.id)
    return model.template(template_id) if model is not None else None


def _out(request: Request, a: Anomaly, stream: Stream, line: LogLine | None) -> AnomalyOut:
    return AnomalyOut(
        id=a.id, stream=stream.name, kind=a.kind, severity=a.severity, status=a.status, line_id=a.line_id,
        window_id=a.window_id, line=line.raw if line else None, masked=line.masked if line else None,
        template_id=a.template_id, template=_template(request, stream, a.template_id),
        rapid_score=line.rapid_score if line else None, reasons=a.reasons or {},
        created_at=a.created_at, updated_at=a.updated_at,
    )


class AnomalyGroupOut(BaseModel):
    """One row of the queue (`server.incidents`): the anomalies of one template in one incident."""

    incident: str  # the incident's key: groups with the same key are one incident
    stream: str
    template_id: int | None
    template: str | None
    severity: str  # the worst of its members
    status: str  # its members' status, or "mixed"
    count: int
    kinds: dict[str, int]  # members by kind (line / window)
    ids: list[int]  # its members: POST /api/v1/anomalies/feedback answers them all
    first_seen: datetime
    last_seen: datetime
    example: str | None  # one raw line of it


class GroupFeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[int, Field(ge=0, le=MAX_ID)]] = Field(min_length=1, max_length=1000,
                                                             description="the group's members (AnomalyGroupOut.ids)")
    label: Literal["normal", "anomaly"]
    scope: Literal["line", "template"] = Field("line", description="template: every line of its template is normal")


class GroupFeedbackOut(BaseModel):
    answered: int  # members that were open and are answered now
    ids: list[int] = []  # those members: POST /api/v1/anomalies/reopen undoes the answer for a while
    notes: list[str]


class ReopenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[Annotated[int, Field(ge=0, le=MAX_ID)]] = Field(
        min_length=1, max_length=1000, description=f"anomalies answered (refuted or confirmed) in the last "
                                                   f"{UNDO_SECONDS // 60} minutes")


class ReopenOut(BaseModel):
    reopened: int  # of `ids`, open again now
    ids: list[int]
    notes: list[str]


@router.get("", response_model=list[AnomalyOut] | list[AnomalyGroupOut])
def list_anomalies(
    request: Request,
    session: SessionDep,
    stream: Annotated[str | None, Query(description="stream name")] = None,
    severity: Annotated[Literal["watch", "danger"] | None, Query()] = None,
    status: Annotated[Literal["open", "confirmed", "refuted", "muted", "any"], Query()] = "open",
    kind: Annotated[Literal["line", "window"] | None, Query()] = None,
    since: Annotated[UtcTime | None, Query(description="created at or after (ISO 8601)")] = None,
    until: Annotated[UtcTime | None, Query(description="created before (ISO 8601)")] = None,
    after_id: AfterId = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    group: Annotated[Literal["template"] | None, Query(
        description="template: the queue's rows instead of single anomalies, the anomalies of one template in one "
                    "incident each, newest first (the newest 5,000 matching anomalies are grouped)")] = None,
) -> list[AnomalyOut] | list[AnomalyGroupOut]:
    """Anomalies, oldest first (page with `after_id`); open ones unless `status` says otherwise.
    With `group=template`, the same rows as the UI's queue."""
    match = anomalies.Match(stream, severity, status, kind, since, until, after_id)
    if group == "template":
        return _groups(request, session, match, limit)
    return [_out(request, a, s, line) for a, s, line in anomalies.listed(session, match, limit)]


def _groups(request: Request, session: Session, match: anomalies.Match, limit: int) -> list[AnomalyGroupOut]:
    rows = anomalies.newest_rows(session, match, incidents.MAX_GROUPED)
    found = incidents.incidents_of(rows, request.app.state.settings.incident_gap_seconds)
    pairs = [(inc, g) for inc in found for g in inc.groups][:limit]
    incidents.fill_details(session, request.app.state.registry, [g for _, g in pairs])
    return [AnomalyGroupOut(incident=inc.key, stream=g.stream, template_id=g.template_id, template=g.template,
                            severity=g.severity, status=g.status, count=g.count, kinds=dict(g.kinds),
                            ids=sorted(g.ids), first_seen=g.first_seen, last_seen=g.last_seen, example=g.example)
            for inc, g in pairs]


@router.post("/feedback", response_model=GroupFeedbackOut)
async def post_group_feedback(body: GroupFeedbackIn, request: Request, key: CurrentKey) -> GroupFeedbackOut:
    """One answer for a group (a queue row's `ids`): each member still open is refuted or
    confirmed as `POST /api/v1/anomalies/{id}/feedback` would, in one set-based operation."""
    services = request.app.state.services
    try:
        answer = await run_in_threadpool(answer_group, services, list(dict.fromkeys(body.ids)), body.label,
                                         body.scope, actor_name(key))
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    return GroupFeedbackOut(answered=len(answer.ids), ids=answer.ids, notes=list(dict.fromkeys(answer.notes)))


@router.post("/reopen", response_model=ReopenOut)
async def post_reopen(body: ReopenIn, request: Request, key: CurrentKey) -> ReopenOut:
    """Undo an answer of the last 10 minutes: those of `ids` refuted or confirmed since then are open
    again, their feedback rows and their lines' and windows' labels removed. What the live model
    learned from a "normal" stays learned (until the next training, which reads the labels)."""
    services = request.app.state.services
    try:
        answer = await run_in_threadpool(reopen, services, list(dict.fromkeys(body.ids)), actor_name(key))
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    return ReopenOut(reopened=len(answer.ids), ids=answer.ids, notes=list(dict.fromkeys(answer.notes)))


@router.get("/{anomaly_id}", response_model=AnomalyOut)
def read_anomaly(anomaly_id: RowId, request: Request, session: SessionDep) -> AnomalyOut:
    found = anomalies.with_parts(session, anomaly_id)
    if found is None:
        raise HTTPException(404, f"no anomaly with id {anomaly_id}")
    return _out(request, *found)


@router.post("/{anomaly_id}/feedback", response_model=AnomalyOut)
async def post_feedback(anomaly_id: RowId, body: FeedbackIn, request: Request, key: CurrentKey) -> AnomalyOut:
    """Refute (`normal`: the model learns it at once) or confirm (`anomaly`); closes the anomaly."""
    services = request.app.state.services
    try:
        if body.label is None:  # mute only: the template's alerts stop until then, nothing is learned
            await run_in_threadpool(anomalies.mute, services, [anomaly_id], body.suppress_until, actor_name(key))
        else:
            await run_in_threadpool(apply_feedback, services, anomaly_id, body.label, body.scope,
                                    body.suppress_until, actor_name(key), body.note)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise unprocessable(str(exc), "body") from None

    def read() -> AnomalyOut:
        with Session(request.app.state.engine) as session:
            return read_anomaly(anomaly_id, request, session)

    return await run_in_threadpool(read)


