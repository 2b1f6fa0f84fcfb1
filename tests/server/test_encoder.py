"""New masked texts off the request path: past `inline_embed_texts`, train-mode normals are
embedded by the background encoder and detection lines answer `pending` until it has scored
them, with the verdict ingest would have given; the LogGPT worker waits for them; pending lines
survive the encoder's absence (a restart)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from logsense.server.auth import create_api_key
from logsense.server.app import create_app
from logsense.server.encoder import Encoder

from .conftest import make_settings, wait_ready
from .helpers import wait_for

TRAIN = [f"2026-12-07 10:00:{i % 60:02d} INFO worker pool {w} finished task {w} batch" for i, w in
         enumerate(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"] * 5)]
NEW = ["2026-12-07 11:00:00 INFO worker pool india finished task india batch",  # like the normals
       "2026-12-07 11:00:01 ERROR kernel panic fatal machine check interrupt on cpu",  # unlike any
       "2026-12-07 11:00:02 INFO worker pool alpha finished task alpha batch"]  # a known normal


@contextmanager
def _serve(data_dir, **settings) -> Iterator[tuple[TestClient, dict, object]]:
    """A real app with one stream "app" (count windows of 3, RAPID threshold 0.2) and an API key."""
    app = create_app(make_settings(data_dir, scheduler_enabled=False, **settings))
    with TestClient(app) as client:
        wait_ready(client)
        with Session(app.state.engine) as session:
            key, _ = create_api_key(session, "enc")
        auth = {"X-API-Key": key}
        assert client.post("/api/v1/streams", headers=auth, json={"name": "app", "settings": {
            "window_size": 3, "rapid_threshold": 0.2}}).status_code == 201
        yield client, auth, app


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[TestClient, dict, object]]:
    with _serve(tmp_path / "data", inline_embed_texts=0, worker_poll_seconds=0.1, worker_threads=2) as out:
        yield out


def _stream(client, auth) -> dict:
    return client.get("/api/v1/streams/app", headers=auth).json()


def test_new_texts_past_the_budget_are_embedded_in_the_background(served) -> None:
    client, auth, app = served
    r = client.post("/api/v1/streams/app/logs", headers=auth, json={"lines": TRAIN})
    assert r.status_code == 200 and {x["severity"] for x in r.json()["lines"]} == {"train"}
    model = app.state.registry.loaded()[1]
    assert all(model.rapid.is_normal(model.parser.parse_many([t], learn=False)[0].masked) for t in TRAIN[:8])
    wait_for(lambda: _stream(client, auth)["rapid_unindexed"] == 0, 60, what="the deferred normals")
    assert len(model.rapid) == 8  # eight distinct masked texts, each embedded once
    assert _stream(client, auth)["memory_mb"] > 0

    assert client.patch("/api/v1/streams/app", headers=auth,
                        json={"settings": {"train_mode": False}}).status_code == 200
    app.state.encoder.stop()  # nothing scores them until an encoder runs again (as after a restart)
    answer = client.post("/api/v1/streams/app/logs", headers=auth, json={"lines": NEW}).json()
    lines = answer["lines"]
    assert [x["severity"] for x in lines[:2]] == ["pending", "pending"]
    assert lines[0]["rapid_score"] is None and lines[0]["pending"] is True
    assert lines[2]["severity"] == "normal" and lines[2]["rapid_score"] == 0.0  # known: answered at once
    assert _stream(client, auth)["rapid_pending"] == 2
    metrics = client.get("/metrics", headers=auth).text
    assert 'logsense_rapid_pending_lines{stream="app"} 2.0' in metrics
    assert 'logsense_stream_model_bytes{stream="app"}' in metrics
    assert len(app.state.worker._threads) == 2  # worker_threads: two claim windows from one queue
    rounds = app.state.worker.rounds
    wait_for(lambda: app.state.worker.rounds > rounds + 3, 30, what="worker rounds")
    counts = client.get("/api/v1/streams/app/windows", headers=auth).json()["counts"]
    # the window holding pending lines waits for their verdicts (a worker may hold it for a moment
    # before it puts it back: queued or checking, never done)
    assert counts["queued"] + counts["checking"] >= 1
    assert _stream(client, auth)["rapid_pending"] == 2

    app.state.encoder = app.state.services.encoder = Encoder(app.state.services)  # ingest wakes this one
    app.state.encoder.start()
    wait_for(lambda: _stream(client, auth)["rapid_pending"] == 0, 60, what="the pending verdicts")
    stored = {x["id"]: x for x in client.get("/api/v1/streams/app/lines?after_id=40", headers=auth).json()}
    got = [stored[x["id"]] for x in lines]
    masked = [p.masked for p in model.parser.parse_many(NEW, learn=False)]
    expected = model.rapid.score(masked)  # embedded inline: what ingest would have answered
    assert np.allclose([x["rapid_score"] for x in got], expected, atol=1e-6)
    assert [x["rapid_flag"] for x in got] == [bool(s > 0.2) for s in expected]
    assert got[1]["rapid_flag"] is True and got[1]["severity"] == "watch"
    assert got[0]["severity"] in ("normal", "watch") and got[0]["severity"] != "pending"
    flagged = client.get("/api/v1/anomalies?stream=app", headers=auth).json()
    assert got[1]["id"] in {a["line_id"] for a in flagged}
    wait_for(lambda: client.get("/api/v1/streams/app/windows", headers=auth).json()["counts"]["queued"] == 0,
             30, what="the waiting windows")


def test_within_the_budget_verdicts_come_in_the_answer(tmp_path) -> None:
    with _serve(tmp_path / "data", inline_embed_texts=5) as (client, auth, _):
        client.post("/api/v1/streams/app/logs", headers=auth, json={"lines": TRAIN})
        client.patch("/api/v1/streams/app", headers=auth, json={"settings": {"train_mode": False}})
        lines = client.post("/api/v1/streams/app/logs", headers=auth, json={"lines": NEW}).json()["lines"]
        assert "pending" not in {x["severity"] for x in lines}
        assert lines[1]["rapid_flag"] is True and lines[1]["rapid_score"] > 0.2
