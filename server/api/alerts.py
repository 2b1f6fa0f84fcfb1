"""`/api/v1/alerts`: notification channels (list, create, change, delete, send a test alert) and
the outbox (what was sent where, what is still to go, what failed). `server.channels` does the
work, as for the `/alerts` page (`server.ui.alerts`); `server.alerts` sends.

A channel's `secret` is never shown again (`has_secret`); nor is a Slack webhook's secret path or
a password in a URL (email)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from logsense.server import alerts, channels
from logsense.server.api.deps import MAX_ID, RowId, SessionDep
from logsense.server.channels import ChannelIn, ChannelOut, ChannelPatch

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])


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


def _answer(action: Any, *args: Any) -> Any:
    """A `server.channels` function's answer; what it refuses as the API's 404, 409, 422 or 502."""
    try:
        return action(*args)
    except channels.NoChannel as exc:
        raise HTTPException(404, str(exc)) from None
    except channels.ChannelExists as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except ValidationError as exc:
        raise RequestValidationError([{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]}
                                      for e in exc.errors(include_url=False)]) from None  # no input: secrets
    except alerts.DeliveryError as exc:
        raise HTTPException(502, str(exc)) from None


@router.get("/channels", response_model=list[ChannelOut])
def list_channels(session: SessionDep) -> list[ChannelOut]:
    """Every channel, by id; secrets are never shown (`has_secret`)."""
    return channels.listed(session)


@router.post("/channels", status_code=status.HTTP_201_CREATED, response_model=ChannelOut)
def create_channel(body: ChannelIn, request: Request) -> ChannelOut:
    """Add a channel (409 if the name is taken); new open anomalies that match its rules queue alerts to it."""
    return _answer(channels.create, request.app.state.services, body)


@router.patch("/channels/{channel_id}", response_model=ChannelOut)
def patch_channel(channel_id: RowId, body: ChannelPatch, request: Request) -> ChannelOut:
    """Change a channel: enable or disable it, its rules, url or secret (absent fields are kept;
    the result is checked as a new channel is: 422 saying why, 409 if the new name is taken).
    Alerts already queued keep their place; new anomalies follow the new rules."""
    return _answer(channels.update, request.app.state.services, channel_id, body)


@router.delete("/channels/{channel_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_channel(channel_id: RowId, request: Request) -> Response:
    """Remove a channel and its outbox rows (undelivered alerts to it are dropped)."""
    _answer(channels.delete, request.app.state.services, channel_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/channels/{channel_id}/test", response_model=TestOut,
             responses={502: {"description": "the channel did not answer 2xx: `detail` says what it did"}})
async def test_channel(channel_id: RowId, request: Request) -> TestOut:
    """Send a test alert to the channel now (not through the outbox), in its usual shape (a
    digest channel: a digest of one): 200 with the receiver's status (email: 250), or 502 saying
    what went wrong. Alertmanager gets an alert named `LogSenseTest` that ends after 5 minutes."""
    code = await run_in_threadpool(_answer, channels.send_test, request.app.state.services, channel_id)
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
    rows = channels.outbox(session, state, channel, anomaly_id, before_id, limit)
    return [OutboxOut(id=o.id, channel_id=o.channel_id, channel=name, anomaly_id=o.anomaly_id, event=o.event,
                      state=o.state, attempts=o.attempts, next_attempt_at=o.next_attempt_at, last_error=o.last_error,
                      created_at=o.created_at, sent_at=o.sent_at, payload=o.payload or {}) for o, name in rows]
