"""Shared FastAPI dependencies: the database session, the settings, the caller's API key, a stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader
from sqlmodel import Session, select

from logsense.server.auth import HEADER, verify_api_key
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
        return verify_api_key(session, x_api_key)  # a key sent in dev mode is still checked


CurrentKey = Annotated[ApiKey | None, Depends(current_key)]


def actor_name(key: ApiKey | None) -> str:
    """Who did it, for feedback and audit rows."""
    return f"key:{key.name}" if key is not None else "dev"


def get_stream(name: str, session: SessionDep) -> Stream:
    """The stream named in the path (`{name}`), or a 404 that names it."""
    stream = session.exec(select(Stream).where(Stream.name == name)).first()
    if stream is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no stream named {name!r}")
    return stream


StreamDep = Annotated[Stream, Depends(get_stream)]
