"""Search over stored lines: words, phrases, prefixes, attributes, stream, severity, log time,
paging; lines found before and after the background indexer reached them; deletes keep the
index sound; bad filters are 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, text
from sqlmodel import Session

from logsense.server import search, store
from logsense.server.app import create_app
from logsense.server.auth import create_api_key
from logsense.server.tables import LogLine

from .conftest import make_settings, wait_ready
from .helpers import wait_for

RECORDS = [
    {"message": "2026-12-07T10:00:00Z ERROR payment gateway timeout after 300 ms", "attributes": {"host": "web-1"}},
    {"message": "2026-12-07T10:00:01Z INFO user alice logged in", "attributes": {"host": "web-2"}},
    {"message": "2026-12-07T11:00:01Z WARN payment retry scheduled", "attributes": {"host": "web-1"}},
    {"message": "2026-12-07T11:30:00Z INFO paymentservice started", "attributes": {"host": "web-3"}},
]


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[TestClient, dict, object]]:
    app = create_app(make_settings(tmp_path / "data", scheduler_enabled=False, worker_poll_seconds=0.1))
    with TestClient(app) as client:
        wait_ready(client)
        with Session(app.state.engine) as session:
            key, _ = create_api_key(session, "search")
        auth = {"X-API-Key": key}
        for name in ("web", "other"):
            client.post("/api/v1/streams", headers=auth, json={"name": name})
        assert client.post("/api/v1/streams/web/logs", headers=auth, json={"records": RECORDS}).status_code == 200
        client.post("/api/v1/streams/other/logs", headers=auth,
                    json={"lines": ["2026-12-07T10:00:00Z ERROR payment declined by bank"]})
        yield client, auth, app


def _find(client, auth, **params) -> list[str]:
    r = client.get("/api/v1/search", headers=auth, params=params)
    assert r.status_code == 200, r.text
    return [h["raw"].split(" ", 2)[2] for h in r.json()["hits"]]


def test_words_phrases_prefixes_attributes_time_and_streams(served) -> None:
    client, auth, app = served
    for indexed in (False, True):  # the newest lines are scanned until the indexer has them
        if indexed:
            wait_for(lambda: search.indexed_to(Session(app.state.engine)) == 5, 30, what="the search index")
        assert _find(client, auth, q="payment") == ["payment declined by bank", "payment retry scheduled",
                                                     "payment gateway timeout after 300 ms"]
        assert _find(client, auth, q="payment", stream="web") == ["payment retry scheduled",
                                                                  "payment gateway timeout after 300 ms"]
        assert _find(client, auth, q="pay*", stream="web")[0] == "paymentservice started"
        assert _find(client, auth, q='"gateway timeout"') == ["payment gateway timeout after 300 ms"]
        assert _find(client, auth, q='"timeout gateway"') == []
        assert _find(client, auth, q="payment", attr="host=web-1", since="2026-12-07T10:30:00Z") == [
            "payment retry scheduled"]
        assert _find(client, auth, attr="host=web-2") == ["user alice logged in"]
        assert _find(client, auth, q="web-3") == ["paymentservice started"]  # words of the attributes count
    hit = client.get("/api/v1/search", headers=auth, params={"q": "gateway timeout"}).json()["hits"][0]
    assert [hit["raw"][a:b] for a, b in hit["marks"]] == ["gateway", "timeout"]
    page = client.get("/api/v1/search", headers=auth, params={"q": "payment", "limit": 2}).json()
    assert page["next_before_id"] is not None
    rest = client.get("/api/v1/search", headers=auth, params={"q": "payment", "before_id": page["next_before_id"]}).json()
    assert [h["id"] for h in rest["hits"]] == [1] and rest["next_before_id"] is None


def test_bad_filters_are_4xx_and_a_stream_limited_key_is_refused(served) -> None:
    client, auth, app = served
    assert client.get("/api/v1/search", headers=auth, params={"attr": "host"}).status_code == 422
    assert client.get("/api/v1/search", headers=auth, params={"stream": "nope"}).status_code == 404
    assert client.get("/api/v1/search", headers=auth, params={"before_id": 2**63}).status_code == 422
    assert client.get("/api/v1/search", headers=auth, params={"q": "x" * 1001}).status_code == 422
    assert client.get("/api/v1/search", headers=auth, params={"q": '"unclosed AND OR NEAR( *'}).status_code == 200
    with Session(app.state.engine) as session:
        limited, _ = create_api_key(session, "web-only", scopes=["read"], streams=["web"])
    r = client.get("/api/v1/search", headers={"X-API-Key": limited}, params={"q": "payment"})
    assert r.status_code == 403 and "limited to streams" in r.json()["detail"]  # as every route of no single stream


def test_deleted_lines_leave_the_index_sound(served) -> None:
    client, auth, app = served
    wait_for(lambda: search.indexed_to(Session(app.state.engine)) == 5, 30, what="the search index")
    with store.write_session(app.state.engine) as session:  # as retention deletes lines
        session.execute(delete(LogLine).where(LogLine.id == 3))
    assert _find(client, auth, q="retry") == []
    with Session(app.state.engine) as session:
        assert session.execute(text("INSERT INTO line_search(line_search) VALUES('integrity-check')")) is not None
        session.commit()
    client.post("/api/v1/streams/web/logs", headers=auth, json={"lines": ["2026-12-07T12:00:00Z WARN payment retry again"]})
    wait_for(lambda: search.indexed_to(Session(app.state.engine)) == 6, 30, what="the search index")
    assert _find(client, auth, q="retry") == ["payment retry again"]


def test_without_the_index_a_search_scans(tmp_path) -> None:
    app = create_app(make_settings(tmp_path / "data", scheduler_enabled=False, search_index=False))
    with TestClient(app) as client:
        wait_ready(client)
        assert app.state.services.search_indexer is None
        with Session(app.state.engine) as session:
            key, _ = create_api_key(session, "search")
        auth = {"X-API-Key": key}
        client.post("/api/v1/streams", headers=auth, json={"name": "web"})
        client.post("/api/v1/streams/web/logs", headers=auth, json={"records": RECORDS})
        r = client.get("/api/v1/search", headers=auth, params={"q": "payment", "attr": "host=web-1"}).json()
        assert [h["id"] for h in r["hits"]] == [3, 1] and r["indexed_to"] == 0
