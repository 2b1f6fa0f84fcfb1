"""What a stream reports about itself (issue 16): how well its header format parses its lines
(`header_parse_rate`, `layout`, the ingest answer's `warnings`, the stream page's warning) and
its LogGPT queue (`queue_depth`, `queue_lag_seconds`), in the stream API, on /metrics and in the UI.

One app for the module (the embedder loads once), with the worker off: closed windows stay queued.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from logsense.server import store

from .helpers import query_plan, selects_on, started_app

HDFS_LINE = "081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_{n} src: /10.250.19.102:54106"
PLAIN_LINE = "user {n} opened the settings page"  # no header any preset reads


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[TestClient, FastAPI]]:
    with started_app(tmp_path_factory.mktemp("reporting") / "data", dev_mode=True, parse_helper=True) as pair:
        yield pair


def _create(client: TestClient, name: str, **settings) -> None:
    body = {"name": name, "settings": {"format": "hdfs", "window_size": 5, **settings}}
    r = client.post("/api/v1/streams", json=body)
    assert r.status_code == 201, r.text


def _post(client: TestClient, name: str, lines: list[str]) -> dict:
    r = client.post(f"/api/v1/streams/{name}/logs", json={"lines": lines})
    assert r.status_code == 200, r.text
    return r.json()


def _metric(text: str, name: str, stream: str) -> float | None:
    m = re.search(rf'^{name}\{{stream="{re.escape(stream)}"\}} (\S+)$', text, re.M)
    return None if m is None else float(m.group(1))


def test_lines_that_do_not_match_the_format_are_warned_about_and_lower_the_parse_rate(served):
    client, _ = served
    _create(client, "fits")
    _create(client, "misfit")

    answer = _post(client, "fits", [HDFS_LINE.format(n=i) for i in range(400)])  # past one chunk: the helper's too
    assert answer["warnings"] == []
    # 100 lines that fit, 600 that do not (the later chunks are prepared by the parse helper)
    lines = [HDFS_LINE.format(n=i) for i in range(100)] + [PLAIN_LINE.format(n=i) for i in range(600)]
    answer = _post(client, "misfit", lines)
    assert answer["accepted"] == 700
    (warning,) = answer["warnings"]
    assert "600 of 700 lines" in warning and "'hdfs'" in warning, warning
    # a batch mostly of fitting lines: no warning, though the stream's rate stays low
    lines = [HDFS_LINE.format(n=i) for i in range(9)] + [PLAIN_LINE.format(n=0)]
    assert _post(client, "misfit", lines)["warnings"] == []

    streams = {s["name"]: s for s in client.get("/api/v1/streams").json()}
    assert streams["fits"]["header_parse_rate"] == 1.0 and streams["fits"]["layout"] == "hdfs"
    assert streams["misfit"]["header_parse_rate"] == pytest.approx(109 / 710, abs=1e-4)
    assert streams["misfit"]["layout"] == "hdfs"
    one = client.get("/api/v1/streams/misfit").json()
    assert one["header_parse_rate"] == streams["misfit"]["header_parse_rate"] and one["layout"] == "hdfs"

    metrics = client.get("/metrics").text
    assert _metric(metrics, "logsense_header_parse_rate", "fits") == 1.0
    assert _metric(metrics, "logsense_header_parse_rate", "misfit") == pytest.approx(109 / 710, abs=1e-4)

    page = client.get("/streams/misfit").text
    assert "parse-warning" in page and "15%" in page and 'class="layout">hdfs<' in page
    page = client.get("/streams/fits").text
    assert "parse-warning" not in page and "100%" in page
    listing = client.get("/streams").text
    assert listing.count("parse-warning") == 1  # the misfit's row only


def test_format_regex_and_auto_are_named_in_the_warning(served):
    client, _ = served
    _create(client, "custom", format_regex=r"^(?P<timestamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?P<message>.*)$")
    (warning,) = _post(client, "custom", [PLAIN_LINE.format(n=i) for i in range(4)])["warnings"]
    assert warning.startswith("4 of 4 lines") and "format_regex" in warning, warning
    assert client.get("/api/v1/streams/custom").json()["layout"] == "custom"

    _create(client, "detected", format="auto")
    assert _post(client, "detected", [HDFS_LINE.format(n=i) for i in range(50)])["warnings"] == []
    out = client.get("/api/v1/streams/detected").json()
    assert out["layout"] == "hdfs" and out["header_parse_rate"] == 1.0


def test_queued_windows_report_their_depth_and_lag(served):
    client, app = served
    _create(client, "queued", train_mode=False)
    _create(client, "idle", train_mode=False)
    answer = _post(client, "queued", [HDFS_LINE.format(n=i) for i in range(12)])  # two windows of 5 close, 2 lines open
    assert answer["queued_windows"] == 2
    time.sleep(0.05)

    out = client.get("/api/v1/streams/queued").json()
    assert out["queue_depth"] == 2 and out["queue_lag_seconds"] > 0
    streams = {s["name"]: s for s in client.get("/api/v1/streams").json()}
    assert streams["queued"]["queue_depth"] == 2 and streams["queued"]["queue_lag_seconds"] > 0
    assert streams["idle"]["queue_depth"] == 0 and streams["idle"]["queue_lag_seconds"] == 0

    metrics = client.get("/metrics").text
    assert _metric(metrics, "logsense_queue_depth", "queued") == 2
    assert _metric(metrics, "logsense_loggpt_queue_lag_seconds", "queued") > 0
    assert _metric(metrics, "logsense_queue_depth", "idle") == 0
    assert _metric(metrics, "logsense_loggpt_queue_lag_seconds", "idle") == 0

    html = client.get("/").text
    card = html[html.index('aria-label="stream queued"'):]
    card = card[: card.index("</section>")]
    m = re.search(r'class="loggpt-queue" data-depth="2" data-lag-seconds="([\d.]+)">2 <small>windows \(1 open\)', card)
    assert m and float(m.group(1)) >= 0, card
    assert "lag " in card

    with Session(app.state.engine) as db:  # the same figures straight from the query, and the lag grows
        later = datetime.now(timezone.utc)
        row = store.loggpt_queues(db, later, with_open=True)[streams["queued"]["id"]]
    assert row["queued"] == 2 and row["open"] == 1 and row["depth"] == 2
    assert row["lag_seconds"] >= out["queue_lag_seconds"]


def test_the_queue_query_is_one_grouped_select_through_an_index(served):
    """Every stream's queue in one SELECT that reads only the waiting windows (the (state, id)
    index), not one query per stream or a scan of every window ever closed."""
    client, app = served
    for path in ("/api/v1/streams", "/"):
        with selects_on(app.state.engine, "windows") as seen:
            assert client.get(path).status_code == 200
        assert len(seen) == 1, (path, seen)
        plan = query_plan(app.state.engine, *seen[0])
        assert "USING INDEX ix_windows_state_id" in plan and "SCAN" not in plan, (path, plan)
    with selects_on(app.state.engine, "windows") as seen:
        assert client.get("/api/v1/streams/queued").status_code == 200
    plan = query_plan(app.state.engine, *seen[0])
    assert "ix_windows_stream_id_state_id" in plan and "SCAN" not in plan, plan


def test_a_stream_set_to_generic_gets_no_warning_for_lines_without_a_header(served) -> None:
    client, _ = served
    _create(client, "plain", format="generic")
    answer = _post(client, "plain", [PLAIN_LINE.format(n=i) for i in range(20)])
    assert answer["warnings"] == []
    _create(client, "guessing", format="auto")  # auto found no layout either: that is news
    assert _post(client, "guessing", [PLAIN_LINE.format(n=i) for i in range(20)])["warnings"]
