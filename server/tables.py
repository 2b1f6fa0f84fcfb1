"""The database schema: SQLModel tables, plus `StreamSettings`, the shape of `Stream.settings`.

Portable to SQLite and PostgreSQL: JSON columns use SQLAlchemy's generic `JSON`, times are
stored as naive UTC and come back timezone-aware (`UtcDateTime`), enumerations are short strings
checked in Python (adding a state needs no migration). Line ids are BIGINT on PostgreSQL and
INTEGER on SQLite (where only INTEGER PRIMARY KEY autoincrements).

Every change here needs a migration in `migrations/versions/`; `tests/server/test_migrations.py`
fails while the two differ.
"""

from __future__ import annotations


import logging
from datetime import datetime, timezone
from typing import Any

from logsense.models.settings import FORMAT_PRESETS, MaskRule, StreamSettings  # noqa: F401 (stored as JSON here)
from sqlalchemy import (JSON, BigInteger, Column, DateTime, ForeignKey, Index, Integer, LargeBinary, UniqueConstraint,
                        and_, text)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

log = logging.getLogger("logsense.tables")

# Named constraints, so later migrations (and SQLite batch mode) can address them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LineId = BigInteger().with_variant(Integer(), "sqlite")

SEVERITIES = ("train", "normal", "watch", "danger", "pending")
WINDOW_STATES = ("open", "queued", "checking", "done", "failed")
ANOMALY_STATUSES = ("open", "confirmed", "refuted", "muted")
JOB_STATES = ("queued", "running", "done", "failed")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator):
    """DATETIME stored as naive UTC (portable), returned timezone-aware UTC (comparable)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def _created() -> Any:
    return Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


def _when() -> Any:
    return Field(default=None, sa_type=UtcDateTime, nullable=True)


def _json(default: Any = dict) -> Any:
    """A JSON column; NULL allowed only when the default is None."""
    if default is None:
        return Field(default=None, sa_column=Column(JSON, nullable=True))
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


def _stream_fk() -> Any:
    return Field(foreign_key="streams.id", ondelete="CASCADE", nullable=False)


# --------------------------------------------------------------------------- stream settings



# --------------------------------------------------------------------------- tables


class Stream(SQLModel, table=True):
    """One service's logs, with its settings (JSON, see `StreamSettings`)."""

    __tablename__ = "streams"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, nullable=False)
    settings: dict = _json()
    created_at: datetime = _created()
    updated_at: datetime = _created()

    def config(self) -> StreamSettings:
        """The settings as a validated model (defaults filled for fields added since the row was
        written, and for fields an older version accepted that today's checks refuse)."""
        settings, dropped = StreamSettings.read_stored(self.settings or {})
        if dropped:
            log.warning("stream %s: stored settings %s fail today's checks; their defaults apply", self.name, dropped)
        return settings


class ApiKey(SQLModel, table=True):
    """An API key; only the sha256 of the full key is kept, `prefix` is for humans to tell keys apart."""

    __tablename__ = "api_keys"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, nullable=False)
    prefix: str = Field(max_length=16, index=True, nullable=False)
    key_hash: str = Field(max_length=64, unique=True, nullable=False)
    created_at: datetime = _created()
    last_used_at: datetime | None = _when()
    revoked: bool = Field(default=False, nullable=False)
    scopes: list = Field(default_factory=lambda: ["admin"], sa_column=Column(JSON, nullable=False))  # server.auth.Scope
    streams: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))  # None: every stream


class LogLine(SQLModel, table=True):
    """One accepted line with its verdicts so far. Severity: train/normal/watch/danger/pending."""

    __tablename__ = "log_lines"
    __table_args__ = (
        Index("ix_log_lines_stream_id_id", "stream_id", "id"),
        # lines of one severity but normal (most lines are normal: left out, ingest inserts less)
        Index("ix_log_lines_not_normal", "stream_id", "severity", sqlite_where=text("severity != 'normal'"),
              postgresql_where=text("severity != 'normal'")),
        # lines an operator labelled (ingest writes none: free for ingest)
        Index("ix_log_lines_labelled", "stream_id", "label", sqlite_where=text("label IS NOT NULL"),
              postgresql_where=text("label IS NOT NULL")),
    )
    id: int | None = Field(default=None, sa_column=Column(LineId, primary_key=True, autoincrement=True))
    stream_id: int = _stream_fk()
    received_at: datetime = _created()
    timestamp: float | None = Field(default=None, nullable=True)  # epoch seconds from the line's header
    level: str | None = Field(default=None, max_length=16, nullable=True)
    raw: str = Field(nullable=False)
    masked: str = Field(nullable=False)
    template_id: int | None = Field(default=None, nullable=True)
    sessions: list = _json(list)  # session keys the line belongs to (explicit or by session_regex)
    attributes: dict | None = _json(None)  # from ingest records
    rapid_score: float | None = Field(default=None, nullable=True)  # None in train mode
    rapid_flag: bool | None = Field(default=None, nullable=True)
    loggpt_flag: bool | None = Field(default=None, nullable=True)  # None until a window with it is checked
    severity: str = Field(default="pending", max_length=16, nullable=False)
    label: str | None = Field(default=None, max_length=16, nullable=True)  # operator: normal / anomaly
    checked_at: datetime | None = _when()


