"""Fixtures for server tests: a real SQLite file in tmp_path, real migrations, a TestClient."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from logsense.server.app import create_app
from logsense.server.auth import create_api_key
from logsense.server.settings import Settings


@pytest.fixture(autouse=True)
def _no_logsense_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's LOGSENSE_* variables must not leak into the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("LOGSENSE_"):
            monkeypatch.delenv(name)


PG_URL = os.environ.get("LOGSENSE_TEST_POSTGRES_URL")  # read at import: the fixture above clears LOGSENSE_*


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL server whose user may create databases: the one LOGSENSE_TEST_POSTGRES_URL
    names, else one started from Debian's package for the session; skipped when neither can be had."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver (pip install 'logsense[postgres]')")
    if PG_URL:
        yield PG_URL
        return
    from logsense.server.bench.backing import postgres

    with postgres() as url:
        if url is None:
            pytest.skip("no PostgreSQL: set LOGSENSE_TEST_POSTGRES_URL or install Debian's postgresql package")
        yield url


def make_settings(data_dir: Path, **overrides) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, **overrides)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


def wait_ready(c: TestClient, timeout: float = 120.0) -> None:
    """Wait until /readyz says 200 (the embedder and stream models load in a background thread)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        r = c.get("/readyz")
        if r.status_code == 200:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"server not ready after {timeout} s: {r.text}")
        time.sleep(0.05)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:  # runs the lifespan: migrations, engine, registry, worker
        wait_ready(c)
        yield c


@pytest.fixture
def api_key(client: TestClient, app: FastAPI) -> str:
    with Session(app.state.engine) as session:
        key, _ = create_api_key(session, "tests")
    return key


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"X-API-Key": api_key}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, dict, FastAPI]]:
    """A started app with the worker polling fast and no scheduler, and an API key header."""
    app = create_app(make_settings(tmp_path / "data", worker_poll_seconds=0.1, scheduler_enabled=False))
    with TestClient(app) as client:
        wait_ready(client)
        with Session(app.state.engine) as session:
            key, _ = create_api_key(session, "test")
        yield client, {"X-API-Key": key}, app
