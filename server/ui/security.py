"""The UI's session cookie, its signing key, and the security headers on every response.

- The signing key is `LOGSENSE_SECRET_KEY`, or a random one generated on first use and kept in
  `{data_dir}/secret_key` (mode 0600; created without ever overwriting one that exists), so
  sessions survive a restart and no secret lives in the repository.
- The session is Starlette's signed cookie (`logsense_session`, HttpOnly, SameSite=Lax, Secure
  with `secure_cookies`), made lazily on the first UI request: `create_app` touches no disk.
  It holds a random session token and the CSRF token. The token names a server-side session
  (`server.users`, table `user_sessions`): logout, a new password or deleting the user revoke
  it, so a copied cookie stops working then, not only when it expires (`SESSION_MAX_AGE`).
- Headers: a Content-Security-Policy allowing only this origin, X-Frame-Options DENY,
  nosniff, a same-origin Referrer-Policy; UI pages are not cached (`no-store`).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logsense.server.settings import Settings
from logsense.server.ui.core import is_ui_path
from logsense.server.users import SESSION_MAX_AGE  # the cookie lasts as long as its session

log = logging.getLogger("logsense.ui")

SESSION_COOKIE = "logsense_session"
SECRET_FILE = "secret_key"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
)
# /docs (vendored Swagger UI) starts itself with an inline script, which this CSP would block.
NO_CSP_PATHS = ("/docs",)

_secret_lock = threading.Lock()


def secret_key(settings: Settings) -> str:
    """The session signing key: the setting, else `{data_dir}/secret_key` (made once, mode 0600)."""
    configured = settings.secret_key.get_secret_value()
    if configured:
        return configured
    path = Path(settings.data_dir) / SECRET_FILE
    with _secret_lock:
        if not path.exists():
            if not path.parent.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.parent.chmod(0o700)  # what this makes is the owner's alone (whatever the umask)
            tmp = path.with_name(f".{SECRET_FILE}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(48) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                try:
                    os.link(tmp, path)  # never replaces a key another process just wrote
                except FileExistsError:
                    pass
            finally:
                tmp.unlink(missing_ok=True)
            log.info("generated the session signing key in %s", path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s is readable by others (mode %o); tightening to 0600", path, mode)
            path.chmod(0o600)
        key = path.read_text().strip()
    if len(key) < 32:
        raise RuntimeError(f"{path} holds no usable key (under 32 characters): delete it to make a new one")
    return key


class UiSessionMiddleware:
    """Starlette's SessionMiddleware on UI paths only, built on the first request (reads the key)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._inner: SessionMiddleware | None = None
        self._lock = threading.Lock()

    def _session_app(self) -> SessionMiddleware:
        with self._lock:
            if self._inner is None:
                self._inner = SessionMiddleware(
                    self.app, secret_key=secret_key(self.settings), session_cookie=SESSION_COOKIE,
                    max_age=SESSION_MAX_AGE, same_site="lax", https_only=self.settings.secure_cookies,
                )
            return self._inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_ui_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        await self._session_app()(scope, receive, send)


class SecurityHeadersMiddleware:
    """Security headers on every HTTP response (CSP everywhere but the CDN-based API docs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
                if not path.startswith(NO_CSP_PATHS):
                    headers.setdefault("Content-Security-Policy", CSP)
                if is_ui_path(path) and headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
