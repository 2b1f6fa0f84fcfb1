"""API keys: `ls_<43 urlsafe chars>`, shown once at creation; only their sha256 is stored.

A request names its key in the `X-API-Key` header. The key's first characters (`prefix`) pick
the candidate rows through an index; the hashes are then compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from fastapi import HTTPException, status
from sqlmodel import Session, select

from logsense.server.tables import ApiKey, utcnow

KEY_PREFIX = "ls_"
PREFIX_LEN = len(KEY_PREFIX) + 8  # "ls_" + 8 random chars: enough to tell keys apart in a list
HEADER = "X-API-Key"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most this often per key


def hash_key(key: str) -> str:
    """sha256 hex of the full key: what the database keeps."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(session: Session, name: str) -> tuple[str, ApiKey]:
    """A new key and its stored row; the caller shows the key once, it cannot be recovered."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=key[:PREFIX_LEN], key_hash=hash_key(key))
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
