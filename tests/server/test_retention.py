"""Retention per stream (`server.retention`): old lines go, with their windows and answered
anomalies; lines of open or confirmed anomalies stay with their windows (windows and
window_lines stay consistent); the API's answer and scope; the daily job; the database size on
/metrics and the overview."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, select

from logsense.server import retention, store
from logsense.server.scheduler import RETENTION_CRON, RETENTION_JOB, Scheduler
from logsense.server.tables import (Anomaly, Incident, IncidentNote, LineCount, LogLine, Stream, Window, WindowLine,
                                    utcnow)
from logsense.server.users import create_user

from .helpers import quiet_app

OLD = utcnow().replace(microsecond=0) - timedelta(days=40)
RECENT = utcnow().replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[TestClient, object, dict]]:
    with quiet_app(tmp_path_factory.mktemp("retention") / "data") as (client, app, keys):
        with Session(app.state.engine) as s:
            create_user(s, "ann", "admin password")
        yield client, app, keys


def _lines(s: Session, sid: int, when: datetime, names: list[str], label: str | None = None) -> dict[str, int]:
    ids = store.insert_lines(s, sid, when, {
        "raw": names, "masked": names, "template_id": [1] * len(names), "sessions": [[] for _ in names],
        "severity": ["normal"] * len(names), "label": [label] * len(names)})
    return dict(zip(names, ids))


def _window(s: Session, sid: int, key: str, line_ids: list[int], last: datetime, state: str = "done") -> int:
    w = Window(stream_id=sid, kind="count", key=key, state=state, n_lines=len(line_ids), opened_at=last,
               last_line_at=last)
    s.add(w)
    s.flush()
    for pos, lid in enumerate(line_ids):
        s.add(WindowLine(window_id=w.id, position=pos, line_id=lid))
    return w.id


def _anomaly(s: Session, sid: int, line_id: int | None, status: str, when: datetime, window_id: int | None = None,
             incident_id: int | None = None) -> int:
    a = Anomaly(stream_id=sid, line_id=line_id, window_id=window_id, template_id=1,
                kind="line" if window_id is None else "window", severity="watch", status=status, reasons={},
                created_at=when, updated_at=when, incident_id=incident_id)
    s.add(a)
    s.flush()
    return a.id


def build(app, name: str) -> dict:  # noqa: ANN001
    """A stream whose data is 40 days old but for a recent window; names -> ids of what was made."""
    with store.write_session(app.state.engine) as s:
        stream = Stream(name=name, settings={"format": "hdfs", "window_size": 10, "retention_days": 30})
        s.add(stream)
        s.flush()
        sid = stream.id
        ln = _lines(s, sid, OLD, ["free1", "free2", "held_open", "beside_open", "held_confirmed", "refuted", "muted",
                                  "in_window_anomaly", "in_open_window", "spanning_old"])
        ln.update(_lines(s, sid, OLD, ["labelled"], label="normal"))
        ln.update(_lines(s, sid, RECENT, ["recent1", "recent2"]))
        w = {"free": _window(s, sid, "1", [ln["free1"], ln["free2"]], OLD),
             "held": _window(s, sid, "2", [ln["held_open"], ln["beside_open"]], OLD),
             "anomalous": _window(s, sid, "3", [ln["in_window_anomaly"]], OLD),
             "open": _window(s, sid, "4", [ln["in_open_window"]], OLD, state="open"),
             "spanning": _window(s, sid, "5", [ln["spanning_old"], ln["recent1"]], RECENT)}
        gone = Incident(stream_id=sid, status="resolved", severity="watch", title="refuted", n_anomalies=2,
                        opened_at=OLD, last_seen_at=OLD, resolved_at=OLD, resolved_by="auto", updated_at=OLD)
        s.add(gone)
        s.flush()
        s.add(IncidentNote(incident_id=gone.id, author="ann", text="noise", created_at=OLD))
        a = {"open": _anomaly(s, sid, ln["held_open"], "open", OLD),
             "confirmed": _anomaly(s, sid, ln["held_confirmed"], "confirmed", OLD),
             "refuted": _anomaly(s, sid, ln["refuted"], "refuted", OLD, incident_id=gone.id),
             "muted": _anomaly(s, sid, ln["muted"], "muted", OLD, incident_id=gone.id),
             "window": _anomaly(s, sid, ln["in_window_anomaly"], "open", OLD, window_id=w["anomalous"]),
             "recent_refuted": _anomaly(s, sid, ln["recent2"], "refuted", RECENT)}
    return {"sid": sid, "lines": ln, "windows": w, "anomalies": a, "incident": gone.id}


def check_consistent(app, sid: int) -> None:  # noqa: ANN001
    """Every window of the stream holds exactly its n_lines lines at positions 0.., and every
    anomaly's line and window exist."""
    with Session(app.state.engine) as s:
        for w in s.exec(select(Window).where(Window.stream_id == sid)):
            positions = sorted(s.exec(select(WindowLine.position).where(WindowLine.window_id == w.id)))
            assert positions == list(range(w.n_lines)), w.key
            lines = s.exec(select(func.count()).select_from(WindowLine).join(LogLine, LogLine.id == WindowLine.line_id)
                           .where(WindowLine.window_id == w.id)).one()
            assert lines == w.n_lines, w.key
        for a in s.exec(select(Anomaly).where(Anomaly.stream_id == sid)):
            assert a.line_id is None or s.get(LogLine, a.line_id) is not None
            assert a.window_id is None or s.get(Window, a.window_id) is not None


