"""Web UI users: usernames with argon2id password hashes (argon2-cffi), never the passwords,
a role each, and their login sessions.

`logsense user create NAME` makes the first one; the UI's login checks them with
`authenticate`, which spends the same argon2 work on an unknown name as on a wrong password.

Roles (`ROLES`, each may do what the ones before it may): `viewer` reads every page;
`operator` also answers anomalies (verdicts, mutes), the training review and starts trainings;
`admin` also creates streams, changes their settings and rolls models back. The first user is
an admin, later ones operators unless named otherwise.

Sessions: a login stores a `UserSession` row whose id is the sha256 of a random token; the
signed cookie carries the token. Each UI request looks the row up (one primary-key lookup,
joined to its user); logout revokes it, a new password or deleting the user revokes them all,
and one older than `SESSION_MAX_AGE` is refused.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError
from sqlalchemy import delete, update
from sqlmodel import Session, select

from logsense.server.tables import User, UserSession, utcnow

USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
ROLES = ("viewer", "operator", "admin")  # in order: each may do what the ones before it may
SESSION_MAX_AGE = 12 * 3600  # seconds; a login lasts a working day
LAST_SEEN_RESOLUTION = timedelta(minutes=1)  # write a session's last_seen_at at most this often

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_DUMMY_HASH = _hasher.hash("not a real password")


def check_username(username: str) -> str:
    if not re.match(USERNAME_PATTERN, username or ""):
        raise ValueError("a username is 1 to 64 letters, digits or `_ . @ -`")
    return username


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"a role is one of {', '.join(ROLES)}, not {role!r}")
    return role


def role_allows(role: str | None, needed: str) -> bool:
    """Whether `role` may do what `needed` may (an unknown role may do nothing)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(session: Session, username: str, password: str, role: str | None = None) -> User:
    """A new user; `role` None: admin when it is the first user, else operator.
    ValueError for a bad name, password or role, or a name already taken."""
    check_username(username)
    check_password(password)
    if role is None:
        role = "admin" if count_users(session) == 0 else "operator"
    check_role(role)
    if session.exec(select(User.id).where(User.username == username)).first() is not None:
        raise ValueError(f"a user named {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ValueError(f"a user named {username!r} already exists") from None
    session.refresh(user)
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user when the password is right, else None (same cost for unknown names)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return None
    user = session.exec(select(User).where(User.username == username)).first()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):  # parameters raised since it was hashed
        user.password_hash = hash_password(password)
        session.add(user)
        session.commit()
        session.refresh(user)
    return user


def count_users(session: Session) -> int:
    return len(session.exec(select(User.id)).all())


def get_user(session: Session, username: str) -> User | None:
    return session.exec(select(User).where(User.username == username)).first()


def _existing(session: Session, username: str) -> User:
    user = get_user(session, username)
    if user is None:
        raise ValueError(f"there is no user named {username!r}")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(User.id)).all())


def set_password(session: Session, username: str, password: str) -> User:
    """A new password; every session of the user ends. ValueError: no such user, or a bad password."""
    check_password(password)
    user = _existing(session, username)
    user.password_hash = hash_password(password)
    session.add(user)
    session.execute(update(UserSession).where(UserSession.user_id == user.id).values(revoked=True))
    session.commit()
    session.refresh(user)
    return user


def set_role(session: Session, username: str, role: str) -> User:
    """A new role, in effect from the user's next request. ValueError: no such user or role."""
    check_role(role)
    user = _existing(session, username)
    user.role = role
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def delete_user(session: Session, username: str) -> None:
    """The user and every session of theirs; ValueError when there is no such user."""
    user = _existing(session, username)
    session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    session.delete(user)
    session.commit()


def count_admins(session: Session) -> int:
    return len(session.exec(select(User.id).where(User.role == "admin")).all())


# --------------------------------------------------------------------------- sessions


def _session_id(token: str) -> str:
    """What the table keeps of a session token: its sha256 (a leaked table opens no session)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_session(session: Session, user: User) -> str:
    """A new login session for `user`: its token, for the signed cookie (the table keeps its hash).
    Sessions past their lifetime, anyone's, are deleted on the way."""
    now = utcnow()
    session.execute(delete(UserSession).where(UserSession.created_at < now - timedelta(seconds=SESSION_MAX_AGE)))
    token = secrets.token_urlsafe(32)
    session.add(UserSession(id=_session_id(token), user_id=user.id, created_at=now, last_seen_at=now))
    session.commit()
    return token


def session_user(session: Session, token: str | None) -> User | None:
    """The user of a live session (not revoked, not expired), else None; one primary-key lookup."""
    if not token or not isinstance(token, str) or len(token) > 256:
        return None
    row = session.exec(select(UserSession, User).join(User, User.id == UserSession.user_id)
                       .where(UserSession.id == _session_id(token))).first()
    if row is None:
        return None
    user_session, user = row
    now = utcnow()
    if user_session.revoked or now - user_session.created_at > timedelta(seconds=SESSION_MAX_AGE):
        return None
    if now - user_session.last_seen_at > LAST_SEEN_RESOLUTION:
        user_session.last_seen_at = now
        session.add(user_session)
        session.commit()
        session.refresh(user)
    return user


def end_session(session: Session, token: str | None) -> None:
    """Revoke one session (logout); the same cookie is refused from now on."""
    if token and isinstance(token, str):
        session.execute(update(UserSession).where(UserSession.id == _session_id(token)).values(revoked=True))
        session.commit()


def revoke_sessions(session: Session, user_id: int) -> int:
    """Revoke every session of a user; how many were live."""
    result = session.execute(update(UserSession).where(UserSession.user_id == user_id, UserSession.revoked.is_(False))
                             .values(revoked=True))
    session.commit()
    return result.rowcount or 0


def live_sessions(session: Session, user_id: int) -> int:
    since = utcnow() - timedelta(seconds=SESSION_MAX_AGE)
    return len(session.exec(select(UserSession.id).where(UserSession.user_id == user_id, UserSession.revoked.is_(False),
                                                         UserSession.created_at >= since)).all())
