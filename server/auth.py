"""API keys: `ls_<43 urlsafe chars>`, shown once at creation; only their sha256 is stored.

A request names its key in the `X-API-Key` header; the push front doors (`/loki/api/v1/push`,
`/v1/logs`) also take `Authorization: Bearer KEY` and the basic-auth password, as Loki clients
send secrets (`key_from_headers`). The key's first characters (`prefix`) pick the candidate rows
through an index; the hashes are then compared in constant time.

A key has scopes (`Scope`: a log shipper's key can post lines and nothing else) and may be
limited to named streams; `ROUTE_SCOPES` says what each API route needs, in one place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import timedelta
from enum import Enum

from fastapi import HTTPException, status
from sqlmodel import Session, select

from logsense.server.tables import ApiKey, utcnow

KEY_PREFIX = "ls_"
PREFIX_LEN = len(KEY_PREFIX) + 8  # "ls_" + 8 random chars: enough to tell keys apart in a list
HEADER = "X-API-Key"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most this often per key


class Scope(str, Enum):
    INGEST = "ingest"  # post lines, flush: a log shipper
    READ = "read"  # every GET
    OPERATE = "operate"  # read, feedback, the training review, start a training
    ADMIN = "admin"  # everything: streams and their settings, deletes, rollbacks


IMPLIES = {Scope.ADMIN: set(Scope), Scope.OPERATE: {Scope.OPERATE, Scope.READ}, Scope.READ: {Scope.READ},
           Scope.INGEST: {Scope.INGEST}}
ROUTE_SCOPES = {  # (method, route template) -> the scope it needs; any other GET needs READ
    ("POST", "/api/v1/streams/{name}/logs"): Scope.INGEST,
    ("POST", "/api/v1/streams/{name}/flush"): Scope.INGEST,
    ("POST", "/loki/api/v1/push"): Scope.INGEST,  # the streams come from the body: `authorize_stream` per stream
    ("POST", "/v1/logs"): Scope.INGEST,  # OTLP/HTTP logs: likewise
    ("POST", "/api/v1/anomalies/feedback"): Scope.OPERATE,
    ("POST", "/api/v1/anomalies/reopen"): Scope.OPERATE,  # undo a recent answer
    ("POST", "/api/v1/anomalies/{anomaly_id}/feedback"): Scope.OPERATE,
    ("POST", "/api/v1/streams/{name}/review/{template_id}"): Scope.OPERATE,
    ("POST", "/api/v1/streams/{name}/train"): Scope.OPERATE,
    ("POST", "/api/v1/streams"): Scope.ADMIN,
    ("PATCH", "/api/v1/streams/{name}"): Scope.ADMIN,
    ("DELETE", "/api/v1/streams/{name}"): Scope.ADMIN,
    ("POST", "/api/v1/streams/{name}/models/{version}/rollback"): Scope.ADMIN,
    ("POST", "/api/v1/streams/{name}/retention"): Scope.ADMIN,  # deletes old lines now
    ("GET", "/api/v1/incidents"): Scope.READ,
    ("GET", "/api/v1/incidents/{incident_id}"): Scope.READ,
    ("POST", "/api/v1/incidents/{incident_id}"): Scope.OPERATE,  # acknowledge, assign, resolve, reopen
    ("POST", "/api/v1/incidents/{incident_id}/notes"): Scope.OPERATE,
    ("GET", "/api/v1/alerts/channels"): Scope.READ,  # alert channels: secrets are never shown
    ("GET", "/api/v1/alerts/outbox"): Scope.READ,
    ("POST", "/api/v1/alerts/channels"): Scope.ADMIN,
    ("PATCH", "/api/v1/alerts/channels/{channel_id}"): Scope.ADMIN,
    ("DELETE", "/api/v1/alerts/channels/{channel_id}"): Scope.ADMIN,
    ("POST", "/api/v1/alerts/channels/{channel_id}/test"): Scope.ADMIN,
}


def needed_scope(method: str, route: str) -> Scope:
    """What a request to this route needs; a write no table entry names needs ADMIN."""
    if (method, route) in ROUTE_SCOPES:
        return ROUTE_SCOPES[method, route]
    return Scope.READ if method in ("GET", "HEAD", "OPTIONS") else Scope.ADMIN


def authorize(key: ApiKey, method: str, route: str, stream: str | None) -> None:
    """A 403 saying why when `key` may not call this route (on this stream)."""
    authorize_scope(key, method, route)
    authorize_stream(key, stream)


def authorize_scope(key: ApiKey, method: str, route: str) -> None:
    """A 403 saying why when `key` lacks the scope this route needs (its streams not checked: a
    route that names its streams in the body checks each with `authorize_stream`)."""
    needed = needed_scope(method, route)
    granted = set().union(*(IMPLIES[Scope(s)] for s in key.scopes or () if s in Scope._value2member_map_))
    if needed not in granted:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"API key {key.name!r} has scopes {sorted(key.scopes or [])}: {method} {route} needs {needed.value!r}")


def authorize_stream(key: ApiKey, stream: str | None) -> None:
    """A 403 saying why when `key` is limited to other streams."""
    if key.streams is not None and stream not in key.streams:
        where = f"stream {stream!r}" if stream is not None else "routes of no single stream"
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"API key {key.name!r} is limited to streams {key.streams}, not {where}")


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The API key a log shipper sent: `X-API-Key`, else `Authorization: Bearer KEY`, else the
    password of `Authorization: Basic base64(user:KEY)` (the user name is ignored; a key sent as
    the user name with an empty password is taken too). None when there is none."""
    if headers.get(HEADER):
        return headers[HEADER]
    scheme, _, credentials = (headers.get("authorization") or "").strip().partition(" ")
    credentials = credentials.strip()
    if not credentials:
        return None
    if scheme.lower() == "bearer":
        return credentials
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise unauthorized("malformed basic auth credentials: send base64(user:API_KEY)") from None
        user, _, password = decoded.partition(":")
        return password or user or None
    return None


