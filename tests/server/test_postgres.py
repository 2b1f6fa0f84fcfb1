"""Ingest on a real PostgreSQL: the COPY and sequence paths of `server.store`, the migrations, the
counts tables. On the server LOGSENSE_TEST_POSTGRES_URL names (its user may create databases;
each test gets a fresh one), else on one the tests start from Debian's postgresql package;
skipped, saying why, when neither can be had."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "server_hdfs.log"


@pytest.fixture
def pg_url(postgres_admin_url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(postgres_admin_url)
    name = f"logsense_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_ingest_on_postgresql_stores_lines_windows_and_counts(pg_url: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import text
    from sqlmodel import Session

    from logsense.server import store
    from logsense.server.app import create_app
    from logsense.server.auth import create_api_key

    from .conftest import make_settings, wait_ready

    lines = FIXTURE.read_text().splitlines()[:600]
    app = create_app(make_settings(tmp_path / "data", database_url=pg_url, scheduler_enabled=False,
                                   worker_enabled=False))
    with TestClient(app) as client:
        wait_ready(client)
        assert app.state.engine.dialect.name == "postgresql"
        with Session(app.state.engine) as s:
            key, _ = create_api_key(s, "pg")
        auth = {"X-API-Key": key}
        assert client.post("/api/v1/streams", headers=auth, json={"name": "hdfs", "settings": {
            "format": "hdfs", "session_regex": r"blk_-?\d+", "train_mode": True}}).status_code == 201
        accepted = 0
        for start in range(0, 400, 100):
            r = client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"lines": lines[start : start + 100]})
            assert r.status_code == 200, r.text
            accepted += r.json()["accepted"]
        assert client.patch("/api/v1/streams/hdfs", headers=auth,
                            json={"settings": {"train_mode": False}}).status_code == 200
        r = client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"lines": lines[400:]})
        assert r.status_code == 200, r.text
        body = r.json()
        accepted += body["accepted"]
        ids = [x["id"] for x in body["lines"]]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)  # ids from the sequence, in the order posted
        with Session(app.state.engine) as s:
            q = lambda sql: s.execute(text(sql)).all()  # noqa: E731
            assert q("SELECT count(*) FROM log_lines") == [(accepted,)] == q("SELECT sum(n) FROM line_counts")
            assert q("SELECT stream_id, template_id, sum(n), sum(n_train), min(first_line_id) FROM template_counts "
                     "GROUP BY 1, 2 ORDER BY 1, 2") == q(
                "SELECT stream_id, template_id, count(*), sum(CASE WHEN severity = 'train' THEN 1 ELSE 0 END), "
                "min(id) FROM log_lines WHERE template_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2")
            keyed = q("SELECT sum(json_array_length(sessions)) FROM log_lines")[0][0]
            assert keyed > 0 and q("SELECT count(*) FROM window_lines") == [(keyed,)]
            assert q("SELECT count(*) FROM anomalies") == q("SELECT count(*) FROM log_lines WHERE rapid_flag")
            assert q("SELECT count(*) FROM log_lines WHERE severity = 'train'") == [(400,)]
            sid, tid, first = q("SELECT stream_id, template_id, min(id) FROM log_lines GROUP BY 1, 2 LIMIT 1")[0]
            assert store.template_first_line(s, sid, tid) == first and store.template_has_normal(s, sid, tid)
