"""`/login` and `/logout`: user sessions (argon2 password check, CSRF even on the login form).

Every attempt is counted against the account and the client's address before the password is
checked (`server.throttle.LoginThrottle`): after 10 failures in a row for an account (30 for an
address) further tries get 429 for 30 s, doubling per failure up to 15 min; a right password
resets both. The client's address is the connection's peer, or the `X-Forwarded-For` client
when the peer is one of `forwarded_allow_ips`. Password checks run at most two at once in a
thread pool of their own (not the one ingest uses); too many waiting answer 503.

A login stores a server-side session (`server.users.start_session`) and puts its token in the
signed cookie; logout revokes it, so the same cookie is refused afterwards.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlmodel import Session

from logsense.server.throttle import (Busy, LoginThrottle, PasswordChecks, client_address, parse_trusted,
                                      retry_seconds)
from logsense.server.ui.core import CsrfDep, error_response, redirect, render, safe_next

router = APIRouter()

PASSWORD_CHECK_WORKERS = 2  # argon2 checks at once (64 MiB each)
PASSWORD_CHECKS_WAITING = 32  # more waiting than this: 503


def _state(request: Request, name: str, make):  # noqa: ANN001, ANN202
    value = getattr(request.app.state, name, None)
    if value is None:
        value = make()
        setattr(request.app.state, name, value)
    return value


def _throttle(request: Request) -> LoginThrottle:
    return _state(request, "login_throttle", LoginThrottle)


def _checks(request: Request) -> PasswordChecks:
    return _state(request, "password_checks", lambda: PasswordChecks(PASSWORD_CHECK_WORKERS, PASSWORD_CHECKS_WAITING))


def login_client(request: Request) -> str:
    """The client's address for throttling: the peer, or X-Forwarded-For from a trusted proxy."""
    trusted = _state(request, "trusted_proxies", lambda: parse_trusted(request.app.state.settings.forwarded_allow_ips))
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.getlist("x-forwarded-for"), trusted)


def throttle_keys(username: str, address: str) -> list[str]:
    return [f"user:{username[:64].lower()}", f"addr:{address}"]


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
    keys = throttle_keys(username, login_client(request))
    throttle = _throttle(request)
    wait = throttle.attempt(keys)  # counted now, before the check: concurrent guesses cannot all pass
    if wait > 0:
        seconds = retry_seconds(wait)
        return _refused(request, 429, seconds,
                        f"Too many failed logins for this account or from this address; try again in {seconds} s.")

    def check():  # noqa: ANN202
        from logsense.server.users import authenticate, start_session

        if not (username and password):
            return None
        with Session(request.app.state.engine) as db:
            user = authenticate(db, username, password)
            return None if user is None else start_session(db, user)

    try:
        token = await _checks(request).run(check)
    except Busy:
        return _refused(request, 503, 5, "The server is checking too many logins at once; try again in a few seconds.")
    if token is None:
        return render(request, "login.html", {
            "next": next_url, "username": username, "error": "Wrong username or password.",
            "no_users": await run_in_threadpool(_no_users, request), "open_total": 0,
        }, status=401)
    throttle.succeeded(keys)
    request.session.clear()  # a fresh session: no fixation
    request.session.update({"sid": token, "csrf": secrets.token_urlsafe(32)})
    return redirect(next_url)


def _refused(request: Request, status: int, seconds: int, message: str) -> Response:
    """The error page (HTMX: the flash box) with a Retry-After header."""
    response = error_response(request, status, message)
    response.headers["Retry-After"] = str(seconds)
    return response


@router.post("/logout", dependencies=[CsrfDep])
async def logout(request: Request) -> Response:
    token = request.session.get("sid")
    if token:
        from logsense.server.users import end_session

        def end() -> None:
            with Session(request.app.state.engine) as db:
                end_session(db, token)

        await run_in_threadpool(end)
    request.session.clear()
    return redirect("/login", request)
