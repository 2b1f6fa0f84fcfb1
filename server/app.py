"""Application factory: `create_app(settings) -> FastAPI`.

Start (lifespan): prepare the data directory, migrate the database to head, open the engine.
Extension points for later code, all on `app.state`:
- `ready_checks`: callables `(app) -> str | None`; a string is why the server is not ready (503).
- `stream_deleted_hooks`: callables `(stream_id) -> None`, run after a stream is deleted.
- `metrics`: the `Metrics` object (counters to increment), `settings`, `engine`.
- `services`: the `server.services.Services` the modules below the routes take (from the start).
New `/api` routers are added with `include_api(app, router)` (it adds the API key check); the log
shippers' own protocols (`/loki/api/v1/push`, OTLP `/v1/logs`) with `include_push(app, router)`.
"""

from __future__ import annotations

import logging
import re
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logsense.server.api import anomalies, data, ingest, jobs, loki, models, otlp, review, streams
from logsense.server.api.deps import current_key, push_key
from logsense.server import alerts  # alerts out: the enqueue hook and the dispatcher
from logsense.server.api import alerts as alerts_api
from logsense.server.api import incidents as incidents_api
from logsense.server.api import search as search_api
from logsense.server.db import Checkpointer, make_engine, make_private_dir, ping, upgrade_database
from logsense.server.metrics import CONTENT_TYPE_LATEST, Metrics, MetricsMiddleware
from logsense.server.services import Services
from logsense.server.settings import Settings
from logsense.server.syslog import start_syslog, stop_syslog

log = logging.getLogger("logsense")