def remaining(app, made: dict) -> tuple[set, set, set]:  # noqa: ANN001
    with Session(app.state.engine) as s:
        lines = set(s.exec(select(LogLine.id).where(LogLine.stream_id == made["sid"])))
        windows = set(s.exec(select(Window.id).where(Window.stream_id == made["sid"])))
        anomalies = set(s.exec(select(Anomaly.id).where(Anomaly.stream_id == made["sid"])))
    name = {v: k for k, v in made["lines"].items()}
    wname = {v: k for k, v in made["windows"].items()}
    aname = {v: k for k, v in made["anomalies"].items()}
    return {name[i] for i in lines}, {wname[i] for i in windows}, {aname[i] for i in anomalies}


KEPT_LINES = {"held_open", "beside_open", "held_confirmed", "in_window_anomaly", "in_open_window", "spanning_old",
              "labelled", "recent1", "recent2"}


def test_old_lines_go_and_what_operators_still_need_stays(served) -> None:
    client, app, keys = served
    made = build(app, "pruned")
    with Session(app.state.engine) as s:
        counted = s.exec(select(func.sum(LineCount.n)).where(LineCount.stream_id == made["sid"])).one()
    r = client.post("/api/v1/streams/pruned/retention", headers=keys["admin"])
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["stream"] == "pruned" and got["retention_days"] == 30
    assert {k: got[k] for k in ("anomalies", "windows", "window_lines", "lines", "incidents")} == \
        {"anomalies": 2, "windows": 1, "window_lines": 2, "lines": 4, "incidents": 1}
    cutoff = datetime.fromisoformat(got["cutoff"].replace("Z", "+00:00"))
    assert abs((utcnow() - timedelta(days=30) - cutoff).total_seconds()) < 60

    lines, windows, anomalies = remaining(app, made)
    assert lines == KEPT_LINES  # free1, free2 (their window went), refuted, muted went
    assert windows == {"held", "anomalous", "open", "spanning"}
    assert anomalies == {"open", "confirmed", "window", "recent_refuted"}
    check_consistent(app, made["sid"])
    with Session(app.state.engine) as s:
        assert s.get(Incident, made["incident"]) is None
        assert s.exec(select(IncidentNote).where(IncidentNote.incident_id == made["incident"])).first() is None
        # the counts are history: what was received, not what is stored
        assert s.exec(select(func.sum(LineCount.n)).where(LineCount.stream_id == made["sid"])).one() == counted

    again = client.post("/api/v1/streams/pruned/retention", headers=keys["admin"]).json()
    assert [again[k] for k in ("anomalies", "windows", "window_lines", "lines", "incidents")] == [0] * 5


def test_small_chunks_delete_the_same(served) -> None:
    _, app, _ = served
    made = build(app, "chunked")
    got = retention.prune(app.state.engine, made["sid"], 30, chunk=1)
    assert [got[k] for k in ("anomalies", "windows", "window_lines", "lines", "incidents")] == [2, 1, 2, 4, 1]
    assert remaining(app, made)[0] == KEPT_LINES
    check_consistent(app, made["sid"])


def test_the_route_needs_admin_and_a_retention(served) -> None:
    client, app, keys = served
    assert client.post("/api/v1/streams", json={"name": "forever"}, headers=keys["admin"]).status_code == 201
    assert client.get("/api/v1/streams/forever", headers=keys["read"]).json()["settings"]["retention_days"] is None
    r = client.post("/api/v1/streams/forever/retention", headers=keys["admin"])
    assert r.status_code == 409 and "retention_days" in r.json()["detail"]
    r = client.post("/api/v1/streams/forever/retention", headers=keys["operate"])
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    assert client.post("/api/v1/streams/nowhere/retention", headers=keys["admin"]).status_code == 404
    for bad in (0, -1, 1.5, "x", 36_501):
        r = client.patch("/api/v1/streams/forever", json={"settings": {"retention_days": bad}}, headers=keys["admin"])
        assert r.status_code == 422, bad
    r = client.patch("/api/v1/streams/forever", json={"settings": {"retention_days": 7}}, headers=keys["admin"])
    assert r.status_code == 200 and r.json()["settings"]["retention_days"] == 7
    assert client.post("/api/v1/streams/forever/retention", headers=keys["admin"]).json()["lines"] == 0


def test_the_daily_job_runs_while_a_stream_has_a_retention(served, tmp_path) -> None:
    _, app, _ = served
    sched = Scheduler(app.state.services)
    sched.lock.path = tmp_path / "scheduler.lock"  # not the served app's own lock
    try:
        assert sched.lock.acquire()
        sched._begin()
        assert sched.sync()[RETENTION_JOB] == RETENTION_CRON  # streams above have one
        assert RETENTION_JOB in sched.next_runs()
    finally:
        sched.stop()
    made = build(app, "nightly-pruned")
    done = retention.prune_all(app.state.engine)
    assert done["nightly-pruned"]["lines"] == 4 and "forever" in done


def test_the_database_size_is_on_metrics_and_the_overview(served) -> None:
    client, app, keys = served
    size = retention.database_bytes(app.state.engine)
    assert size and size > 10_000
    metrics = client.get("/metrics", headers=keys["read"]).text
    found = re.search(r"^logsense_database_bytes ([0-9.e+]+)$", metrics, re.M)
    assert found and float(found.group(1)) > 10_000
    c = TestClient(app)
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)
    c.post("/login", data={"username": "ann", "password": "admin password", "next": "/", "csrf_token": token})
    page = c.get("/").text
    assert re.search(r"Database: [0-9.]+ (KB|MB) \(SQLite file and WAL\)", page)
    assert retention.human_bytes(None) == "unknown" and retention.human_bytes(5 * 2**20) == "5.0 MB"