def severity_is(value: str) -> Any:
    """`LogLine.severity == value`, worded so that SQLite can use ix_log_lines_not_normal: it takes
    a partial index only when the query states the index's own condition, so for any value but
    normal the condition goes along."""
    cond = LogLine.severity == value
    return cond if value == "normal" else and_(cond, LogLine.severity != "normal")


class Window(SQLModel, table=True):
    """A session or window of lines; closed ones are the durable LogGPT queue (state "queued")."""

    __tablename__ = "windows"
    __table_args__ = (
        Index("ix_windows_stream_id_key", "stream_id", "key"),
        Index("ix_windows_state_id", "state", "id"),
        Index("ix_windows_stream_id_state_id", "stream_id", "state", "id"),  # pending windows after an id
        Index("ix_windows_open_last_ts", "stream_id", "last_ts", sqlite_where=text("state = 'open'"),
              postgresql_where=text("state = 'open'")),  # the idle sweep in log time
    )
    id: int | None = Field(default=None, primary_key=True)
    stream_id: int = _stream_fk()
    kind: str = Field(default="session", max_length=16, nullable=False)  # session / count / time
    key: str = Field(max_length=255, nullable=False)  # session key, or the window number
    state: str = Field(default="open", max_length=16, nullable=False)  # open/queued/checking/done/failed
    n_lines: int = Field(default=0, nullable=False)
    opened_at: datetime = _created()
    last_line_at: datetime = _created()  # arrival of the newest line: the idle timeout of a quiet stream
    last_ts: float | None = Field(default=None, nullable=True)  # log time of the newest line (models.windowing)
    closed_at: datetime | None = _when()
    checked_at: datetime | None = _when()
    anomalous: bool | None = Field(default=None, nullable=True)
    model_version: int | None = Field(default=None, nullable=True)  # LogGPT version that checked it
    result: dict | None = _json(None)  # misses: position, actual, expected
    attempts: int = Field(default=0, nullable=False)
    error: str | None = Field(default=None, nullable=True)
    label: str | None = Field(default=None, max_length=16, nullable=True)  # operator: normal / anomaly
    claimed_by: str | None = Field(default=None, max_length=128, nullable=True)  # the worker checking it
    claimed_at: datetime | None = _when()  # ... since: a claim older than the lease is a dead worker's


class WindowLine(SQLModel, table=True):
    """Membership of a line in a window, in order (`position` 0, 1, ...)."""

    __tablename__ = "window_lines"
    window_id: int = Field(foreign_key="windows.id", ondelete="CASCADE", primary_key=True)
    position: int = Field(primary_key=True)
    line_id: int = Field(
        sa_column=Column(LineId, ForeignKey("log_lines.id", ondelete="CASCADE"), nullable=False, index=True)
    )


class LineCount(SQLModel, table=True):
    """Lines received per stream and 10-second slot of `received_at`, kept by `store.insert_lines`
    (a batch's lines share one slot: one upsert per insert). The overview's rate, totals and charts read these instead of
    counting lines, so they cost the same at a billion lines as at a thousand."""

    __tablename__ = "line_counts"
    stream_id: int = Field(foreign_key="streams.id", ondelete="CASCADE", primary_key=True)
    slot: int = Field(primary_key=True)  # epoch seconds of received_at // SLOT_SECONDS
    n: int = Field(default=0, nullable=False)


SLOT_SECONDS = 10  # LineCount's and TemplateCount's resolution


class TemplateCount(SQLModel, table=True):
    """Lines per stream, template and 10-second slot of `received_at`, kept by `store.insert_lines`
    (one upsert per template and batch). The anomaly detail page reads its reasons from here ("new
    template", "never in training data", "burst") instead of counting a template's lines."""

    __tablename__ = "template_counts"
    stream_id: int = Field(foreign_key="streams.id", ondelete="CASCADE", primary_key=True)
    template_id: int = Field(primary_key=True)
    slot: int = Field(primary_key=True)  # epoch seconds of received_at // SLOT_SECONDS
    n: int = Field(default=0, nullable=False)
    n_train: int = Field(default=0, nullable=False)  # of them train-mode lines (their severity never changes)
    first_line_id: int = Field(sa_column=Column(LineId, nullable=False))  # the slot's first line of the template


