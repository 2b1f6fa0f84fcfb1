"""Shared FastAPI dependencies: the database session, the settings, the caller's API key, a stream."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator
from fastapi.security import APIKeyHeader
from sqlmodel import Session

from logsense.server import streams
from logsense.server.auth import HEADER, authorize, authorize_scope, key_from_headers, unauthorized, verify_api_key
from logsense.server.settings import Settings
from logsense.server.tables import ApiKey, Stream


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, on the app's engine; closed (and rolled back if uncommitted) after."""
    with Session(request.app.state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

MAX_ID = 2**63 - 1  # the largest integer SQLite and PostgreSQL's BIGINT store: a larger id is a 422, not a 500
RowId = Annotated[int, Path(ge=0, le=MAX_ID)]
AfterId = Annotated[int, Query(ge=0, le=MAX_ID, description="only ids above this (paging)")]


def unprocessable(message: str, *loc: str | int) -> RequestValidationError:
    """A 422 for what only the route can check, in the shape the spec gives every 422
    (HTTPValidationError: `detail` a list of {loc, msg, type}) and with the app's `message`:
    `raise unprocessable("send a status, an assignee, or both", "body")`."""
    return RequestValidationError([{"loc": loc or ("body",), "msg": message, "type": "value_error"}])


def utc_time(value: datetime) -> datetime:
    """A date and time the database can store and compare: read as UTC when it has no zone, and
    refused (a 422) when UTC takes it outside years 1 to 9999."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("date and time out of range once in UTC (years 1 to 9999)") from None


UtcTime = Annotated[datetime, AfterValidator(utc_time)]


api_key_header = APIKeyHeader(
    name=HEADER, auto_error=False, description="An API key from `logsense apikey create`."
)  # also puts the "Authorize" button on /docs


def current_key(
    request: Request,
    settings: SettingsDep,
    x_api_key: Annotated[str | None, Depends(api_key_header)] = None,
) -> ApiKey | None:
    """The caller's key row (loaded, detached); None in dev mode without a key. Every /api route
    depends on this. Its own short session, not `SessionDep`: a generator dependency costs two
    more thread hops per request, and ingest, which needs no session of its own, paid them."""
    if settings.dev_mode and not x_api_key:
        return None
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        key = verify_api_key(session, x_api_key)  # a key sent in dev mode is still checked
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    authorize(key, request.method, route, request.path_params.get("name"))
    return key


CurrentKey = Annotated[ApiKey | None, Depends(current_key)]


def push_key(request: Request, settings: SettingsDep) -> ApiKey | None:
    """The key of a log shipper's push (`/loki/api/v1/push`, `/v1/logs`): `X-API-Key`,
    `Authorization: Bearer KEY` or the basic-auth password; its scope checked here, its stream
    limit per stream the body names (`auth.authorize_stream`). None in dev mode without a key."""
    supplied = key_from_headers(request.headers)
    if settings.dev_mode and not supplied:
        return None
    if not supplied:
        raise unauthorized(f"missing API key: send it as {HEADER}, Authorization: Bearer, or the basic-auth password")
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        key = verify_api_key(session, supplied)
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    authorize_scope(key, request.method, route)
    return key


PushKey = Annotated[ApiKey | None, Depends(push_key)]


def actor_name(key: ApiKey | None) -> str:
    """Who did it, for feedback and audit rows."""
    return f"key:{key.name}" if key is not None else "dev"


def get_stream(name: str, session: SessionDep) -> Stream:
    """The stream named in the path (`{name}`), or a 404 that names it."""
    stream = streams.by_name(session, name)
    if stream is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no stream named {name!r}")
    return stream


StreamDep = Annotated[Stream, Depends(get_stream)]