_DEV_LINES = (
    "DEV MODE: /api is open to anyone who can reach this port; no API key is checked.",
    "Never run like this where others can connect (unset LOGSENSE_DEV_MODE, drop --dev).",
)
DEV_MODE_BANNER = "\n".join(
    ["", "!" * 90, *(f"!!  {line:<84}!!" for line in _DEV_LINES), "!" * 90]
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the LogSense app; nothing touches disk or the database until it starts."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        make_private_dir(settings.data_dir)
        upgrade_database(settings.database_url)
        app.state.engine = make_engine(settings.database_url)
        sqlite = app.state.engine.dialect.name == "sqlite"
        app.state.checkpointer = Checkpointer(app.state.engine).start() if sqlite else None  # WAL off the commit path
        if settings.dev_mode:
            log.warning(DEV_MODE_BANNER)
        services = _start_background(app)
        alerts.start(services)  # after the registry: the alert hook names templates
        app.state.alerts = services.alerts
        log.info("LogSense started: data in %s (models load in the background; see /readyz)",
                 settings.data_dir.resolve())
        try:
            app.state.syslog = services.syslog = await start_syslog(services)  # syslog_port set: the TCP listener
            yield
        finally:
            await stop_syslog(services)
            app.state.syslog = None
            _stop_background(app, services)
            alerts.stop(services)  # after the worker: its last anomalies still queue alerts
            if app.state.checkpointer is not None:
                app.state.checkpointer.stop()
            app.state.engine.dispose()

    app = FastAPI(
        title="LogSense",
        version="0.1.0",
        description="Log anomaly detection: instant RAPID verdicts, LogGPT window checks, operator feedback.",
        lifespan=lifespan,
        docs_url=None,  # served below from vendored Swagger UI files: FastAPI's default loads them from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.engine = None
    app.state.ready_checks = []
    app.state.stream_deleted_hooks = [partial(_forget_open_sessions, app)]

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(MethodsMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: sees the 413s too
    _add_exception_handlers(app)
    _add_health_routes(app)
    _add_docs_route(app)

    for router in (streams.router, ingest.router, data.router, models.router, anomalies.router, jobs.router,
                   review.router):
        include_api(app, router)
    include_api(app, alerts_api.router)  # /api/v1/alerts: channels and the outbox
    include_api(app, incidents_api.router)  # /api/v1/incidents: stored incidents, their status and notes
    include_api(app, search_api.router)  # /api/v1/search: stored lines by text, attributes and time
    for router in (loki.router, otlp.router):
        include_push(app, router)
    from logsense.server.ui import install_ui

    install_ui(app)  # the operator web UI: pages, /static, sessions, security headers
    _document_statuses(app)
    return app


COMMON_ERRORS = {  # every /api route can answer these; the spec says so (FastAPI lists only 2xx and 422)
    "401": "missing, invalid or revoked API key (X-API-Key)",
    "403": "the key lacks the scope this route needs, or is limited to other streams",
    "503": "the stream's models are still loading (Retry-After)",
}
BODY_ERRORS = {"400": "malformed JSON", "413": "request body over max_request_bytes", "415": "unsupported Content-Type"}


def _document_statuses(app: FastAPI) -> None:
    """The OpenAPI spec names every status a route can give: the key's (401, 403), an unknown id or
    name in the path (404), bad input (422) and, for routes with a body, 400, 413 and 415."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith("/api/"):
                continue
            for method, op in operations.items():
                responses = op.setdefault("responses", {})
                errors = dict(COMMON_ERRORS)
                if "{" in path:
                    errors["404"] = "no such stream, anomaly, job or version"
                errors["422"] = "invalid parameters or body: `detail` says which and why"
                if method in ("post", "patch", "put"):
                    errors.update(BODY_ERRORS)
                for code, text in errors.items():
                    responses.setdefault(code, {"description": text})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi


def _forget_open_sessions(app: FastAPI, stream_id: int) -> None:
    """A deleted stream's remembered open sessions (`windows.OpenSessions`) go too."""
    from logsense.server import store, windows

    engine = app.state.engine
    with store.write_lock(engine):
        windows.open_sessions(engine).drop(stream_id)


def _start_background(app: FastAPI) -> Services:
    """The detector registry (loading in a background thread) and the background parts this
    process's role runs (`settings.role`: all of them in one process); the `Services` the
    modules below the routes get, also on `app.state.services`."""
    from logsense.server.registry import Registry

    settings: Settings = app.state.settings
    role = settings.role
    from logsense.server.training import fail_interrupted

    fail_interrupted(app.state.engine, settings)  # jobs of a dead process cannot resume
    registry = app.state.registry = Registry(settings, app.state.engine)
    services = app.state.services = Services(settings, app.state.engine, registry, app.state.metrics)
    app.state.ready_checks.append(_models_ready)
    app.state.stream_deleted_hooks.append(registry.drop)
    app.state.training_threads = services.training_threads
    registry.start()
    app.state.parse_helper = None
    stores = role in ("all", "processor")  # parses, scores and stores batches
    if stores and (settings.parse_helper or (settings.parse_helper is None and (os.cpu_count() or 1) > 1)):
        from logsense.models.parsing.helper import PrepareHelper

        try:
            app.state.parse_helper = services.parse_helper = PrepareHelper()
        except OSError as exc:
            log.warning("parse helper not started (%s): ingest parses in the server process", exc)
    if settings.cluster:
        _start_cluster(services)
    app.state.encoder = None
    if stores:
        from logsense.server.encoder import Encoder

        app.state.encoder = services.encoder = Encoder(services)  # a pending line must get its RAPID verdict
        services.encoder.start()
    from logsense.server.search import Indexer

    app.state.search_indexer = services.search_indexer = (
        Indexer(app.state.engine, settings.worker_poll_seconds).start() if settings.search_index and role == "all"
        else None)
    app.state.worker = None
    if settings.worker_enabled and role in ("all", "worker"):
        from logsense.server.worker import Worker

        app.state.worker = services.worker = Worker(services)
        services.worker.start()
    app.state.scheduler = None
    if settings.scheduler_enabled and role in ("all", "worker"):
        from logsense.server.scheduler import Scheduler

        app.state.scheduler = services.scheduler = Scheduler(services)
        services.scheduler.start()
    return services


def _start_cluster(services: Services) -> None:
    """A cluster's parts: the broker (API replicas publish, processors read), the partition owner,
    the event follower that reloads streams changed elsewhere (and keeps this node's heartbeat)."""
    from logsense.server.cluster.broker import Broker
    from logsense.server.cluster.events import Follower

    settings = services.settings
    # Every role hands batches posted to it to their owner: only a partition's owner stores them.
    broker = services.broker = Broker(settings.broker_url, settings.partitions, settings.reply_timeout_seconds)
    on_change = services.registry.drop
    if settings.role == "processor":
        from logsense.server.cluster.processor import Processor

        services.processor = Processor(services, broker)
        services.processor.start()
        on_change = services.processor.changed  # applied between batches, never under one
    services.events = Follower(services.engine, on_change, node=settings.node(), role=settings.role,
                               heartbeat_seconds=settings.lease_seconds / 3)
    services.events.start()


def _models_ready(app: FastAPI) -> str | None:
    """A `ready_checks` entry: the registry's reason, while the models load or failed to."""
    return app.state.services.registry.ready_reason()


def _stop_background(app: FastAPI, services: Services) -> None:
    """Stop the worker and scheduler, let running training finish its step, save the models."""
    for part in (services.events, services.processor):
        if part is not None:
            part.stop()
    if services.broker is not None:
        services.broker.close()
    if services.scheduler is not None:
        services.scheduler.stop()
    if services.worker is not None:
        services.worker.stop()
    if services.encoder is not None:
        services.encoder.stop()
    if services.search_indexer is not None:
        services.search_indexer.stop()
    for thread in services.training_threads:
        thread.join(timeout=60)
    if services.parse_helper is not None:
        services.parse_helper.close()
    services.answers.shutdown(wait=True)
    registry = services.registry
    if registry.ready_reason() is None:
        registry.save_dirty(force=True)
    app.state.ready_checks.remove(_models_ready)
    app.state.stream_deleted_hooks.remove(registry.drop)


def include_api(app: FastAPI, router: APIRouter) -> None:
    """Mount an `/api/...` router behind the API key check.

    Routers carry their full prefix (`/api/v1/streams`), not a nested `/api` parent: the route
    templates then stay whole for the metrics labels on every FastAPI version.
    """
    if not router.prefix.startswith("/api/"):
        raise ValueError(f"API routers need a full /api/... prefix, got {router.prefix!r}")
    app.include_router(router, dependencies=[Depends(current_key)])


PUSH_PREFIXES = ("/loki/api/v1", "/v1")  # Loki's push API, OTLP/HTTP: the paths their clients post to


def include_push(app: FastAPI, router: APIRouter) -> None:
    """Mount a log shippers' protocol router (outside /api: their clients fix the paths) behind the
    push key check (`deps.push_key`: X-API-Key, Bearer or basic-auth password; the scope here, the
    stream limit per stream the body names)."""
    if router.prefix not in PUSH_PREFIXES:
        raise ValueError(f"push routers mount at {PUSH_PREFIXES}, got {router.prefix!r}")
    app.include_router(router, dependencies=[Depends(push_key)])


# --------------------------------------------------------------------------- health and metrics


def _add_docs_route(app: FastAPI) -> None:
    """`/docs`: Swagger UI from `web/static/swagger` (machines without internet still get the page)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title="LogSense API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js", swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )


def _add_health_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        """Alive: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["health"], responses={503: {"description": "not ready, with reasons"}})
    def ready(request: Request) -> JSONResponse:
        """`/readyz` at Loki's own path: log shippers' Loki outputs (Vector's health check) ask it."""
        return readyz(request)

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready, with reasons"}})
    def readyz(request: Request) -> JSONResponse:
        """Ready: the database answers a query and every registered readiness check passes."""
        reasons = []
        try:
            ping(request.app.state.engine)
        except Exception as exc:  # noqa: BLE001 (any failure means: not ready)
            reasons.append(f"database: {type(exc).__name__}: {exc}")
        for check in request.app.state.ready_checks:
            try:
                reason = check(request.app)
            except Exception as exc:  # noqa: BLE001
                reason = f"{getattr(check, '__name__', check)}: {type(exc).__name__}: {exc}"
            if reason:
                reasons.append(reason)
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics(request: Request) -> Response:
        """Prometheus text format: request metrics and domain metrics. It names the streams, so it
        needs a key with the read scope (`X-API-Key`, or `Authorization: Bearer KEY` as Prometheus
        sends it) unless `metrics_public` or dev mode."""
        settings = request.app.state.settings
        if not (settings.metrics_public or settings.dev_mode):
            from logsense.server.auth import HEADER, authorize, verify_api_key

            bearer = request.headers.get("authorization", "")
            key = request.headers.get(HEADER) or (bearer[7:].strip() if bearer[:7].lower() == "bearer " else None)
            with Session(request.app.state.engine, expire_on_commit=False) as session:
                row = verify_api_key(session, key)
            authorize(row, "GET", "/metrics", None)  # the read scope, on every stream
        m: Metrics = request.app.state.metrics
        try:
            with Session(request.app.state.engine) as session:
                m.refresh_from_db(session, request.app.state.registry)
            helper = getattr(request.app.state, "parse_helper", None)
            for where, n in (helper.counts if helper is not None else {}).items():
                m.parse_chunks.labels(where).set(n)
        except Exception:  # a scrape still answers with the counters
            log.exception("could not refresh metrics from the database")
        return Response(m.render(), media_type=CONTENT_TYPE_LATEST)


# --------------------------------------------------------------------------- bad input -> 4xx


def _error_location(loc: Any) -> str:
    return ".".join(str(part) for part in loc)


def _clean_errors(errors: Any) -> list[dict]:
    """Validation errors made JSON-safe and short: no echoed input (may be huge or binary)."""
    out = []
    for e in errors:
        item = {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        if item["type"] == "json_invalid":
            where = f" at character {item['loc'][-1]}" if len(item["loc"]) > 1 else ""
            item["msg"] = f"malformed JSON{where}: {(e.get('ctx') or {}).get('error', 'cannot be decoded')}"
        out.append(item)
    return out


def _add_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_errors(exc.errors())
        code = 400 if errors and all(e["type"] == "json_invalid" for e in errors) else 422
        message = "; ".join(
            e["msg"] if e["type"] == "json_invalid" else f"{_error_location(e['loc'])}: {e['msg']}" for e in errors
        )
        return JSONResponse({"detail": errors, "message": message}, status_code=code)

    from logsense.server.registry import ModelsUnavailable

    @app.exception_handler(ModelsUnavailable)
    async def on_models_unavailable(request: Request, exc: ModelsUnavailable) -> JSONResponse:
        """Models still loading (or failed to): a retryable 503 on every route that needs them."""
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "10"})

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error"}, status_code=500)


class MethodsMiddleware:
    """What plain routing gets wrong for /api: `OPTIONS` answers 204 with every method the path
    takes (Starlette's answer named only the first matching route's), a 405 names them all too,
    and a body sent without a `Content-Type` is a 415 (a JSON route would read it as a form)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._paths: list[tuple[re.Pattern, set[str]]] | None = None

    def _allowed(self, scope: Scope, path: str) -> set[str]:
        if self._paths is None:  # the spec lists every API route once it is built
            spec = scope["app"].openapi()
            self._paths = [(re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(p)) + "$"),
                            {m.upper() for m in ops} | {"OPTIONS"} | ({"HEAD"} if "get" in ops else set()))
                           for p, ops in spec.get("paths", {}).items() if p.startswith("/api/")]
        return set().union(*(methods for pattern, methods in self._paths if pattern.match(path)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        allowed = self._allowed(scope, scope["path"])
        headers = dict(scope["headers"])
        allow = {"Allow": ", ".join(sorted(allowed))}
        if method == "OPTIONS" and allowed:
            await Response(status_code=204, headers=allow)(scope, receive, send)
            return
        if allowed and method not in allowed:
            await JSONResponse({"detail": f"{method} is not allowed here; use {allow['Allow']}"}, status_code=405,
                               headers=allow)(scope, receive, send)
            return
        has_body = headers.get(b"content-length", b"0") not in (b"0", b"") or b"transfer-encoding" in headers
        if method in ("POST", "PUT", "PATCH") and has_body and not headers.get(b"content-type", b"").strip():
            await JSONResponse({"detail": "send a Content-Type: application/json (or text/plain for log lines)"},
                               status_code=415)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for request bodies over `max_bytes`: by Content-Length up front, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> HTTPException:
        return HTTPException(
            status_code=413,
            detail=f"request body over max_request_bytes ({self.max_bytes} bytes)",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            exc = self._too_large()
            await JSONResponse({"detail": exc.detail}, status_code=exc.status_code)(scope, receive, send)
            return
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large()  # FastAPI re-raises HTTPException from body parsing: a 413
            return message

        await self.app(scope, receive if length is not None else counted_receive, send)