class Anomaly(SQLModel, table=True):
    """Something an operator should look at: a flagged line, or a window LogGPT flagged."""

    __tablename__ = "anomalies"
    __table_args__ = (
        Index("ix_anomalies_stream_id_status_created_at", "stream_id", "status", "created_at"),
        Index("ix_anomalies_stream_id_status_id", "stream_id", "status", "id"),  # a status's anomalies after an id
    )
    id: int | None = Field(default=None, primary_key=True)
    stream_id: int = _stream_fk()
    line_id: int | None = Field(
        default=None, sa_column=Column(LineId, ForeignKey("log_lines.id", ondelete="CASCADE"), index=True)
    )
    window_id: int | None = Field(default=None, foreign_key="windows.id", ondelete="SET NULL", index=True)
    template_id: int | None = Field(default=None, nullable=True)
    kind: str = Field(default="line", max_length=16, nullable=False)  # line / window
    severity: str = Field(max_length=16, nullable=False)  # watch / danger
    status: str = Field(default="open", max_length=16, nullable=False)  # open/confirmed/refuted/muted
    reasons: dict = _json()  # rapid score, nearest normal, LogGPT misses ...
    created_at: datetime = _created()
    updated_at: datetime = _created()
    # its incident (no foreign key: migration 0014 says why); NULL: stored without `store.route_anomalies`
    incident_id: int | None = Field(default=None, nullable=True, index=True)


INCIDENT_STATUSES = ("open", "acknowledged", "resolved")


class Incident(SQLModel, table=True):
    """A run of one stream's anomalies, each within `incident_gap_seconds` of the one before
    (`store.assign_incidents` opens and extends it as anomalies are stored): what an operator
    acknowledges, assigns and resolves. `severity`: the worst of its anomalies; `title`: the
    masked line of its first one; resolved by hand, or once none of its anomalies is open."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_stream_id_status_id", "stream_id", "status", "id"),  # a stream's newest unresolved one
        Index("ix_incidents_status_id", "status", "id"),  # the list by status, newest first
    )
    id: int | None = Field(default=None, primary_key=True)
    stream_id: int = _stream_fk()
    status: str = Field(default="open", max_length=16, nullable=False)  # open / acknowledged / resolved
    severity: str = Field(default="watch", max_length=16, nullable=False)  # watch / danger
    title: str = Field(default="", max_length=255, nullable=False)
    template_id: int | None = Field(default=None, nullable=True)  # its first anomaly's
    assignee: str | None = Field(default=None, max_length=128, nullable=True)
    n_anomalies: int = Field(default=0, nullable=False)
    opened_at: datetime = _created()  # its first anomaly's created_at
    last_seen_at: datetime = _created()  # its newest anomaly's created_at
    acknowledged_at: datetime | None = _when()
    resolved_at: datetime | None = _when()
    resolved_by: str | None = Field(default=None, max_length=128, nullable=True)  # an actor, or "auto"
    updated_at: datetime = _created()


class IncidentNote(SQLModel, table=True):
    """A note an operator wrote on an incident."""

    __tablename__ = "incident_notes"
    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incidents.id", ondelete="CASCADE", index=True, nullable=False)
    author: str = Field(max_length=128, nullable=False)
    text: str = Field(nullable=False)
    created_at: datetime = _created()


class Feedback(SQLModel, table=True):
    """An operator's verdict on an anomaly: label normal (refute) or anomaly (confirm)."""

    __tablename__ = "feedback"
    id: int | None = Field(default=None, primary_key=True)
    anomaly_id: int = Field(foreign_key="anomalies.id", ondelete="CASCADE", index=True, nullable=False)
    label: str = Field(max_length=16, nullable=False)  # normal / anomaly
    scope: str = Field(default="line", max_length=16, nullable=False)  # line / template
    suppress_until: datetime | None = _when()
    note: str | None = Field(default=None, nullable=True)
    actor: str | None = Field(default=None, max_length=128, nullable=True)  # API key name or user
    created_at: datetime = _created()


class TemplateMute(SQLModel, table=True):
    """Alerts from this template are muted until `until`; the model is not taught anything."""

    __tablename__ = "template_mutes"
    __table_args__ = (UniqueConstraint("stream_id", "template_id", name="uq_template_mutes_stream_id_template_id"),)
    id: int | None = Field(default=None, primary_key=True)
    stream_id: int = _stream_fk()
    template_id: int = Field(nullable=False)
    until: datetime = Field(sa_type=UtcDateTime, nullable=False)
    actor: str | None = Field(default=None, max_length=128, nullable=True)
    created_at: datetime = _created()


