"""`/api/v1/alerts`: notification channels (list, create, change, delete, send a test alert) and
the outbox (what was sent where, what is still to go, what failed). `server.alerts` does the work;
the `/alerts` page (`server.ui.alerts`) calls the functions here.

A channel's `secret` is never shown again (`has_secret`); nor is a Slack webhook's secret path or
a password in a URL (email)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete as sa_delete
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from logsense.server import alerts
from logsense.server.api.deps import MAX_ID, RowId, SessionDep
from logsense.server.tables import AlertChannel, AlertOutbox

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
Kind = Literal["webhook", "slack", "alertmanager", "email"]
Streams = list[Annotated[str, Field(min_length=1, max_length=64)]]
URL_HELP = ("webhook, slack: the URL posted to; alertmanager: its base URL (alerts go to {url}/api/v2/alerts); "
            "email: smtp://[user:password@]host[:port]?from=..&to=a@x,b@y (smtps:// for TLS from the start, "
            "&starttls=true to upgrade)")
DIGEST_HELP = ("null: send each alert at once; else hold firing alerts (and resolves) and send one message per "
               "interval")


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN, description="Letters, digits, `_`, `.`, `-`; 1 to 64 characters.")
    kind: Kind
    url: str = Field(max_length=2000, description=URL_HELP)
    secret: str | None = Field(None, min_length=16, max_length=255,
                               description="webhook only, required there: the HMAC-SHA256 key of X-LogSense-Signature")
    streams: Streams | None = Field(None, min_length=1,
                                    description="stream names this channel wants; null: every stream")
    min_severity: Literal["watch", "danger"] = "watch"
    only_new_incidents: bool = Field(False, description="only an anomaly that opens a new incident on its stream")
    digest_seconds: int | None = Field(None, ge=1, le=86400, description=DIGEST_HELP)
    enabled: bool = True

    @model_validator(mode="after")
    def _url(self) -> "ChannelIn":
        alerts.check_url(self.kind, self.url)
        return self

    @model_validator(mode="after")
    def _secret(self) -> "ChannelIn":
        if self.kind == "webhook" and not self.secret:
            raise ValueError("a webhook channel needs a secret (16 to 255 characters): it signs every body")
        if self.kind != "webhook" and self.secret:
            raise ValueError(f"a {self.kind} channel takes no secret (only webhooks are signed)")
        return self


class ChannelPatch(BaseModel):
    """What to change; the channel it makes is checked as a whole, as a new one is."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, pattern=NAME_PATTERN)
    kind: Kind | None = None
    url: str | None = Field(None, max_length=2000, description=URL_HELP)
    secret: str | None = Field(None, min_length=16, max_length=255, description="absent: kept; null: removed")
    streams: Streams | None = Field(None, min_length=1, description="null: every stream")
    min_severity: Literal["watch", "danger"] | None = None
    only_new_incidents: bool | None = None
    digest_seconds: int | None = Field(None, ge=1, le=86400, description=DIGEST_HELP)
    enabled: bool | None = None


class ChannelOut(BaseModel):
    id: int
    name: str
    kind: str
    url: str  # without a password; a Slack webhook's secret path hidden
    has_secret: bool
    streams: list[str] | None
    min_severity: str
    only_new_incidents: bool
    digest_seconds: int | None
    enabled: bool
    created_at: datetime


class TestOut(BaseModel):
    ok: bool
    status: int | None


class OutboxOut(BaseModel):
    id: int
    channel_id: int
    channel: str
    anomaly_id: int | None
    event: str  # firing / resolved
    state: str  # pending / sending / sent / failed
    attempts: int
    next_attempt_at: datetime  # pending: the next try; sending: when the claim expires
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    payload: dict  # the alert (a channel's body is made from it)


def _out(c: AlertChannel) -> ChannelOut:
    return ChannelOut(id=c.id, name=c.name, kind=c.kind, url=alerts.shown_url(c.kind, c.url),
                      has_secret=bool(c.secret), streams=c.streams, min_severity=c.min_severity,
                      only_new_incidents=bool(c.only_new_incidents), digest_seconds=c.digest_seconds,
                      enabled=c.enabled, created_at=c.created_at)


def channels(session: Session) -> list[ChannelOut]:
    return [_out(c) for c in session.execute(select(AlertChannel).order_by(AlertChannel.id)).scalars().all()]


@router.get("/channels", response_model=list[ChannelOut])
def list_channels(session: SessionDep) -> list[ChannelOut]:
    """Every channel, by id; secrets are never shown (`has_secret`)."""
    return channels(session)


@router.post("/channels", status_code=status.HTTP_201_CREATED, response_model=ChannelOut)
def create_channel(body: ChannelIn, request: Request) -> ChannelOut:
    """Add a channel (409 if the name is taken); new open anomalies that match its rules queue alerts to it."""
    return create(request.app, body)


def create(app: Any, body: ChannelIn) -> ChannelOut:
    """Store a new channel; HTTPException 409 when the name is taken."""
    from logsense.server import store

    try:
        with store.write_session(app.state.engine) as session:
            row = AlertChannel(**body.model_dump())
            session.add(row)
            session.flush()
            out = _out(row)
    except IntegrityError:
        raise HTTPException(status.HTTP_409_CONFLICT, f"a channel named {body.name!r} already exists") from None
    alerts.invalidate(app.state.services)
    return out


