"""Shared helpers of the server tests: the HDFS slice, a tiny LogGPT config, waiting for the worker."""

from __future__ import annotations

import csv
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HDFS_LOG = FIXTURES / "server_hdfs.log"
HDFS_LABELS = FIXTURES / "server_hdfs.labels.csv"
BLK = re.compile(r"blk_-?\d+")
BLOCK_REGEX = r"blk_-?\d+"

# Small enough to train in seconds on 2 CPU cores (fields of models.loggpt.LogGPTConfig).
TINY_LOGGPT = {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 64, "max_epochs": 8, "batch_size": 32,
               "lr": 3e-3, "patience": 2, "device": "cpu", "seed": 0, "dropout": 0.0}


# The fixtures hold 9 to 25 held-back windows: K is calibrated at 50% here (20 windows needed,
# models.stream.EXPECTED_FALSE_POSITIVES), or the product keeps a first model back as uncalibrated.
SMALL_FIXTURE_FPR = 0.5
# The smallest ones (9 to 14 windows) are too small even for that: their streams fix K instead.
SMALL_FIXTURE_K = 2


def tiny_loggpt_config() -> dict:
    return dict(TINY_LOGGPT)


def hdfs_slice() -> tuple[list[str], dict[str, str]]:
    """The HDFS fixture lines and {block id: "Normal" | "Anomaly"}."""
    if not HDFS_LOG.exists():
        pytest.skip(f"{HDFS_LOG} is missing: run scripts/cut_hdfs_slice.py")
    labels = {r["BlockId"]: r["Label"] for r in csv.DictReader(open(HDFS_LABELS))}
    return HDFS_LOG.read_text().splitlines(), labels


def wait_for(predicate, timeout: float = 120.0, every: float = 0.1, what: str = "condition"):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def wait_job(client: TestClient, auth: dict, job_id: int, timeout: float = 180.0, promoted: bool | None = None) -> dict:
    def done() -> dict | None:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()
        return job if job["state"] in ("done", "failed") else None

    job = wait_for(done, timeout, 0.2, f"job {job_id}")
    assert job["state"] == "done", job
    if promoted is not None:
        assert (job["result"] or {}).get("promoted") == promoted, job["message"]
    return job


def wait_checked(client: TestClient, auth: dict, stream: str, timeout: float = 120.0) -> None:
    """Until no window of the stream is queued or being checked."""
    def idle() -> bool:
        counts = client.get(f"/api/v1/streams/{stream}/windows", headers=auth).json()["counts"]
        return counts["queued"] == 0 and counts["checking"] == 0

    wait_for(idle, timeout, 0.2, f"the LogGPT checks of {stream}")


def post_lines(client: TestClient, auth: dict, stream: str, lines: list[str], batch: int = 500) -> list[dict]:
    out = []
    for start in range(0, len(lines), batch):
        r = client.post(f"/api/v1/streams/{stream}/logs", json={"lines": lines[start : start + batch]}, headers=auth)
        assert r.status_code == 200, r.text
        out.extend(r.json()["lines"])
    return out


@contextmanager
def selects_on(engine: Engine, table: str) -> Iterator[list[tuple[str, tuple]]]:
    """The (statement, parameters) of every SELECT from `table` run on `engine` inside the block."""
    seen: list[tuple[str, tuple]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", capture)


def query_plan(engine: Engine, statement: str, parameters: tuple) -> str:
    """SQLite's EXPLAIN QUERY PLAN of a captured statement, its steps joined by " | "."""
    with engine.connect() as conn:
        return " | ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters))


class LiveServer:
    """The app under uvicorn in a thread on 127.0.0.1 (a real socket, for real clients), a fresh
    data directory and an admin key; `settings` as `conftest.make_settings` takes them."""

    def __init__(self, data_dir: Path, name: str = "live", **settings) -> None:  # noqa: ANN003
        import threading

        import uvicorn

        from logsense.server.app import create_app
        from logsense.server.client import free_port

        from .conftest import make_settings

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(make_settings(data_dir, worker_poll_seconds=0.1, scheduler_enabled=False, **settings))
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"{name}-uvicorn", daemon=True)

    def start(self, timeout: float = 180.0) -> "LiveServer":
        import httpx

        self.thread.start()

        def ready() -> bool:
            if not self.thread.is_alive():
                raise AssertionError("the server thread died")
            try:
                return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout, 0.1, "the server to get ready")
        self.key = self.make_key("admin")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)

    def make_key(self, name: str, scopes: list[str] | None = None, streams: list[str] | None = None) -> str:
        from sqlmodel import Session

        from logsense.server.auth import create_api_key

        with Session(self.app.state.engine) as session:
            key, _ = create_api_key(session, name, scopes, streams)
        return key

    def lines(self, stream: str, missing_ok: bool = False) -> list:
        """The stream's stored lines (`LogLine` rows) in order; a missing stream fails unless `missing_ok`."""
        from sqlmodel import Session, select

        from logsense.server.tables import LogLine, Stream

        with Session(self.app.state.engine) as session:
            stream_id = session.exec(select(Stream.id).where(Stream.name == stream)).first()
            if stream_id is None:
                assert missing_ok, f"no stream {stream!r}"
                return []
            return list(session.exec(select(LogLine).where(LogLine.stream_id == stream_id).order_by(LogLine.id)).all())


@contextmanager
def live_server(data_dir: Path, name: str, cls: type = LiveServer, **settings) -> Iterator:  # noqa: ANN003
    """A started `cls` (a `LiveServer`), without the developer's LOGSENSE_* variables (as conftest),
    stopped after."""
    with no_logsense_env():
        server = cls(data_dir, name, **settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def no_logsense_env() -> Iterator[None]:
    """The developer's LOGSENSE_* variables kept out inside the block, as conftest's autouse
    fixture does for each test: a module-scoped fixture starts before it."""
    import os

    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("LOGSENSE_")]:
            mp.delenv(name)
        yield


@contextmanager
def started_app(data_dir: Path, **settings) -> Iterator[tuple[TestClient, FastAPI]]:  # noqa: ANN003
    """A real app, ready, without its worker and scheduler unless `settings` (as
    `conftest.make_settings` takes them) turn them on, and without the developer's LOGSENSE_*
    variables: yields (client, app). For module-scoped fixtures: one app for a module's tests."""
    from logsense.server.app import create_app

    from .conftest import make_settings, wait_ready

    with no_logsense_env():
        app = create_app(make_settings(data_dir, **{"worker_enabled": False, "scheduler_enabled": False, **settings}))
        with TestClient(app) as client:
            wait_ready(client)
            yield client, app


@contextmanager
def quiet_app(data_dir: Path, scopes: tuple[str, ...] = ("read", "operate", "admin")) -> Iterator[tuple]:
    """A real app without its worker and scheduler (the test drives them), ready, with an API key
    per scope: yields (client, app, {scope: auth headers}). The developer's LOGSENSE_* variables
    are kept out."""
    from sqlmodel import Session

    from logsense.server.auth import create_api_key

    with started_app(data_dir) as (client, app):
        with Session(app.state.engine) as s:
            keys = {scope: {"X-API-Key": create_api_key(s, f"k-{scope}", [scope])[0]} for scope in scopes}
        yield client, app, keys


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """A server process ended: asked to stop (SIGTERM), killed if it has not within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
