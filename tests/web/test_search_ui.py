"""The search, context and live-tail pages as HTML: hits with their words marked, the line in
its context widening on request and filtered to its session or host, the tail's new rows."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from logsense.server.auth import create_api_key
from logsense.server.users import create_user
from tests.server.helpers import started_app

from .conftest import login

USER, PASSWORD = "op", "password123"
HX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[tuple[TestClient, dict]]:
    with started_app(tmp_path_factory.mktemp("s") / "data") as (client, app):
        with Session(app.state.engine) as s:
            create_user(s, USER, PASSWORD)
            key, _ = create_api_key(s, "k")
        auth = {"X-API-Key": key}
        client.post("/api/v1/streams", headers=auth, json={"name": "web", "settings": {"session_regex": r"req-\d+"}})
        records = [{"message": f"2026-12-07T10:00:{i:02d}Z INFO req-{i % 3} step {i} on <b>node</b>",
                    "attributes": {"host": f"web-{i % 2}"}} for i in range(40)]
        records[20]["message"] = "2026-12-07T10:00:20Z ERROR req-2 payment gateway timeout"
        client.post("/api/v1/streams/web/logs", headers=auth, json={"records": records})
        login(client, USER, PASSWORD)
        yield client, auth


def test_search_page_marks_the_words_and_links_to_context(ui) -> None:
    client, _ = ui
    page = client.get("/search").text
    assert 'name="q"' in page and "last 15m" in page and "Type some words" in page
    html = client.get("/search", params={"q": "gateway", "stream": "web"}).text
    assert "<mark>gateway</mark>" in html and re.search(r'href="/lines/21"', html)
    assert "&lt;b&gt;<mark>node</mark>&lt;/b&gt;" in client.get("/search", params={"q": "node"}).text  # escaped, never markup
    partial = client.get("/search", params={"q": "gateway"}, headers=HX).text
    assert "<html" not in partial and "<mark>gateway</mark>" in partial
    assert client.get("/search", params={"range": "forever"}).status_code == 400
    assert client.get("/search", params={"stream": "nope"}).status_code == 404
    assert "No line matches" in client.get("/search", params={"q": "zebra"}).text


def test_context_widens_and_follows_the_session_or_host(ui) -> None:
    client, _ = ui
    html = client.get("/lines/21").text
    assert 'id="at"' in html and "payment gateway timeout" in html
    assert html.count("<tr") - 1 == 21  # the line and 10 on each side
    assert "Show 25 on each side" in html
    wider = client.get("/lines/21", params={"n": 25}, headers=HX).text
    assert "<html" not in wider and wider.count("<tr") - 1 == 40  # all 40 lines of the stream
    session = client.get("/lines/21", params={"same": "session", "n": 25}).text
    steps = re.findall(r"req-(\d) step", session)
    assert steps and set(steps) == {"2"}  # only its session, req-2
    host = client.get("/lines/21", params={"same": "attribute", "key": "host", "n": 25}).text
    assert len(re.findall(r"step (\d+) ", host)) == 19  # web-0: the even steps but its own
    assert client.get("/lines/21", params={"n": 7}).status_code == 400
    assert client.get("/lines/999999").status_code == 404


def test_tail_shows_new_lines(ui) -> None:
    client, auth = ui
    page = client.get("/streams/web/tail").text
    last = int(re.search(r'data-after-id="(\d+)"', page).group(1))
    assert last == 40 and "/static/tail.js" in page and "Pause" in page
    assert client.get(f"/streams/web/tail?after_id={last}").text.strip() == ""
    client.post("/api/v1/streams/web/logs", headers=auth, json={"lines": ["2026-12-07T10:01:00Z WARN req-9 fresh line"]})
    rows = client.get(f"/streams/web/tail?after_id={last}").text
    assert "fresh line" in rows and 'data-line-id="41"' in rows and "<html" not in rows
    assert client.get("/streams/nope/tail").status_code == 404