def hash_key(key: str) -> str:
    """sha256 hex of the full key: what the database keeps."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(session: Session, name: str, scopes: list[str] | None = None,
                   streams: list[str] | None = None) -> tuple[str, ApiKey]:
    """A new key and its stored row; the caller shows the key once, it cannot be recovered.
    `scopes` default to admin; `streams` None: every stream."""
    unknown = sorted(set(scopes or ()) - set(Scope._value2member_map_))
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; known: {[s.value for s in Scope]}")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=key[:PREFIX_LEN], key_hash=hash_key(key), scopes=list(scopes or [Scope.ADMIN.value]),
                 streams=list(streams) if streams else None)
    session.add(row)
    session.commit()
    session.refresh(row)
    return key, row


def unauthorized(reason: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED, detail=reason, headers={"WWW-Authenticate": HEADER}
    )


def verify_api_key(session: Session, key: str | None) -> ApiKey:
    """The key's row, or a 401 saying why: missing, unknown, or revoked."""
    if not key:
        raise unauthorized(f"missing API key: send it in the {HEADER} header")
    digest = hash_key(key)
    candidates = session.exec(select(ApiKey).where(ApiKey.prefix == key[:PREFIX_LEN])).all()
    row = next((c for c in candidates if hmac.compare_digest(c.key_hash, digest)), None)
    if row is None:
        raise unauthorized("invalid API key")
    if row.revoked:
        raise unauthorized("API key revoked")
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.add(row)
        session.commit()
    return row


def revoke_api_key(session: Session, key_id: int) -> bool:
    """Mark a key revoked; False when there is no such key."""
    row = session.get(ApiKey, key_id)
    if row is None:
        return False
    row.revoked = True
    session.add(row)
    session.commit()
    return True
