"""`/api/v1/incidents`: stored incidents (`server.incidents`): list, read (its anomalies by
template and its notes), acknowledge / assign / resolve / reopen, and notes.

An incident resolves by itself once none of its anomalies is open; these routes settle that
before they answer (`incidents.settle`), so what they show is current. Resolving one by hand
does not answer its anomalies: their verdicts teach the model (`/api/v1/anomalies/.../feedback`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import Session

from logsense.server import incidents
from logsense.server.api.deps import MAX_ID, CurrentKey, RowId, actor_name, unprocessable

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])

NOTE_CHARS = 4000
TEXT_PATTERN = r"^[^\x00]*$"  # no NUL: PostgreSQL text refuses it


class IncidentOut(BaseModel):
    id: int
    stream: str
    status: str  # open / acknowledged / resolved
    severity: str  # the worst of its anomalies: watch / danger
    title: str  # its first anomaly's masked line (or template)
    template_id: int | None
    template: str | None  # that template's text (the live parser's)
    assignee: str | None
    anomalies: int  # how many joined it
    open_anomalies: int  # of them still open
    opened_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str | None  # who resolved it; "auto": none of its anomalies was open any more
    updated_at: datetime
    url: str  # its page in the web UI

    @classmethod
    def of(cls, request: Request, v: incidents.IncidentView) -> "IncidentOut":
        r = v.row
        return cls(id=r.id, stream=v.stream, status=r.status, severity=r.severity, title=v.title,
                   template_id=r.template_id, template=v.template, assignee=r.assignee, anomalies=r.n_anomalies,
                   open_anomalies=v.open, opened_at=r.opened_at, last_seen_at=r.last_seen_at,
                   acknowledged_at=r.acknowledged_at, resolved_at=r.resolved_at, resolved_by=r.resolved_by,
                   updated_at=r.updated_at, url=incident_url(request, r.id))


def incident_url(request: Request, incident_id: int) -> str:
    """The incident's page, as the people it is shared with reach the server (`public_url`)."""
    base = str(getattr(request.app.state.settings, "public_url", "") or "").rstrip("/")
    return f"{base}/incidents/{incident_id}"


class IncidentGroupOut(BaseModel):
    """The anomalies of one template in the incident."""

    template_id: int | None
    template: str | None
    severity: str
    status: str  # its members' status, or "mixed"
    count: int
    kinds: dict[str, int]
    ids: list[int]  # its anomalies: GET /api/v1/anomalies/{id}; POST /api/v1/anomalies/feedback answers them
    first_seen: datetime
    last_seen: datetime
    example: str | None


class NoteOut(BaseModel):
    id: int
    author: str
    text: str
    created_at: datetime


class IncidentDetailOut(IncidentOut):
    groups: list[IncidentGroupOut]
    notes: list[NoteOut]


class IncidentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["open", "acknowledged", "resolved"] | None = Field(
        None, description="acknowledged: someone is on it; resolved: done (its anomalies keep their status); "
                          "open: reopen")
    assignee: str | None = Field(None, max_length=128, pattern=TEXT_PATTERN,
                                 description="who is on it; an empty string unassigns")


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=NOTE_CHARS, pattern=TEXT_PATTERN)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a note needs some text")
        return value.strip()


def _detail(request: Request, incident_id: int) -> IncidentDetailOut:
    with Session(request.app.state.engine) as db:
        v = incidents.incident_detail(db, request.app.state.registry, incident_id)
    if v is None:
        raise HTTPException(404, f"no incident with id {incident_id}")
    base = IncidentOut.of(request, v)
    return IncidentDetailOut(
        **base.model_dump(),
        groups=[IncidentGroupOut(template_id=g.template_id, template=g.template, severity=g.severity, status=g.status,
                                 count=g.count, kinds=dict(g.kinds), ids=sorted(g.ids), first_seen=g.first_seen,
                                 last_seen=g.last_seen, example=g.example) for g in v.groups],
        notes=[NoteOut(id=n.id, author=n.author, text=n.text, created_at=n.created_at) for n in v.notes])


@router.get("", response_model=list[IncidentOut])
def list_incidents(
    request: Request,
    stream: Annotated[str | None, Query(max_length=64, description="stream name")] = None,
    status: Annotated[Literal["open", "acknowledged", "resolved", "unresolved", "any"], Query(
        description="unresolved: open or acknowledged")] = "any",
    assignee: Annotated[str | None, Query(max_length=128)] = None,
    anomaly_id: Annotated[int | None, Query(ge=0, le=MAX_ID, description="the incident of this anomaly")] = None,
    before_id: Annotated[int | None, Query(ge=0, le=MAX_ID, description="only ids below this (paging)")] = None,
    limit: Annotated[int, Query(ge=1, le=incidents.MAX_LIST)] = 50,
) -> list[IncidentOut]:
    """Stored incidents, newest first; page with `before_id` (the last id of a page)."""
    incidents.settle(request.app.state.engine)
    with Session(request.app.state.engine) as db:
        found = incidents.list_incidents(db, request.app.state.registry, stream, status, before_id, limit, anomaly_id,
                                         assignee)
    return [IncidentOut.of(request, v) for v in found]


@router.get("/{incident_id}", response_model=IncidentDetailOut)
def read_incident(incident_id: RowId, request: Request) -> IncidentDetailOut:
    """One incident with its anomalies grouped by template (each group's `ids`) and its notes."""
    incidents.settle(request.app.state.engine, incident_ids=[incident_id])
    return _detail(request, incident_id)


@router.post("/{incident_id}", response_model=IncidentDetailOut)
async def update_incident(incident_id: RowId, body: IncidentUpdate, request: Request,
                          key: CurrentKey) -> IncidentDetailOut:
    """Acknowledge, assign, resolve or reopen: `{"status": ..., "assignee": ...}` (either or both)."""
    if body.status is None and body.assignee is None:
        raise unprocessable("send a status, an assignee, or both", "body")
    try:
        await run_in_threadpool(incidents.change, request.app.state.engine, incident_id, actor_name(key), body.status,
                                body.assignee)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    return await run_in_threadpool(_detail, request, incident_id)


@router.post("/{incident_id}/notes", status_code=201, response_model=IncidentDetailOut)
async def add_note(incident_id: RowId, body: NoteIn, request: Request, key: CurrentKey) -> IncidentDetailOut:
    """A note on the incident `{"text": ...}` (at most 4000 characters); 201 with the incident."""
    try:
        await run_in_threadpool(incidents.add_note, request.app.state.engine, incident_id, actor_name(key), body.text)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    return await run_in_threadpool(_detail, request, incident_id)
