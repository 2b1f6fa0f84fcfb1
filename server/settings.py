"""Server settings: one `Settings` object, read from `LOGSENSE_*` environment variables and `.env`.

Every field carries a description; `settings_table_markdown()` renders them for the README, so
the table and the code cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from logsense.models.policy import INCIDENT_GAP_SECONDS

ENV_PREFIX = "LOGSENSE_"


class Settings(BaseSettings):
    """Everything the server reads at start. Built once per app (`create_app(settings)`), never global."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    data_dir: Path = Field(
        Path("data"),
        description="Directory for the SQLite file and every model artifact (one subfolder per stream).",
    )
    database_url: str = Field(
        "",
        description="SQLAlchemy URL. Empty: `sqlite:///{data_dir}/logsense.db`. "
        "`postgresql+psycopg://user:pass@host/db` switches to PostgreSQL.",
    )
    dev_mode: bool = Field(
        False,
        description="Open `/api` without API keys. Only for local experiments; logged loudly at start.",
    )
    host: str = Field("127.0.0.1", description="Interface `logsense serve` binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port `logsense serve` listens on.")
    log_level: str = Field("info", description="Log level of the server process (debug, info, warning, ...).")

    max_lines_per_batch: int = Field(10_000, ge=1, description="Most lines one ingest request may carry (else 413).")
    max_line_bytes: int = Field(64 * 1024, ge=1, description="Longest accepted line in UTF-8 bytes (a longer line is rejected by index in `errors`; the rest of the batch is stored).")
    max_request_bytes: int = Field(
        16 * 1024 * 1024, ge=1, description="Largest accepted request body in bytes, for every route (else 413)."
    )

    loki_stream_label: str = Field(
        "service_name", min_length=1, description="The Loki label whose value names the stream a pushed "
        "entry goes to (`/loki/api/v1/push`); an entry without it goes by its `job` label.")
    push_create_streams: bool = Field(
        True, description="A Loki or OTLP push naming an unknown stream creates it (train mode, default "
        "settings: `format` auto). Off: those entries are refused (404 naming the stream).")
    syslog_port: int | None = Field(
        None, ge=1, le=65535, description="TCP port of the syslog listener (RFC 5424 and 3164, octet-counted or "
        "newline framing; `logsense serve --syslog-port N`). Unset: no listener. It has no authentication: keep it "
        "on loopback or behind the network's controls.")
    syslog_host: str = Field("127.0.0.1", description="Interface the syslog listener binds to.")
    syslog_stream_by: Literal["app", "host"] = Field(
        "app", description="What names a syslog message's stream: `app` (its APP-NAME or TAG, else its hostname) "
        "or `host` (its hostname, else its app). Sanitised to the stream-name rule; unknown streams are created "
        "as `push_create_streams` says.")

    nightly_cron: str = Field(
        "0 2 * * *", description="Default retraining schedule (crontab syntax) for streams without their own."
    )
    timezone: str = Field("UTC", description="Time zone the cron schedules are read in.")
    incident_gap_seconds: float = Field(
        INCIDENT_GAP_SECONDS, gt=0, description="Anomalies of one stream closer than this are grouped into one "
        "incident; a new anomaly of a template confirmed this recently joins the confirmed incident.")
    parse_helper: bool | None = Field(
        None, description="Mask and split headers in a helper process while ingest stores the chunk before "
        "(uses a second core; the answers are the same either way). Unset: on when the machine has 2+ CPUs.")
    inline_embed_texts: int = Field(
        32, ge=0, le=10_000, description="New masked texts one ingest request embeds itself (its lines answered "
        "with their RAPID verdict); past that, the background encoder embeds them and their lines answer "
        "`pending` until it has (usually seconds). 0: always in the background.")
    search_index: bool = Field(
        True, description="Keep SQLite's full-text index of lines up to date in the background (search finds "
        "indexed lines through it and scans the newer ones). Off: no indexing cost beside ingest; a search scans "
        "the lines newer than the index, up to 50,000.")
    worker_enabled: bool = Field(True, description="Run the in-process LogGPT worker that drains the window queue.")
    worker_threads: int = Field(
        1, ge=1, le=64, description="LogGPT worker threads; each claims its own batch of queued windows.")
    worker_poll_seconds: float = Field(
        1.0, gt=0, description="How often the worker looks for queued windows when it found none."
    )
    worker_max_attempts: int = Field(
        3, ge=1, description="A window that fails this many checks is marked failed instead of retried."
    )
    scheduler_enabled: bool = Field(True, description="Run the in-process APScheduler for nightly retraining.")
    device: str = Field("cpu", description="Torch device for the embedder and LogGPT (`cpu`, `cuda`, ...).")
    secret_key: SecretStr = Field(
        SecretStr(""),
        description="Signs the web UI's session cookies. Empty: generated once and kept in "
        "`{data_dir}/secret_key` (mode 0600).",
    )
    secure_cookies: bool = Field(
        False, description="Mark the web UI's session cookie Secure (sent over HTTPS only); set it behind TLS."
    )
    metrics_public: bool = Field(
        False, description="Serve /metrics without a key. Off: a key with the read scope (X-API-Key, or "
        "`Authorization: Bearer KEY` as Prometheus sends it); the metrics name the streams.")
    forwarded_allow_ips: str = Field(
        "", description="Reverse proxies whose `X-Forwarded-For` names the client (comma-separated addresses or "
        "networks, e.g. `127.0.0.1,10.0.0.0/8`; `*`: any peer). Empty: none; the client is the connection's peer "
        "(login throttling counts per client address).",
    )

    # alerts (server/alerts.py)
    alerts_enabled: bool = Field(
        True, description="Run the in-process alert dispatcher that sends the alert outbox to the channels of "
        "`/api/v1/alerts/channels`. Off: alerts are still queued, and sent once a server with it on runs.")
    public_url: str = Field(
        "http://127.0.0.1:8000", min_length=1, description="The server's address as the people receiving alerts "
        "reach it: alerts link to `{public_url}/anomalies/{id}`.")

    # past one machine (server/cluster)
    role: Literal["all", "api", "processor", "worker"] = Field(
        "all", description="What this process runs. `all`: everything, one process (SQLite or PostgreSQL). "
        "In a cluster (PostgreSQL and `broker_url` required): `api` takes requests and hands batches to the "
        "stream's owner over the broker; `processor` owns partitions of streams (parser, RAPID, windows) and "
        "stores their batches; `worker` checks windows with LogGPT, trains, sends alerts, runs the schedule.")
    broker_url: str = Field(
        "", description="Redis URL of the ingest log in a cluster (`redis://host:6379/0`); batches go to one of "
        "`partitions` Redis Streams by stream id. Empty with role `all`: none.")
    partitions: int = Field(
        16, ge=1, le=4096, description="Partitions of the ingest log; each has one owning processor at a time, "
        "so at most this many processors share the work. Must be the same on every node.")
    lease_seconds: float = Field(
        10.0, ge=1, description="A processor's partition lease and a worker's window claim last this long without "
        "renewal; a dead node's work moves on after it.")
    node_name: str = Field(
        "", max_length=128, description="This process's name in a cluster (leases, claims, jobs). Empty: "
        "`{hostname}-{role}-{pid}`. A stable name lets a restarted node take back its own claims at once.")
    reply_timeout_seconds: float = Field(
        30.0, gt=0, description="How long an API replica waits for the owner's answer to a batch before a 503 "
        "that tells the client to retry with the batch's Idempotency-Key.")

    @property
    def cluster(self) -> bool:
        """A process of a cluster (any role but `all`)."""
        return self.role != "all"

    def node(self) -> str:
        import os
        import socket

        return self.node_name or f"{socket.gethostname()}-{self.role}-{os.getpid()}"

    @model_validator(mode="after")
    def _default_database_url(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir}/logsense.db"
        if self.cluster and (not self.broker_url or not self.database_url.startswith("postgresql")):
            raise ValueError(f"role {self.role!r} needs a PostgreSQL database_url and a broker_url (redis://...)")
        from logsense.server.throttle import parse_trusted

        parse_trusted(self.forwarded_allow_ips)  # a ValueError naming the bad entry
        return self

    def stream_dir(self, stream_id: int) -> Path:
        """Where one stream's artifacts live: keyed by id, so a name is free to reuse after a delete."""
        return self.data_dir / "streams" / str(stream_id)


def settings_table_markdown() -> str:
    """The README's settings table: name, environment variable, default, description."""
    rows = ["| Setting | Environment variable | Default | Description |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "sqlite:///{data_dir}/logsense.db" if name == "database_url" else field.default
        if hasattr(default, "get_secret_value"):
            default = default.get_secret_value()
        if default == "" or default is None:
            shown = "(empty)" if default == "" else "(unset)"
            rows.append(f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | {shown} | {field.description} |")
            continue
        if isinstance(default, bool):
            default = str(default).lower()
        rows.append(f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(rows) + "\n"
