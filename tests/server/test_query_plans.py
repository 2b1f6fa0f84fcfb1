"""The listings that page by id use an index that stops at the page, not a sort of all history.

The SQL is captured from real requests and explained by SQLite's planner (no ANALYZE, as in
production). A temporary B-tree over the table, or a scan of it, grows with every line ever
stored: 127 ms for the windows listing at 1.1M lines before migration 0002.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event


def _explained(app: FastAPI, client: TestClient, auth: dict, path: str, table: str) -> str:
    """The query plan of the SELECT on `table` that GET `path` runs."""
    engine = app.state.engine
    seen: list[tuple[str, tuple]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement and "ORDER BY" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        assert client.get(path, headers=auth).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert seen, f"GET {path} ran no paged SELECT on {table}"
    statement, parameters = seen[-1]
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    return " | ".join(str(r[-1]) for r in rows)


def test_pending_windows_and_anomalies_are_listed_through_their_indexes(app, client, auth):
    assert client.post("/api/v1/streams", json={"name": "svc", "settings": {"window_size": 2}},
                       headers=auth).status_code == 201
    plan = _explained(app, client, auth, "/api/v1/streams/svc/windows?limit=10", "windows")
    assert "ix_windows_stream_id_state_id" in plan and "SCAN" not in plan, plan
    plan = _explained(app, client, auth, "/api/v1/anomalies?stream=svc&status=open&limit=10", "anomalies")
    assert "ix_anomalies_stream_id_status_id" in plan and "TEMP B-TREE" not in plan, plan