@router.patch("/channels/{channel_id}", response_model=ChannelOut)
def patch_channel(channel_id: RowId, body: ChannelPatch, request: Request) -> ChannelOut:
    """Change a channel: enable or disable it, its rules, url or secret (absent fields are kept;
    the result is checked as a new channel is: 422 saying why, 409 if the new name is taken).
    Alerts already queued keep their place; new anomalies follow the new rules."""
    return update(request.app, channel_id, body)


def update(app: Any, channel_id: int, body: ChannelPatch) -> ChannelOut:
    """Apply a change to a stored channel; HTTPException 404/409, RequestValidationError (422)."""
    from logsense.server import store

    changes = body.model_dump(exclude_unset=True)
    try:
        with store.write_session(app.state.engine) as session:
            row = session.get(AlertChannel, channel_id)
            if row is None:
                raise HTTPException(404, f"no alert channel with id {channel_id}")
            current = {name: getattr(row, name) for name in ChannelIn.model_fields}
            try:
                merged = ChannelIn.model_validate({**current, **changes})
            except ValidationError as exc:
                raise RequestValidationError([{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]}
                                              for e in exc.errors(include_url=False)]) from None  # no input: secrets
            for name, value in merged.model_dump().items():
                setattr(row, name, value)
            session.add(row)
            session.flush()
            out = _out(row)
    except IntegrityError:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"a channel named {changes.get('name')!r} already exists") from None
    alerts.invalidate(app.state.services)
    return out


@router.delete("/channels/{channel_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_channel(channel_id: RowId, request: Request) -> Response:
    """Remove a channel and its outbox rows (undelivered alerts to it are dropped)."""
    delete(request.app, channel_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def delete(app: Any, channel_id: int) -> str:
    """Remove a stored channel and its outbox rows; its name, or HTTPException 404."""
    from logsense.server import store

    with store.write_session(app.state.engine) as session:
        row = session.get(AlertChannel, channel_id)
        if row is None:
            raise HTTPException(404, f"no alert channel with id {channel_id}")
        name = row.name
        session.execute(sa_delete(AlertOutbox).where(AlertOutbox.channel_id == channel_id))  # as ON DELETE CASCADE
        session.delete(row)
    alerts.invalidate(app.state.services)
    return name


@router.post("/channels/{channel_id}/test", response_model=TestOut,
             responses={502: {"description": "the channel did not answer 2xx: `detail` says what it did"}})
async def test_channel(channel_id: RowId, request: Request) -> TestOut:
    """Send a test alert to the channel now (not through the outbox), in its usual shape (a
    digest channel: a digest of one): 200 with the receiver's status (email: 250), or 502 saying
    what went wrong. Alertmanager gets an alert named `LogSenseTest` that ends after 5 minutes."""
    return TestOut(ok=True, status=await run_in_threadpool(send_test, request.app, channel_id))


def send_test(app: Any, channel_id: int) -> int:
    """The receiver's status for a test alert; HTTPException 404, or 502 saying what went wrong."""
    with Session(app.state.engine, expire_on_commit=False) as session:
        c = session.get(AlertChannel, channel_id)
    if c is None:
        raise HTTPException(404, f"no alert channel with id {channel_id}")
    try:
        return alerts.send_test(c, app.state.settings.public_url)
    except alerts.DeliveryError as exc:
        raise HTTPException(502, f"channel {c.name!r}: {exc}") from None


@router.get("/outbox", response_model=list[OutboxOut])
def list_outbox(
    session: SessionDep,
    state: Annotated[Literal["pending", "sending", "sent", "failed", "any"], Query()] = "any",
    channel: Annotated[str | None, Query(description="channel name")] = None,
    anomaly_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    before_id: Annotated[int | None, Query(ge=0, le=MAX_ID, description="only ids below this (paging)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OutboxOut]:
    """Alerts queued and sent, newest first, with their delivery state (`pending`: waiting for its
    turn or its next try after `last_error`; `sending`; `sent`; `failed`: gave up after 10 tries)."""
    q = select(AlertOutbox, AlertChannel.name).join(AlertChannel, AlertChannel.id == AlertOutbox.channel_id)
    if state != "any":
        q = q.where(AlertOutbox.state == state)
    if channel is not None:
        q = q.where(AlertChannel.name == channel)
    if anomaly_id is not None:
        q = q.where(AlertOutbox.anomaly_id == anomaly_id)
    if before_id is not None:
        q = q.where(AlertOutbox.id < before_id)
    rows = session.execute(q.order_by(AlertOutbox.id.desc()).limit(limit)).all()
    return [OutboxOut(id=o.id, channel_id=o.channel_id, channel=name, anomaly_id=o.anomaly_id, event=o.event,
                      state=o.state, attempts=o.attempts, next_attempt_at=o.next_attempt_at, last_error=o.last_error,
                      created_at=o.created_at, sent_at=o.sent_at, payload=o.payload or {}) for o, name in rows]
