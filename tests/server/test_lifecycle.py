"""Training jobs, nightly fine-tune with versions and rollback, feedback scopes and mutes, the
single-scheduler lock, and model state surviving a restart (TestClient, real SQLite and MiniLM)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from logsense.server.app import create_app
from logsense.server.auth import create_api_key
from logsense.server.feedback import apply_feedback, mute_template
from logsense.server.scheduler import Scheduler, SchedulerLock
from logsense.server.tables import Anomaly, Feedback, LogLine, utcnow
from logsense.server.training import rollback, start_training

from .conftest import make_settings, wait_ready
from .helpers import hdfs_slice, post_lines, SMALL_FIXTURE_K, tiny_loggpt_config, wait_checked, wait_job


def test_only_one_scheduler_per_data_dir(tmp_path) -> None:
    a, b = SchedulerLock(tmp_path / "scheduler.lock"), SchedulerLock(tmp_path / "scheduler.lock")
    assert a.acquire() and not b.acquire()
    a.release()
    assert b.acquire() and b.held
    b.release()


def test_scheduler_follows_the_streams(tmp_path) -> None:
    app = create_app(make_settings(tmp_path / "data", worker_enabled=False, scheduler_enabled=False))
    with TestClient(app) as client:
        wait_ready(client)
        with Session(app.state.engine) as session:
            key, _ = create_api_key(session, "t")
        auth = {"X-API-Key": key}
        for name, cron in (("a", None), ("b", "30 3 * * 1"), ("c", "off")):
            assert client.post("/api/v1/streams", headers=auth, json={
                "name": name, "settings": {"retrain_cron": cron}}).status_code == 201
        s1, s2 = Scheduler(app.state.services), Scheduler(app.state.services)
        try:
            assert s1.lock.acquire()
            s1._begin()
            assert not s2.lock.acquire()  # a second worker process would not schedule
            assert s1.sync() == {"nightly:1": "0 2 * * *", "nightly:2": "30 3 * * 1"}
            assert set(s1.next_runs()) == {"nightly:1", "nightly:2"}
            client.patch("/api/v1/streams/a", headers=auth, json={"settings": {"retrain_cron": "off"}})
            assert s1.sync() == {"nightly:2": "30 3 * * 1"} and set(s1.next_runs()) == {"nightly:2"}
        finally:
            s1.stop()
            s2.stop()
        assert client.post("/api/v1/streams", headers=auth, json={
            "name": "bad", "settings": {"retrain_cron": "every night"}}).status_code == 422


def _count_stream(client: TestClient, auth: dict, name: str = "svc") -> list[str]:
    lines, _ = hdfs_slice()
    r = client.post("/api/v1/streams", headers=auth, json={"name": name, "settings": {
        "format": "hdfs", "window_size": 10, "loggpt_config": tiny_loggpt_config(), "loggpt_top_k": SMALL_FIXTURE_K, "train_mode": True}})
    assert r.status_code == 201, r.text
    return lines


def test_train_nightly_versions_and_rollback(served) -> None:
    client, auth, app = served
    lines = _count_stream(client, auth)
    post_lines(client, auth, "svc", lines[:800])
    job = wait_job(client, auth, client.post("/api/v1/streams/svc/train", headers=auth).json()["job_id"])
    assert job["kind"] == "train" and job["result"]["version"] == 1

    # nightly with nothing new: no version
    job = wait_job(client, auth, start_training(app.state.services, 1, "nightly"))
    assert job["result"]["promoted"] is False and "nothing new" in job["message"]

    post_lines(client, auth, "svc", lines[800:1400])  # more normal data, still train mode
    job = wait_job(client, auth, client.post("/api/v1/streams/svc/train", headers=auth,
                                             json={"mode": "nightly"}).json()["job_id"])
    metrics = job["result"]["metrics"]
    assert job["result"]["version"] == 2 and metrics["mode"] == "fine_tune"
    assert "live_val_fpr" in metrics and isinstance(metrics["promoted"], bool) and metrics["reason"]
    versions = client.get("/api/v1/streams/svc/models", headers=auth).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert sum(v["live"] for v in versions) == 1

    r = client.post("/api/v1/streams/svc/models/1/rollback", headers=auth)
    assert r.status_code == 200 and r.json()["live"] is True
    assert app.state.registry.peek(1).version == 1
    assert [v["live"] for v in client.get("/api/v1/streams/svc/models", headers=auth).json()] == [False, True]
    rollback(app.state.services, 1, 2)
    assert app.state.registry.peek(1).version == 2
    with pytest.raises(LookupError):
        rollback(app.state.services, 1, 9)
    text = client.get("/metrics", headers=auth).text
    assert 'logsense_model_version{kind="loggpt",stream="svc"} 2.0' in text
    assert 'logsense_last_training_timestamp_seconds{stream="svc"}' in text


def test_feedback_scopes_mutes_and_restart(served, tmp_path) -> None:
    client, auth, app = served
    lines = _count_stream(client, auth)
    post_lines(client, auth, "svc", lines[:600])
    wait_job(client, auth, client.post("/api/v1/streams/svc/train", headers=auth).json()["job_id"], promoted=True)
    client.patch("/api/v1/streams/svc", headers=auth, json={"settings": {"train_mode": False}})
    odd = ["081110 101010 1 INFO dfs.Odd: disk quota nearly exhausted on volume %d" % i for i in range(3)]
    odd2 = ["081110 101011 2 WARN dfs.Other: replica checksum mismatch at offset %d" % i for i in range(2)]
    answers = post_lines(client, auth, "svc", odd + odd2)
    assert all(a["severity"] == "watch" for a in answers), answers
    wait_checked(client, auth, "svc")
    open_lines = client.get("/api/v1/anomalies", headers=auth, params={"kind": "line"}).json()
    assert len(open_lines) == 5
    assert all(a["template"] and a["reasons"]["rapid_score"] > a["reasons"]["rapid_threshold"] for a in open_lines)

    with pytest.raises(ValueError):
        apply_feedback(app.state.services, open_lines[0]["id"], "maybe")
    with pytest.raises(LookupError):
        apply_feedback(app.state.services, 10_000, "normal")
    first = next(a for a in open_lines if "quota" in a["line"])
    r = client.post(f"/api/v1/anomalies/{first['id']}/feedback", headers=auth,
                    json={"label": "normal", "scope": "template"})
    assert r.status_code == 200 and r.json()["status"] == "refuted"
    still = client.get("/api/v1/anomalies", headers=auth, params={"kind": "line"}).json()
    assert all("quota" not in a["line"] for a in still) and len(still) == 2  # the template's others closed too
    # another masked text of the same template (a word, not a number, differs): normal too now
    again = post_lines(client, auth, "svc", [odd[0].replace("volume 0", "volume sdc")])[0]
    assert again["template_id"] == first["template_id"]
    assert again["severity"] == "normal" and again["rapid_flag"] is False  # the whole template is normal now

    confirm = still[0]
    a = apply_feedback(app.state.services, confirm["id"], "anomaly", author="ops")
    assert a.status == "confirmed"
    with Session(app.state.engine) as session:
        assert session.get(LogLine, confirm["line_id"]).label == "anomaly"
        fb = session.exec(select(Feedback).where(Feedback.anomaly_id == confirm["id"])).one()
        assert fb.label == "anomaly" and fb.actor == "ops"
    mute_template(app.state.services, 1, still[1]["template_id"], utcnow() + timedelta(hours=1), author="ops")
    assert client.get("/api/v1/anomalies", headers=auth, params={"kind": "line"}).json() == []
    post_lines(client, auth, "svc", [odd2[0]])
    with Session(app.state.engine) as session:
        newest = session.exec(select(Anomaly).order_by(Anomaly.id.desc())).first()
    assert newest.status == "muted"
    text = client.get("/metrics", headers=auth).text
    assert 'logsense_feedback_total{label="anomaly",stream="svc"} 1.0' in text

    # a new app on the same data directory remembers the template refutation (from the database)
    settings = app.state.settings
    app2 = create_app(settings.model_copy(update={"worker_enabled": False}))
    with TestClient(app2) as c2:
        wait_ready(c2)
        r = c2.post("/api/v1/streams/svc/logs", headers=auth, json={"lines": [odd[2].replace("2", "5")]})
        assert r.json()["lines"][0]["severity"] == "normal"
        assert app2.state.registry.peek(1).version == 1