class IngestKey(SQLModel, table=True):
    """A batch posted with an `Idempotency-Key`: its answer, stored in the batch's own transaction,
    so a retry whose first answer was lost is answered from it instead of stored twice."""

    __tablename__ = "ingest_keys"
    __table_args__ = (UniqueConstraint("stream_id", "key", name="uq_ingest_keys_stream_id_key"),)
    id: int | None = Field(default=None, primary_key=True)
    stream_id: int = _stream_fk()
    key: str = Field(max_length=255, nullable=False)
    status: int = Field(nullable=False)
    answer: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False, index=True)


class TemplateReview(SQLModel, table=True):
    """The training review (`models.review`): a template of train-mode data that looks like an
    incident, and what an operator said of it (status unconfirmed / normal / anomaly). A negative
    `template_id` names a rare session shape (`shape`: its template ids)."""

    __tablename__ = "template_reviews"
    __table_args__ = (UniqueConstraint("stream_id", "template_id", name="uq_template_reviews_stream_id_template_id"),)
    id: int | None = Field(default=None, primary_key=True)
    stream_id: int = _stream_fk()
    template_id: int = Field(nullable=False)
    status: str = Field(default="unconfirmed", max_length=16, nullable=False)
    reasons: list = _json(list)
    n_lines: int = Field(default=0, nullable=False)
    n_windows: int = Field(default=0, nullable=False)
    first_ts: float | None = Field(default=None, nullable=True)
    last_ts: float | None = Field(default=None, nullable=True)
    example: str = Field(default="", nullable=False)
    shape: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))  # a session shape's template ids
    created_at: datetime = _created()
    answered_at: datetime | None = _when()
    actor: str | None = Field(default=None, max_length=128, nullable=True)


class Job(SQLModel, table=True):
    """A background job (training, nightly fine-tune, rollback) with its progress in [0, 1]."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_stream_id_state", "stream_id", "state"),)
    id: int | None = Field(default=None, primary_key=True)
    stream_id: int | None = Field(default=None, foreign_key="streams.id", ondelete="CASCADE")
    kind: str = Field(max_length=32, nullable=False)  # train / nightly / ...
    state: str = Field(default="queued", max_length=16, nullable=False)  # queued/running/done/failed
    progress: float = Field(default=0.0, nullable=False)
    message: str | None = Field(default=None, nullable=True)
    error: str | None = Field(default=None, nullable=True)
    result: dict | None = _json(None)
    created_at: datetime = _created()
    started_at: datetime | None = _when()
    finished_at: datetime | None = _when()
    owner: str | None = Field(default=None, max_length=128, nullable=True)  # the node running it (a cluster)


class ModelVersion(SQLModel, table=True):
    """One trained artifact (LogGPT checkpoint or RAPID index) of a stream; `live` marks the one in use."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("stream_id", "kind", "version", name="uq_model_versions_stream_id_kind_version"),
    )
    id: int | None = Field(default=None, primary_key=True)
    stream_id: int = _stream_fk()
    kind: str = Field(max_length=16, nullable=False)  # loggpt / rapid
    version: int = Field(nullable=False)
    path: str = Field(nullable=False)  # relative to the stream's directory
    metrics: dict = _json()  # validation metrics, and why it was (not) promoted
    live: bool = Field(default=False, nullable=False)
    job_id: int | None = Field(default=None, foreign_key="jobs.id", ondelete="SET NULL")
    created_at: datetime = _created()


class User(SQLModel, table=True):
    """A web UI user (the UI issue); password_hash is a salted KDF string, never the password."""

    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, nullable=False)
    password_hash: str = Field(max_length=255, nullable=False)
    created_at: datetime = _created()
    role: str = Field(default="operator", max_length=16, nullable=False)  # server.users.ROLES: viewer/operator/admin


class UserSession(SQLModel, table=True):
    """A web UI login: the signed cookie carries a random token, `id` is its sha256 (server.users).
    Logout revokes it; a new password or deleting the user revokes every one of the user's."""

    __tablename__ = "user_sessions"
    id: str = Field(max_length=64, primary_key=True)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", nullable=False, index=True)
    created_at: datetime = _created()
    last_seen_at: datetime = _created()
    revoked: bool = Field(default=False, nullable=False)


