"""`/api/v1/alerts`: notification channels (list, create, delete, send a test alert) and the
outbox (what was sent where, what is still to go, what failed). `server.alerts` does the work.

A channel's `secret` is never shown again (`has_secret`); nor is a Slack webhook's secret path or
a password in a URL."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from logsense.server import alerts
from logsense.server.api.deps import MAX_ID, RowId, SessionDep
from logsense.server.tables import AlertChannel, AlertOutbox

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME_PATTERN, description="Letters, digits, `_`, `.`, `-`; 1 to 64 characters.")
    kind: Literal["webhook", "slack", "alertmanager"]
    url: str = Field(max_length=2000, description="webhook, slack: the URL posted to; alertmanager: its base URL "
                                                  "(alerts go to {url}/api/v2/alerts)")
    secret: str | None = Field(None, min_length=16, max_length=255,
                               description="webhook only, required there: the HMAC-SHA256 key of X-LogSense-Signature")
    streams: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, min_length=1, description="stream names this channel wants; null: every stream")
    min_severity: Literal["watch", "danger"] = "watch"
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http:// or https:// URL with a host")
        return value

    @model_validator(mode="after")
    def _secret(self) -> "ChannelIn":
        if self.kind == "webhook" and not self.secret:
            raise ValueError("a webhook channel needs a secret (16 to 255 characters): it signs every body")
        if self.kind != "webhook" and self.secret:
            raise ValueError(f"a {self.kind} channel takes no secret (only webhooks are signed)")
        return self


class ChannelOut(BaseModel):
    id: int
    name: str
    kind: str
    url: str  # without a password; a Slack webhook's secret path hidden
    has_secret: bool
    streams: list[str] | None
    min_severity: str
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
                      has_secret=bool(c.secret), streams=c.streams, min_severity=c.min_severity, enabled=c.enabled,
                      created_at=c.created_at)


@router.get("/channels", response_model=list[ChannelOut])
def list_channels(session: SessionDep) -> list[ChannelOut]:
    """Every channel, by id; secrets are never shown (`has_secret`)."""
    return [_out(c) for c in session.execute(select(AlertChannel).order_by(AlertChannel.id)).scalars().all()]


@router.post("/channels", status_code=status.HTTP_201_CREATED, response_model=ChannelOut)
def create_channel(body: ChannelIn, request: Request) -> ChannelOut:
    """Add a channel (409 if the name is taken); new open anomalies that match its rules queue alerts to it."""
    from logsense.server import store

    try:
        with store.write_session(request.app.state.engine) as session:
            row = AlertChannel(**body.model_dump())
            session.add(row)
            session.flush()
            out = _out(row)
    except IntegrityError:
        raise HTTPException(status.HTTP_409_CONFLICT, f"a channel named {body.name!r} already exists") from None
    alerts.invalidate(request.app)
    return out


@router.delete("/channels/{channel_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_channel(channel_id: RowId, request: Request) -> Response:
    """Remove a channel and its outbox rows (undelivered alerts to it are dropped)."""
    from logsense.server import store

    with store.write_session(request.app.state.engine) as session:
        row = session.get(AlertChannel, channel_id)
        if row is None:
            raise HTTPException(404, f"no alert channel with id {channel_id}")
        session.delete(row)  # ON DELETE CASCADE: its outbox rows
    alerts.invalidate(request.app)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/channels/{channel_id}/test", response_model=TestOut,
             responses={502: {"description": "the channel did not answer 2xx: `detail` says what it did"}})
async def test_channel(channel_id: RowId, request: Request) -> TestOut:
    """Send a test alert to the channel now (not through the outbox): 200 with the receiver's
    status, or 502 saying what went wrong. Alertmanager gets an alert named `LogSenseTest` that
    ends after 5 minutes."""
    app = request.app

    def load() -> AlertChannel | None:
        with Session(app.state.engine, expire_on_commit=False) as session:
            return session.get(AlertChannel, channel_id)

    c = await run_in_threadpool(load)
    if c is None:
        raise HTTPException(404, f"no alert channel with id {channel_id}")
    alert = alerts.test_alert(app.state.settings.public_url, c.name)
    try:
        code = await run_in_threadpool(alerts.deliver, c.kind, c.url, c.secret, alert, None, alerts.HTTP_TIMEOUT)
    except alerts.DeliveryError as exc:
        raise HTTPException(502, f"channel {c.name!r}: {exc}") from None
    return TestOut(ok=True, status=code)


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
