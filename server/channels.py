"""Alert channels as operators manage them: list, add, change, remove, send a test alert; and what
each one's outbox holds. `/api/v1/alerts` and the `/alerts` page both call these, so a taken
name or a refused channel reads the same in both; `server.alerts` queues and sends.

A channel's `secret` is never shown again (`has_secret`); nor is a Slack webhook's secret path or
a password in a URL (email).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import delete as sa_delete
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from logsense.server import alerts, store
from logsense.server.services import Services
from logsense.server.tables import AlertChannel, AlertOutbox

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


class NoChannel(LookupError):
    def __init__(self, channel_id: int):
        super().__init__(f"no alert channel with id {channel_id}")


class ChannelExists(Exception):
    """The name is taken (the API's 409)."""

    def __init__(self, name: Any):
        super().__init__(f"a channel named {name!r} already exists")


def shown(c: AlertChannel) -> ChannelOut:
    return ChannelOut(id=c.id, name=c.name, kind=c.kind, url=alerts.shown_url(c.kind, c.url),
                      has_secret=bool(c.secret), streams=c.streams, min_severity=c.min_severity,
                      only_new_incidents=bool(c.only_new_incidents), digest_seconds=c.digest_seconds,
                      enabled=c.enabled, created_at=c.created_at)


def listed(session: Session) -> list[ChannelOut]:
    """Every channel, by id, as the API shows it."""
    return [shown(c) for c in session.execute(select(AlertChannel).order_by(AlertChannel.id)).scalars().all()]


def create(services: Services, body: ChannelIn) -> ChannelOut:
    """Store a new channel; ChannelExists when the name is taken."""
    try:
        with store.write_session(services.engine) as session:
            row = AlertChannel(**body.model_dump())
            session.add(row)
            session.flush()
            out = shown(row)
    except IntegrityError:
        raise ChannelExists(body.name) from None
    alerts.invalidate(services)
    return out


def update(services: Services, channel_id: int, body: ChannelPatch) -> ChannelOut:
    """Apply a change to a stored channel: NoChannel, ChannelExists, or pydantic's ValidationError
    when the channel it makes is refused."""
    changes = body.model_dump(exclude_unset=True)
    try:
        with store.write_session(services.engine) as session:
            row = session.get(AlertChannel, channel_id)
            if row is None:
                raise NoChannel(channel_id)
            current = {name: getattr(row, name) for name in ChannelIn.model_fields}
            merged = ChannelIn.model_validate({**current, **changes})
            for name, value in merged.model_dump().items():
                setattr(row, name, value)
            session.add(row)
            session.flush()
            out = shown(row)
    except IntegrityError:
        raise ChannelExists(changes.get("name")) from None
    alerts.invalidate(services)
    return out


def delete(services: Services, channel_id: int) -> str:
    """Remove a stored channel and its outbox rows (undelivered alerts to it are dropped); its
    name, or NoChannel."""
    with store.write_session(services.engine) as session:
        row = session.get(AlertChannel, channel_id)
        if row is None:
            raise NoChannel(channel_id)
        name = row.name
        session.execute(sa_delete(AlertOutbox).where(AlertOutbox.channel_id == channel_id))  # as ON DELETE CASCADE
        session.delete(row)
    alerts.invalidate(services)
    return name


def send_test(services: Services, channel_id: int) -> int:
    """The receiver's status for a test alert sent now; NoChannel, or `alerts.DeliveryError`
    naming the channel and what went wrong."""
    with Session(services.engine, expire_on_commit=False) as session:
        c = session.get(AlertChannel, channel_id)
    if c is None:
        raise NoChannel(channel_id)
    try:
        return alerts.send_test(c, services.settings.public_url)
    except alerts.DeliveryError as exc:
        raise alerts.DeliveryError(f"channel {c.name!r}: {exc}", exc.status) from None


def outbox(session: Session, state: str = "any", channel: str | None = None, anomaly_id: int | None = None,
           before_id: int | None = None, limit: int = 100) -> list[tuple[AlertOutbox, str]]:
    """Alerts queued and sent, newest first, each with its channel's name."""
    q = select(AlertOutbox, AlertChannel.name).join(AlertChannel, AlertChannel.id == AlertOutbox.channel_id)
    if state != "any":
        q = q.where(AlertOutbox.state == state)
    if channel is not None:
        q = q.where(AlertChannel.name == channel)
    if anomaly_id is not None:
        q = q.where(AlertOutbox.anomaly_id == anomaly_id)
    if before_id is not None:
        q = q.where(AlertOutbox.id < before_id)
    return [(o, name) for o, name in session.execute(q.order_by(AlertOutbox.id.desc()).limit(limit)).all()]


def outbox_summary(session: Session) -> tuple[dict[int, dict[str, int]], dict[int, str]]:
    """Per channel id: its outbox rows counted by state, and the latest error of one still to go
    or given up on."""
    o = AlertOutbox
    counts: dict[int, dict[str, int]] = {}
    for cid, state, n in session.execute(select(o.channel_id, o.state, func.count()).group_by(o.channel_id, o.state)):
        counts.setdefault(cid, {})[state] = n
    latest = select(func.max(o.id)).where(o.last_error.is_not(None), o.state.in_(("pending", "failed"))) \
        .group_by(o.channel_id)
    errors = dict(session.execute(select(o.channel_id, o.last_error).where(o.id.in_(latest))).all())
    return counts, errors
