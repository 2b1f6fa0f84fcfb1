"""The operator web UI: HTMX pages served by the same app as the API (templates in web/templates).

One module per resource, each calling the same domain functions as the API (feedback, mutes,
training, rollback, `server.streams`, `server.channels`, `server.incidents`); none builds a query itself:
- `login.py`: `/login`, `/logout`.
- `overview.py`: `/`: every stream with ingest rate, open anomalies, model, train mode, a chart.
- `anomalies.py` (+ `queue.py`, `explain.py`): `/anomalies` (the triage queue, incidents,
  bulk actions), `/anomalies/{id}` (why it was flagged), feedback and mutes.
- `streams.py`: `/streams` (create, edit, train mode, "Retrain now").
- `models.py`: `/models` (versions, metrics, rollback). `jobs.py`: `/jobs` (progress, errors).
- `incidents.py`: `/incidents` (acknowledge, assign, resolve, notes). `alerts.py`: `/alerts` (channels).
- `search.py`: `/search`, `/lines/{id}` (a line in its context), `/streams/{name}/tail` (live tail).

`install_ui(app)` adds the routes, `/static`, the session and security-header middleware and
HTML error pages for UI paths (API paths keep their JSON errors).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from logsense.server.ui.core import STATIC_DIR, LoginRequired, UiError, error_response, is_htmx, is_ui_path, redirect
from logsense.server.ui.security import SecurityHeadersMiddleware, UiSessionMiddleware


def _wants_html(request: Request) -> bool:
    return is_ui_path(request.url.path) and (
        "text/html" in request.headers.get("accept", "") or request.headers.get("HX-Request") == "true"
    )


def install_ui(app: FastAPI) -> None:
    from logsense.server.ui import alerts, anomalies, jobs, login, models, overview, review, streams

    for module in (login, overview, anomalies, streams, models, jobs, review, alerts):
        app.include_router(module.router, include_in_schema=False)
    from logsense.server.ui import search as search_ui  # /search, /lines/{id} in context, /streams/{name}/tail

    app.include_router(search_ui.router, include_in_schema=False)
    from logsense.server.ui import incidents as incidents_ui  # /incidents, /incidents/{id}: stored incidents

    app.include_router(incidents_ui.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(UiSessionMiddleware, settings=app.state.settings)
    app.add_middleware(SecurityHeadersMiddleware)

    @app.exception_handler(UiError)
    async def on_ui_error(request: Request, exc: UiError):  # noqa: ANN202
        return error_response(request, exc.status, exc.message)

    @app.exception_handler(LoginRequired)
    async def on_login_required(request: Request, exc: LoginRequired):  # noqa: ANN202
        from urllib.parse import quote

        url = "/login" if exc.next_url in ("", "/") else f"/login?next={quote(exc.next_url, safe='')}"
        if is_htmx(request):
            return redirect(url, request)
        return redirect(url)

    api_validation = app.exception_handlers.get(RequestValidationError, request_validation_exception_handler)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError):  # noqa: ANN202
        if not _wants_html(request):
            return await api_validation(request, exc)
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'input'}: {e.get('msg', '')}"
                 for e in exc.errors()]
        return error_response(request, 400, "Bad input: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException):  # noqa: ANN202
        if not _wants_html(request) or exc.status_code >= 500:
            return await http_exception_handler(request, exc)
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and message == "Not Found":
            message = f"There is no page at {request.url.path}."
        return error_response(request, exc.status_code, message)
