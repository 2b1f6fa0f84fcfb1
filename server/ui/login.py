"""`/login` and `/logout`: operator sessions (argon2 password check, CSRF even on the login form).

Failed logins are throttled per client address: after `MAX_FAILURES` within
`FAILURE_WINDOW_SECONDS`, further tries get 429 until the window has passed.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict, deque

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlmodel import Session

from logsense.server.ui.core import CsrfDep, UiError, redirect, render, safe_next

router = APIRouter()

MAX_FAILURES = 10
FAILURE_WINDOW_SECONDS = 300.0


class _Throttle:
    def __init__(self) -> None:
        self._failures: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, who: str, now: float) -> deque:
        q = self._failures[who]
        while q and now - q[0] > FAILURE_WINDOW_SECONDS:
            q.popleft()
        return q

    def blocked(self, who: str) -> bool:
        with self._lock:
            return len(self._recent(who, time.monotonic())) >= MAX_FAILURES

    def fail(self, who: str) -> None:
        with self._lock:
            self._recent(who, time.monotonic()).append(time.monotonic())

    def clear(self, who: str) -> None:
        with self._lock:
            self._failures.pop(who, None)


def _throttle(request: Request) -> _Throttle:
    t = getattr(request.app.state, "login_throttle", None)
    if t is None:
        t = request.app.state.login_throttle = _Throttle()
    return t


def _no_users(request: Request) -> bool:
    from logsense.server.users import count_users

    with Session(request.app.state.engine) as db:
        return count_users(db) == 0


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:  # noqa: A002 (the query parameter's name)
    if request.app.state.settings.dev_mode:
        return redirect(safe_next(next))
    return render(request, "login.html", {"next": safe_next(next), "username": "", "error": None,
                                          "no_users": _no_users(request), "open_total": 0})


@router.post("/login", dependencies=[CsrfDep])
async def login(request: Request) -> Response:
    form = await request.form()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    next_url = safe_next(str(form.get("next", "/")))
    if request.app.state.settings.dev_mode:
        return redirect(next_url)
    who = request.client.host if request.client else "?"
    throttle = _throttle(request)
    if throttle.blocked(who):
        raise UiError(429, f"Too many failed logins from {who}; wait a few minutes and try again.")

    def check():  # noqa: ANN202
        from logsense.server.users import authenticate

        with Session(request.app.state.engine) as db:
            return authenticate(db, username, password) if username and password else None

    user = await run_in_threadpool(check)
    if user is None:
        throttle.fail(who)
        return render(request, "login.html", {
            "next": next_url, "username": username, "error": "Wrong username or password.",
            "no_users": await run_in_threadpool(_no_users, request), "open_total": 0,
        }, status=401)
    throttle.clear(who)
    from logsense.server.users import password_stamp

    request.session.clear()  # a fresh session: no fixation
    request.session.update({"uid": user.id, "stamp": password_stamp(user), "csrf": secrets.token_urlsafe(32)})
    return redirect(next_url)


@router.post("/logout", dependencies=[CsrfDep])
def logout(request: Request) -> Response:
    request.session.clear()
    return redirect("/login", request)
