"""What every UI page shares: templates, full page or partial, the operator, CSRF, errors.

- `render(request, "x/list.html", ctx, partial="x/table.html")`: the whole page on a normal
  request, only `partial` (default: the page's `content` block) on an `HX-Request` (fief-style).
  A history-restore request (`HX-History-Restore-Request`) always gets the whole page.
- `OperatorDep`: the logged-in user; without one, a redirect to `/login` (HTMX: `HX-Redirect`).
  The session cookie names a server-side session (`server.users.session_user`: one lookup per
  request), so logout and a new password end it. In dev mode everyone is admin "dev" and every
  page says so.
- `OperateDep`, `AdminDep` (`require_role(role)`): the user, or a 403 page naming the role the
  action needs (`server.users.ROLES`: viewer < operator < admin). Every mutating UI route takes
  the one its action needs; templates ask `can("operator")` to hide buttons a user cannot use.
- `csrf_protect`: every UI POST carries the session's token, in the `csrf_token` form field or
  the `X-CSRF-Token` header (`hx-headers` on `<body>`); else 403 with a message.
- `UiError(status, message)`: a 4xx page (HTMX: the message in `#flash`), never a 500.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from sqlmodel import Session

from logsense import web
from logsense.server import reports, streams
from logsense.server.tables import Stream

WEB_DIR = Path(web.__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
KIND_WORDS = {"session": "session", "count": "window", "time": "time window"}  # Window.kind in words

# Paths that are not UI pages (API, health, docs, static): the UI's error pages and session stay out.
NON_UI_PREFIXES = ("/api/", "/loki/", "/v1/logs", "/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/static/")


def is_ui_path(path: str) -> bool:
    return not path.startswith(NON_UI_PREFIXES)


class UiError(Exception):
    """A 4xx answer with a message for the operator."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def stream_named(request: Request, name: str) -> Stream:
    """The stream a page's URL names, or UiError(404) that says so."""
    with Session(request.app.state.engine) as db:
        stream = streams.by_name(db, name)
    if stream is None:
        raise UiError(404, f"There is no stream named {name[:64]!r}.")
    return stream


class LoginRequired(Exception):
    def __init__(self, next_url: str):
        super().__init__("login required")
        self.next_url = next_url


@dataclass(frozen=True)
class Operator:
    name: str
    user_id: int | None
    dev: bool = False
    role: str = "admin"

    @property
    def actor(self) -> str:
        """Who did it, in feedback rows (API keys are `key:<name>`)."""
        return "dev" if self.dev else f"user:{self.name}"

    def can(self, role: str) -> bool:
        """Whether this user's role includes `role` (viewer < operator < admin)."""
        from logsense.server.users import role_allows

        return role_allows(self.role, role)


# --------------------------------------------------------------------------- templates


def _fmt_time(value: datetime | float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(float(value), timezone.utc)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime(fmt)


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="seconds")


def _ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    now = now or datetime.now(timezone.utc)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    s = (now - value).total_seconds()
    if s < 0:
        return "just now" if s > -5 else "in the future"
    for limit, unit, div in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if s < limit:
            return f"{int(s // div)} {unit} ago" if s >= 5 or unit != "s" else "just now"
    return f"{int(s // 86400)} d ago"


