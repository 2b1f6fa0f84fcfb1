"""Web UI operators: usernames with argon2id password hashes (argon2-cffi), never the passwords.

`logsense user create NAME` makes the first one; the UI's login checks them with
`authenticate`, which spends the same argon2 work on an unknown name as on a wrong password.
"""

from __future__ import annotations

import hashlib
import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from logsense.server.tables import User

USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

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


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_user(session: Session, username: str, password: str) -> User:
    """A new operator; ValueError for a bad name or password, or a name already taken."""
    check_username(username)
    check_password(password)
    if session.exec(select(User.id).where(User.username == username)).first() is not None:
        raise ValueError(f"a user named {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password))
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


def password_stamp(user: User) -> str:
    """A short fingerprint of the user's hash, kept in the session: a new password ends old sessions."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]
