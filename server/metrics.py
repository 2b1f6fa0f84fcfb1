"""Prometheus metrics: one `Metrics` per app (its own registry, so apps and tests do not share counts).

Counters are incremented by the code that does the work (`request.app.state.metrics`);
gauges that describe stored state (queue depth and lag, live model version, last training) are read
from the database at every scrape (`refresh_from_db`), so they are right after a restart; the
header parse rate is read from each loaded stream model (counted since the server loaded it).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from sqlalchemy import func
from sqlmodel import Session, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from logsense.server import store
from logsense.server.tables import AlertChannel, AlertOutbox, Anomaly, ModelVersion, Stream

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "MetricsMiddleware"]

disable_created_metrics()  # no *_created series: half the output, and nothing scrapes them


class Metrics:
    """Every metric the server exports. Label `stream` is the stream's name."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "logsense_http_requests", "HTTP requests by route template and status.",
            ["method", "route", "status"], registry=r,
        )
        self.http_request_seconds = Histogram(
            "logsense_http_request_duration_seconds", "HTTP request latency by route template and status.",
            ["method", "route", "status"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.lines_ingested = Counter(
            "logsense_lines_ingested", "Log lines stored by ingest.", ["stream"], registry=r
        )
        self.verdicts = Counter(
            "logsense_verdicts", "Line verdicts given, by severity (train/normal/watch/danger/pending).",
            ["stream", "severity"], registry=r,
        )
        self.feedback = Counter(
            "logsense_feedback", "Operator feedback by label (normal/anomaly).", ["stream", "label"], registry=r
        )
        self.windows_checked = Counter(
            "logsense_windows_checked",
            "Windows checked, by outcome (normal; anomalous: a LogGPT miss or new session content; failed).",
            ["stream", "outcome"], registry=r,
        )
        self.queue_depth = Gauge(
            "logsense_queue_depth", "Windows waiting for a LogGPT check (queued or checking).", ["stream"], registry=r
        )
        self.queue_lag = Gauge(
            "logsense_loggpt_queue_lag_seconds", "Age of the oldest window waiting for a LogGPT check (queued or "
            "checking) since it closed; 0 when none waits.", ["stream"], registry=r,
        )
        self.rapid_pending = Gauge(
            "logsense_rapid_pending_lines", "Lines whose new masked text waits for the background encoder (RAPID "
            "verdict pending).", ["stream"], registry=r,
        )
        self.model_memory = Gauge(
            "logsense_stream_model_bytes", "About what a stream's loaded model holds in memory (RAPID core sets "
            "and caches, LogGPT weights). Streams without a loaded model are left out.", ["stream"], registry=r,
        )
        self.header_parse_rate = Gauge(
            "logsense_header_parse_rate", "Share of the lines since the stream's model was loaded whose header the "
            "stream's format parsed (a low rate: the format does not fit the lines). Streams without a loaded "
            "model or without lines since are left out.", ["stream"], registry=r,
        )
        self.model_version = Gauge(
            "logsense_model_version", "Live model version (0: none yet).", ["stream", "kind"], registry=r
        )
        self.parse_chunks = Gauge(
            "logsense_parse_chunks", "Ingest chunks by where their header and masking ran since start: helper (the "
            "parse helper process), server (each batch's first chunk), fallback (in the server: helper busy, "
            "restarting or failing).", ["where"], registry=r,
        )
        self.stream_state = Gauge(
            "logsense_stream_state", "1 for the state each stream is in: learning (train mode, or no model yet), "
            "calibrating (a first model kept back: too little validation data), detecting, loading.",
            ["stream", "state"], registry=r,
        )
        self.syslog_messages = Counter(
            "logsense_syslog_messages", "Syslog listener messages by outcome: stored, malformed (stored as a plain "
            "line with what could be parsed), rejected (not stored; logged).", ["outcome"], registry=r,
        )
        self.open_anomalies = Gauge(
            "logsense_open_anomalies", "Anomalies waiting for an operator, by stream and severity.",
            ["stream", "severity"], registry=r,
        )
        self.alerts = Gauge(
            "logsense_alerts", "Alerts in the outbox by channel and state (pending, sending, sent, failed).",
            ["channel", "state"], registry=r,
        )
        self.last_training = Gauge(
            "logsense_last_training_timestamp_seconds", "Unix time of the newest trained model version.",
            ["stream"], registry=r,
        )
        self.database_bytes = Gauge(
            "logsense_database_bytes", "The database's size on disk: SQLite, the file plus its WAL; PostgreSQL, "
            "pg_database_size.", registry=r,
        )

    def refresh_from_db(self, session: Session, registry: Any = None) -> None:
        """Set the state gauges from the tables (called on every scrape of /metrics)."""
        streams = session.exec(select(Stream)).all()
        names = {s.id: s.name for s in streams}
        if registry is not None:
            from logsense.server.streams import header_report

            self.stream_state.clear()
            self.header_parse_rate.clear()
            self.model_memory.clear()
            for stream in streams:
                model = registry.peek(stream.id)
                if model is not None:
                    self.model_memory.labels(stream.name).set(model.memory_bytes())
                state, _ = registry.state(stream)
                for name in ("learning", "calibrating", "detecting", "loading"):
                    self.stream_state.labels(stream.name, name).set(1.0 if name == state else 0.0)
                rate, _ = header_report(registry.peek(stream.id))
                if rate is not None:
                    self.header_parse_rate.labels(stream.name).set(rate)
        from logsense.server.retention import database_bytes

        size = database_bytes(session.get_bind())
        if size is not None:
            self.database_bytes.set(size)
        queues = store.loggpt_queues(session, datetime.now(timezone.utc))
        pending = store.rapid_pending(session, names)
        live = session.exec(
            select(ModelVersion.stream_id, ModelVersion.kind, func.max(ModelVersion.version))
            .where(ModelVersion.live == True)  # noqa: E712 (SQL expression)
            .group_by(ModelVersion.stream_id, ModelVersion.kind)
        ).all()
        trained = session.exec(
            select(ModelVersion.stream_id, func.max(ModelVersion.created_at)).group_by(ModelVersion.stream_id)
        ).all()
        for gauge in (self.queue_depth, self.queue_lag, self.rapid_pending, self.model_version, self.last_training, self.open_anomalies,
                      self.alerts):
            gauge.clear()  # forget deleted streams and channels
        open_rows = session.exec(
            select(Anomaly.stream_id, Anomaly.severity, func.count(Anomaly.id))
            .where(Anomaly.status == "open").group_by(Anomaly.stream_id, Anomaly.severity)
        ).all()
        for stream_id, name in names.items():
            for severity in ("watch", "danger"):
                self.open_anomalies.labels(name, severity).set(0)
        for stream_id, severity, n in open_rows:
            if stream_id in names and severity in ("watch", "danger"):
                self.open_anomalies.labels(names[stream_id], severity).set(n)
        outbox = session.exec(
            select(AlertChannel.name, AlertOutbox.state, func.count(AlertOutbox.id))
            .join(AlertOutbox, AlertOutbox.channel_id == AlertChannel.id).group_by(AlertChannel.name, AlertOutbox.state)
        ).all()
        for channel, state, n in outbox:
            self.alerts.labels(channel, state).set(n)
        for stream_id, name in names.items():
            queue = queues.get(stream_id, {})
            self.queue_depth.labels(name).set(queue.get("depth", 0))
            self.queue_lag.labels(name).set(queue.get("lag_seconds", 0.0))
            self.rapid_pending.labels(name).set(pending.get(stream_id, 0))
            for kind in ("loggpt", "rapid"):
                self.model_version.labels(name, kind).set(0)
        for stream_id, kind, version in live:
            self.model_version.labels(names[stream_id], kind).set(version)
        for stream_id, when in trained:
            if when is not None:
                if when.tzinfo is None:  # an aggregate may come back naive: stored as UTC
                    when = when.replace(tzinfo=timezone.utc)
                self.last_training.labels(names[stream_id]).set(when.timestamp())

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request and its latency, labeled by route template (bounded cardinality)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            labels = (scope["method"], route, str(status))
            self.metrics.http_requests.labels(*labels).inc()
            self.metrics.http_request_seconds.labels(*labels).observe(time.perf_counter() - start)