def _span(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _qs(params: dict) -> str:
    return urlencode({k: v for k, v in params.items() if v not in (None, "", False)})


def make_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(["html", "svg"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(time=_fmt_time, iso=_iso, ago=_ago, span=_span, num=_num, qs=_qs, urlquote=quote)
    env.globals["kind_words"] = KIND_WORDS
    return env


env = make_env()


# --------------------------------------------------------------------------- sessions and CSRF


def _session(request: Request) -> dict | None:
    return request.session if "session" in request.scope else None


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made on first use; the session cookie carries it)."""
    session = _session(request)
    if session is None:
        return ""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


async def csrf_protect(request: Request) -> None:
    """403 unless the request carries the session's CSRF token (header or form field)."""
    session = _session(request)
    expected = session.get("csrf") if session is not None else None
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            sent = (await request.form()).get(CSRF_FIELD)
    if not expected:
        raise UiError(403, "CSRF check failed: your session has no token (cookies blocked or expired). "
                           "Reload the page and try again.")
    if not sent:
        raise UiError(403, "CSRF check failed: the form carried no CSRF token. Reload the page and try again.")
    if not hmac.compare_digest(str(sent), str(expected)):
        raise UiError(403, "CSRF check failed: the CSRF token is wrong or stale. Reload the page and try again.")


CsrfDep = Depends(csrf_protect)


# --------------------------------------------------------------------------- the operator


def current_operator(request: Request) -> Operator:
    """The logged-in user (dev mode: admin "dev"); LoginRequired otherwise."""
    settings = request.app.state.settings
    if settings.dev_mode:
        op = Operator("dev", None, dev=True, role="admin")
    else:
        from logsense.server.users import session_user

        session = _session(request)
        token = session.get("sid") if session is not None else None
        op = None
        if token is not None:
            with Session(request.app.state.engine) as db:
                user = session_user(db, token)
                if user is not None:
                    op = Operator(user.username, user.id, role=user.role)
            if op is None:  # revoked, expired, or its user deleted: the cookie is worth nothing now
                session.pop("sid", None)
        if op is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(target)
    request.state.operator = op
    return op


OperatorDep = Annotated[Operator, Depends(current_operator)]

ROLE_WORDS = {"viewer": "read the pages", "operator": "answer anomalies, the training review and start trainings",
              "admin": "create streams, change their settings and roll models back"}


def require_role(role: str) -> Any:
    """A dependency: the logged-in user when their role includes `role`, else a 403 saying so."""

    def check(op: OperatorDep) -> Operator:
        if not op.can(role):
            raise UiError(403, f"This needs the {role} role (to {ROLE_WORDS[role]}); {op.name} has the role "
                               f"{op.role}. An administrator can change it: logsense user set-role {op.name} {role}")
        return op

    check.__name__ = f"require_{role}"
    return Depends(check)


OperateDep = Annotated[Operator, require_role("operator")]
AdminDep = Annotated[Operator, require_role("admin")]


def safe_next(url: str | None) -> str:
    """A local path to go back to after login (never another host)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url or "\n" in url or "\r" in url:
        return "/"
    return url


# --------------------------------------------------------------------------- rendering


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


def open_count(request: Request) -> int:
    with Session(request.app.state.engine) as db:
        return reports.open_total(db)


def base_context(request: Request) -> dict:
    settings = request.app.state.settings
    operator = getattr(request.state, "operator", None)
    return {
        "request": request,
        "operator": operator,
        "can": lambda role: operator is not None and operator.can(role),  # hide what the user may not do
        "dev_mode": settings.dev_mode,
        "csrf": csrf_token(request),
        "csrf_field": CSRF_FIELD,
        "csrf_header": CSRF_HEADER,
        "section": "",
        "flash": None,
        "flash_kind": "info",
        "now": datetime.now(timezone.utc),
    }


def render_html(request: Request, name: str, ctx: dict | None = None, block: str | None = None) -> str:
    context = {**base_context(request), **(ctx or {})}
    template = env.get_template(name)
    if block is None:
        return template.render(context)
    return "".join(template.blocks[block](template.new_context(context)))


def render(
    request: Request,
    name: str,
    ctx: dict | None = None,
    *,
    partial: str | None = None,
    status: int = 200,
    headers: dict | None = None,
) -> HTMLResponse:
    """The page `name`; on an HTMX request `partial` (a template) or the page's `content` block."""
    ctx = dict(ctx or {})
    if is_htmx(request):
        html = render_html(request, partial, ctx) if partial else render_html(request, name, ctx, block="content")
    else:
        ctx.setdefault("open_total", open_count(request))
        html = render_html(request, name, ctx)
    return HTMLResponse(html, status_code=status, headers=headers)


def fragment(request: Request, name: str, ctx: dict | None = None, *, status: int = 200,
             headers: dict | None = None) -> HTMLResponse:
    """Always just the template `name` (a piece of a page)."""
    return HTMLResponse(render_html(request, name, ctx), status_code=status, headers=headers)


def redirect(url: str, request: Request | None = None) -> Response:
    """303 to `url`; to an HTMX request a 204 with `HX-Redirect` instead (htmx loads that page)."""
    if request is not None and is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def error_response(request: Request, status: int, message: str) -> HTMLResponse:
    """The message as a full error page, or (HTMX) into the page's `#flash` box."""
    ctx = {"status": status, "message": message, "flash": message, "flash_kind": "error"}
    if is_htmx(request):
        return HTMLResponse(render_html(request, "_flash.html", ctx), status_code=status,
                            headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
    try:
        ctx["open_total"] = open_count(request)  # the nav's queue badge, as on every page
    except Exception:  # noqa: BLE001 (an error page must render even when the database is the error)
        ctx["open_total"] = 0
    return HTMLResponse(render_html(request, "error.html", ctx), status_code=status)


def markup(text: str) -> Markup:
    return Markup(text)
