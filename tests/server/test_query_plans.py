"""The listings that page by id use an index that stops at the page, not a sort of all history.

The SQL is captured from real requests and explained by SQLite's planner (no ANALYZE, as in
production). A temporary B-tree over the table, or a scan of it, grows with every line ever
stored: 127 ms for the windows listing at 1.1M lines before migration 0002.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from .helpers import query_plan, selects_on


def _explained(app: FastAPI, client: TestClient, auth: dict, path: str, table: str) -> str:
    """The query plan of the paged SELECT on `table` (the last with an ORDER BY) that GET `path` runs."""
    with selects_on(app.state.engine, table) as seen:
        assert client.get(path, headers=auth).status_code == 200
    paged = [(st, p) for st, p in seen if "ORDER BY" in st]
    assert paged, f"GET {path} ran no paged SELECT on {table}"
    return query_plan(app.state.engine, *paged[-1])


def test_pending_windows_and_anomalies_are_listed_through_their_indexes(app, client, auth):
    assert client.post("/api/v1/streams", json={"name": "svc", "settings": {"window_size": 2}},
                       headers=auth).status_code == 201
    plan = _explained(app, client, auth, "/api/v1/streams/svc/windows?limit=10", "windows")
    assert "ix_windows_stream_id_state_id" in plan and "SCAN" not in plan, plan
    plan = _explained(app, client, auth, "/api/v1/anomalies?stream=svc&status=open&limit=10", "anomalies")
    assert "ix_anomalies_stream_id_status_id" in plan and "TEMP B-TREE" not in plan, plan


def test_lines_of_one_severity_are_listed_through_the_partial_index(app, client, auth):
    """`/lines?severity=` for train, watch or danger walks ix_log_lines_not_normal, which leaves
    the (many) normal lines out so that ingest inserts less; normal lines are walked by id."""
    assert client.post("/api/v1/streams", json={"name": "svc"}, headers=auth).status_code == 201
    for severity in ("train", "watch", "danger"):
        plan = _explained(app, client, auth, f"/api/v1/streams/svc/lines?severity={severity}&limit=10", "log_lines")
        assert "ix_log_lines_not_normal" in plan and "TEMP B-TREE" not in plan, (severity, plan)
    plan = _explained(app, client, auth, "/api/v1/streams/svc/lines?severity=normal&limit=10", "log_lines")
    assert "ix_log_lines_stream_id_id" in plan and "TEMP B-TREE" not in plan, plan
