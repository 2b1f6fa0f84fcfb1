"""Must-show 4 and the ingest contract: bad input is a 4xx with a message (never a 500), and the
good lines of a partly bad batch are stored."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, func, select

from logsense.server import store
from logsense.server.app import create_app
from logsense.server.auth import create_api_key
from logsense.server.tables import LogLine

from .conftest import make_settings, wait_ready

LINE = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating"


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[TestClient, dict, object]]:
    settings = make_settings(tmp_path / "data", max_lines_per_batch=50, max_line_bytes=300,
                             max_request_bytes=64 * 1024, scheduler_enabled=False, worker_poll_seconds=0.1)
    app = create_app(settings)
    with TestClient(app) as client:
        wait_ready(client)
        with Session(app.state.engine) as session:
            key, _ = create_api_key(session, "ingest")
        auth = {"X-API-Key": key}
        r = client.post("/api/v1/streams", headers=auth, json={"name": "hdfs", "settings": {
            "format": "hdfs", "session_regex": r"blk_-?\d+", "train_mode": False}})
        assert r.status_code == 201
        yield client, auth, app


def _stored(app) -> int:
    """Lines in the database; line_counts (what the overview reads) and template_counts (what the
    anomaly page reads) must agree with them."""
    with Session(app.state.engine) as session:
        n = session.exec(select(func.count(LogLine.id))).one()
        assert sum(store.line_totals(session).values()) == n
        by_template = session.execute(text(
            "SELECT stream_id, template_id, count(*), sum(severity = 'train'), min(id) FROM log_lines "
            "WHERE template_id IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2")).all()
        counted = session.execute(text(
            "SELECT stream_id, template_id, sum(n), sum(n_train), min(first_line_id) FROM template_counts "
            "GROUP BY 1, 2 ORDER BY 1, 2")).all()
        assert [tuple(r) for r in counted] == [tuple(r) for r in by_template]
        return n


def _is_4xx_with_message(r, code: int | None = None) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if code is not None:
        assert r.status_code == code, (r.status_code, r.text)
    body = r.json()
    message = body.get("message") or body.get("detail")
    assert message, body


def test_lines_json_text_and_records_are_stored_with_verdicts(served) -> None:
    client, auth, app = served
    r = client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"lines": [LINE, LINE]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["rejected"] == 0
    first = body["lines"][0]
    assert first["id"] > 0 and first["template_id"] is not None and first["template"]
    assert first["severity"] in ("normal", "watch") and 0.0 <= first["rapid_score"] <= 1.0 and first["pending"]
    r = client.post("/api/v1/streams/hdfs/logs", headers={**auth, "Content-Type": "text/plain"},
                    content=(LINE + "\n\n" + LINE + "\r\n").encode())
    assert r.status_code == 200 and [x["index"] for x in r.json()["lines"]] == [0, 2]
    r = client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"records": [
        {"message": LINE, "timestamp": "2008-11-09T20:36:15Z", "session": "job-1", "attributes": {"host": "a"}}]})
    assert r.status_code == 200, r.text
    with Session(app.state.engine) as session:
        row = session.get(LogLine, r.json()["lines"][0]["id"])
    assert row.sessions == ["job-1"] and row.attributes == {"host": "a"} and row.timestamp == 1226262975.0
    assert _stored(app) == 5


@pytest.mark.parametrize("body, content_type, code", [
    (b'{"lines": ["a", ', "application/json", 400),  # malformed JSON
    (b"\xff\xfe\x00garbage\x80", "application/json", 400),  # binary junk as JSON
    (b'{"lines": "not a list"}', "application/json", 422),  # wrong type
    (b'{"lines": []}', "application/json", 422),  # empty
    (b'{"lines": ["a"], "records": []}', "application/json", 422),  # both
    (b'{"rows": ["a"]}', "application/json", 422),  # unknown field
    (b'[1, 2, 3]', "application/json", 422),  # not an object
    (b'{"lines": [1, null, {"x": 2}]}', "application/json", 422),  # wrong item types, none storable
    (b'{"records": [{"message": 5}, {"timestamp": "x"}]}', "application/json", 422),
    (os.urandom(512).replace(b"\n", b"") + b"\x00\xff", "text/plain", 422),  # binary junk as text
    (b"<xml/>", "application/xml", 415),
])
def test_bad_bodies_are_4xx_with_a_message(served, body: bytes, content_type: str, code: int) -> None:
    client, auth, app = served
    r = client.post("/api/v1/streams/hdfs/logs", headers={**auth, "Content-Type": content_type}, content=body)
    _is_4xx_with_message(r, code)
    assert _stored(app) == 0


def test_partly_bad_batch_stores_the_good_lines(served) -> None:
    client, auth, app = served
    lines = [LINE, 42, "x" * 400, "", "bad \x00 nul", LINE.replace("148", "149")]
    r = client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"lines": lines})
    assert r.status_code == 207, r.text
    body = r.json()
    assert [x["index"] for x in body["lines"]] == [0, 5]
    errors = {e["index"]: e["error"] for e in body["errors"]}
    assert set(errors) == {1, 2, 3, 4}
    assert "max_line_bytes" in errors[2] and "string" in errors[1]
    assert _stored(app) == 2
    r = client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"records": [
        {"message": LINE}, {"message": LINE, "timestamp": True}, {"message": LINE, "session": [1]},
        {"message": LINE, "extra": 1}, "text"]})
    assert r.status_code == 207 and r.json()["accepted"] == 1 and len(r.json()["errors"]) == 4
    assert _stored(app) == 3


@pytest.mark.parametrize("odd", ["", " ", "\t\r", "a\x00b", "\u00e9" * 20, "\u00e9" * 40, "x" * 64, "x" * 65, 7,
                                 None, "\udc80"])
def test_the_bulk_check_of_a_batch_agrees_with_the_check_of_each_line(odd, monkeypatch) -> None:
    """A batch of plain lines is checked in bulk (`_all_clean`); one odd line among them sends
    the batch through the per-line checks, which say the same of every line."""
    import json

    import orjson

    from logsense.server import batch as api
    from logsense.server.settings import Settings

    settings = Settings(_env_file=None, max_line_bytes=64)
    clean = [LINE[:64], "x" * 16, "short one"]
    body = json.dumps({"lines": [*clean, odd]}).encode()  # json: it can write a lone surrogate
    batch = api.parse_body(body, "application/json", settings)
    problem = api._check_text(odd, settings) if isinstance(odd, str) else "a line must be a string"
    assert batch.indexes == [0, 1, 2, *([] if problem else [3])]
    assert batch.messages == [*clean, *([] if problem else [odd])]
    assert [e["index"] for e in batch.errors] == ([3] if problem else [])
    if problem:
        assert batch.errors[0]["error"].startswith(problem.split(" (")[0])

    def per_line(*_):  # a batch of clean lines must not need it
        raise AssertionError("checked line by line")

    monkeypatch.setattr(api, "_check_text", per_line)
    batch = api.parse_body(orjson.dumps({"lines": clean * 100}), "application/json", settings)
    assert batch.messages == clean * 100 and batch.indexes == list(range(300)) and not batch.errors


def test_oversized_batches_and_bodies(served) -> None:
    client, auth, app = served
    r = client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"lines": [LINE] * 51})
    _is_4xx_with_message(r, 413)
    assert "max_lines_per_batch" in r.json()["detail"]
    r = client.post("/api/v1/streams/hdfs/logs", headers={**auth, "Content-Type": "text/plain"},
                    content=("\n".join([LINE] * 51)).encode())
    _is_4xx_with_message(r, 413)
    r = client.post("/api/v1/streams/hdfs/logs", headers={**auth, "Content-Type": "text/plain"},
                    content=b"a" * (65 * 1024))
    _is_4xx_with_message(r, 413)
    assert "max_request_bytes" in r.json()["detail"]
    assert _stored(app) == 0


def test_unknown_stream_and_api_keys(served) -> None:
    client, auth, app = served
    r = client.post("/api/v1/streams/nope/logs", headers=auth, json={"lines": [LINE]})
    _is_4xx_with_message(r, 404)
    assert "nope" in r.json()["detail"]
    r = client.post("/api/v1/streams/hdfs/logs", json={"lines": [LINE]})
    _is_4xx_with_message(r, 401)
    assert "missing API key" in r.json()["detail"]
    r = client.post("/api/v1/streams/hdfs/logs", headers={"X-API-Key": "ls_wrong"}, json={"lines": [LINE]})
    _is_4xx_with_message(r, 401)
    for path in ("/api/v1/anomalies", "/api/v1/jobs", "/api/v1/streams/hdfs/lines", "/api/v1/streams/hdfs/windows",
                 "/api/v1/streams/hdfs/models"):
        assert client.get(path).status_code == 401, path
    assert client.post("/api/v1/anomalies/1/feedback", json={"label": "normal"}).status_code == 401
    assert _stored(app) == 0


def test_bad_feedback_and_unknown_ids(served) -> None:
    client, auth, app = served
    _is_4xx_with_message(client.post("/api/v1/anomalies/999/feedback", headers=auth, json={"label": "normal"}), 404)
    _is_4xx_with_message(client.post("/api/v1/anomalies/999/feedback", headers=auth, json={"label": "maybe"}), 422)
    _is_4xx_with_message(client.post("/api/v1/anomalies/abc/feedback", headers=auth, json={"label": "normal"}), 422)
    _is_4xx_with_message(client.get("/api/v1/jobs/999", headers=auth), 404)
    _is_4xx_with_message(client.post("/api/v1/streams/hdfs/models/3/rollback", headers=auth), 404)
    _is_4xx_with_message(client.get("/api/v1/anomalies", headers=auth, params={"severity": "huge"}), 422)
    _is_4xx_with_message(client.get("/api/v1/streams/hdfs/lines", headers=auth, params={"after_id": -1}), 422)


def test_feedback_while_models_load_is_a_503_that_records_nothing(served, monkeypatch) -> None:
    client, auth, app = served
    r = client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"lines": [LINE.replace("PacketResponder 1", "odd words")]})
    assert r.status_code == 200
    anomaly = client.get("/api/v1/anomalies", headers=auth).json()[0]

    from logsense.server.registry import ModelsUnavailable

    def loading(_stream):  # noqa: ANN001, ANN202
        raise ModelsUnavailable("detection models are still loading; retry shortly")

    monkeypatch.setattr(app.state.registry, "get", loading)
    r = client.post(f"/api/v1/anomalies/{anomaly['id']}/feedback", headers=auth, json={"label": "normal"})
    assert r.status_code == 503 and r.headers["retry-after"] and "loading" in r.json()["detail"]
    assert client.get(f"/api/v1/anomalies/{anomaly['id']}", headers=auth).json()["status"] == "open"
    r = client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"lines": [LINE]})
    assert r.status_code == 503
    monkeypatch.undo()
    r = client.post(f"/api/v1/anomalies/{anomaly['id']}/feedback", headers=auth, json={"label": "normal"})
    assert r.status_code == 200 and r.json()["status"] == "refuted"


def test_feedback_can_mute_without_teaching(served) -> None:
    client, auth, app = served
    odd = LINE.replace("PacketResponder 1", "odd words")
    client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"lines": [odd]})
    anomaly = client.get("/api/v1/anomalies", headers=auth).json()[0]
    _is_4xx_with_message(client.post(f"/api/v1/anomalies/{anomaly['id']}/feedback", headers=auth, json={}), 422)
    r = client.post(f"/api/v1/anomalies/{anomaly['id']}/feedback", headers=auth,
                    json={"suppress_until": "2999-01-01T00:00:00Z"})
    assert r.status_code == 200 and r.json()["status"] == "muted", r.text
    again = client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"lines": [odd]}).json()["lines"][0]
    assert again["rapid_flag"] is True  # not taught: RAPID still finds it odd ...
    newest = client.get("/api/v1/anomalies", headers=auth, params={"status": "muted"}).json()
    assert [a["line_id"] for a in newest][-1] == again["id"]  # ... but its alert is muted