ALERT_CHANNEL_KINDS = ("webhook", "slack", "alertmanager")
ALERT_EVENTS = ("firing", "resolved")
ALERT_STATES = ("pending", "sending", "sent", "failed")  # sending: claimed, next_attempt_at is the claim's expiry


class AlertChannel(SQLModel, table=True):
    """Where alerts go (`server.alerts`): a generic webhook (signed with `secret`), a Slack incoming
    webhook, an Alertmanager (API v2), or email over SMTP; `streams` None: every stream."""

    __tablename__ = "alert_channels"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True, nullable=False)
    kind: str = Field(max_length=16, nullable=False)  # webhook / slack / alertmanager / email
    url: str = Field(max_length=2000, nullable=False)
    secret: str | None = Field(default=None, max_length=255, nullable=True)  # webhooks: the HMAC key (never shown)
    streams: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))  # stream names; None: all
    min_severity: str = Field(default="watch", max_length=16, nullable=False)  # watch / danger
    only_new_incidents: bool = Field(default=False, nullable=False)  # only anomalies that open an incident
    digest_seconds: int | None = Field(default=None, nullable=True)  # None: each alert at once
    enabled: bool = Field(default=True, nullable=False)
    created_at: datetime = _created()


class AlertOutbox(SQLModel, table=True):
    """One alert to deliver to one channel, written in the transaction of the event (a new open
    anomaly: `firing`; its refute, confirmation or mute: `resolved`); the dispatcher sends it."""

    __tablename__ = "alert_outbox"
    __table_args__ = (
        UniqueConstraint("channel_id", "anomaly_id", "event", name="uq_alert_outbox_channel_id_anomaly_id_event"),
        Index("ix_alert_outbox_state_channel_id_id", "state", "channel_id", "id"),  # each channel's oldest undelivered
    )
    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = Field(foreign_key="alert_channels.id", ondelete="CASCADE", nullable=False)
    anomaly_id: int | None = Field(default=None, foreign_key="anomalies.id", ondelete="CASCADE", index=True)
    event: str = Field(max_length=16, nullable=False)  # firing / resolved
    payload: dict = _json()  # the alert (server.alerts.render turns it into the channel's body)
    state: str = Field(default="pending", max_length=16, nullable=False)  # pending/sending/sent/failed
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: datetime = _created()
    last_error: str | None = Field(default=None, nullable=True)
    created_at: datetime = _created()
    sent_at: datetime | None = _when()


class SearchState(SQLModel, table=True):
    """How far the full-text index of lines goes (SQLite: `line_search`, filled by `server.search`)."""

    __tablename__ = "search_state"
    id: int | None = Field(default=None, primary_key=True)
    last_line_id: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


# --------------------------------------------------------------------------- a cluster (server/cluster)


class PartitionLease(SQLModel, table=True):
    """Who owns one partition of the ingest log: one processor at a time. `epoch` grows at every
    takeover, and a batch commits only while its owner's epoch is still the row's (fencing), so
    an owner that lost its lease while paused cannot store a batch its successor also stores."""

    __tablename__ = "partition_leases"
    partition: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    owner: str | None = Field(default=None, max_length=128, nullable=True)
    epoch: int = Field(default=0, sa_type=BigInteger, nullable=False)
    expires_at: datetime = _created()


class ClusterNode(SQLModel, table=True):
    """A running process of a cluster and its role; `seen_at` is its heartbeat."""

    __tablename__ = "cluster_nodes"
    name: str = Field(primary_key=True, max_length=128)
    role: str = Field(max_length=16, nullable=False)
    started_at: datetime = _created()
    seen_at: datetime = _created()


class StreamParser(SQLModel, table=True):
    """A stream's parser (its Drain templates), committed with the batch that created templates:
    the template ids every replica reads and a new owner resumes from."""

    __tablename__ = "stream_parsers"
    stream_id: int = Field(foreign_key="streams.id", ondelete="CASCADE", primary_key=True,
                           sa_column_kwargs={"autoincrement": False})
    n_templates: int = Field(default=0, nullable=False)
    state: bytes = Field(sa_column=Column(LargeBinary, nullable=False))  # zlib'd JSON of `LogParser.to_dict`
    updated_at: datetime = _created()


class StreamEvent(SQLModel, table=True):
    """The ordered per-stream log of what changes a live model (feedback, a promoted or rolled-back
    LogGPT): every replica follows it and reloads the stream from the database."""

    __tablename__ = "stream_events"
    id: int | None = Field(default=None, sa_column=Column(LineId, primary_key=True, autoincrement=True))
    stream_id: int = Field(foreign_key="streams.id", ondelete="CASCADE", nullable=False, index=True)
    kind: str = Field(max_length=32, nullable=False)
    created_at: datetime = _created()
