"""Stored incidents: anomalies join their stream's open incident within the gap, else open a new
one (`store.assign_incidents` on the ingest path); acknowledge / assign / resolve / reopen and
notes through the API (scopes) and the UI (roles, CSRF); an incident resolves by itself once its
anomalies are closed; migration 0014 groups the anomalies already stored."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, select

from logsense.server import store
from logsense.server.db import make_engine, upgrade_database
from logsense.server.tables import Anomaly, Incident, IncidentNote, Stream, TemplateMute
from logsense.server.users import create_user

from .helpers import quiet_app

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=2)
GAP = 300.0  # the default incident_gap_seconds
PASSWORDS = {"ann": "admin password", "otto": "operator password", "vic": "viewer password"}
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
HX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[TestClient, object, dict]]:
    with quiet_app(tmp_path_factory.mktemp("incidents") / "data") as (client, app, keys):
        with Session(app.state.engine) as s:
            for user, role in (("ann", "admin"), ("otto", "operator"), ("vic", "viewer")):
                create_user(s, user, PASSWORDS[user], role=role)
        yield client, app, keys


def add_stream(app, name: str) -> int:  # noqa: ANN001
    with Session(app.state.engine) as s:
        row = Stream(name=name, settings={"format": "hdfs", "window_size": 10, "train_mode": False})
        s.add(row)
        s.commit()
        return row.id


def store_batch(app, stream_id: int, when: datetime, raws: list[str], template_ids: list[int],  # noqa: ANN001
                severity: str = "watch") -> list[int]:
    """Lines flagged at `when`, stored as ingest stores them: lines, then anomalies routed (status
    and incident) and inserted in the same transaction. The anomalies' ids."""
    with store.write_session(app.state.engine) as s:
        line_ids = store.insert_lines(s, stream_id, when, {
            "raw": raws, "masked": [re.sub(r"\d+", "<NUM>", r) for r in raws], "template_id": template_ids,
            "sessions": [[] for _ in raws], "severity": [severity] * len(raws), "rapid_score": [0.6] * len(raws),
            "rapid_flag": [True] * len(raws)})
        rows = [{"stream_id": stream_id, "line_id": lid, "window_id": None, "template_id": tid, "kind": "line",
                 "severity": severity, "status": "open", "reasons": {"rapid_score": 0.6}, "created_at": when,
                 "updated_at": when} for lid, tid in zip(line_ids, template_ids)]
        store.route_anomalies(s, stream_id, rows, when, GAP)
        store.insert_anomalies(s, rows)
        return list(s.execute(select(Anomaly.id).where(Anomaly.line_id.in_(line_ids)).order_by(Anomaly.id)).scalars())


def incident_of(app, anomaly_id: int) -> Incident:  # noqa: ANN001
    with Session(app.state.engine) as s:
        return s.get(Incident, s.get(Anomaly, anomaly_id).incident_id)


# --------------------------------------------------------------------------- joining


def test_anomalies_within_the_gap_join_one_incident_and_after_it_a_new_one_opens(served) -> None:
    _, app, _ = served
    sid = add_stream(app, "join")
    first = store_batch(app, sid, T0, ["disk quota low 1", "disk quota low 2"], [7, 7])
    second = store_batch(app, sid, T0 + timedelta(seconds=10), ["disk quota low 3"], [7])
    third = store_batch(app, sid, T0 + timedelta(seconds=20), ["checksum bad 9"], [8], severity="danger")
    inc = incident_of(app, first[0])
    assert {incident_of(app, a).id for a in first + second + third} == {inc.id}
    assert inc.n_anomalies == 4 and inc.severity == "danger" and inc.status == "open"  # the worst of them
    assert inc.title == "disk quota low <NUM>" and inc.template_id == 7
    assert inc.opened_at == T0 and inc.last_seen_at == T0 + timedelta(seconds=20)

    later = store_batch(app, sid, T0 + timedelta(seconds=20 + GAP + 1), ["fan failure 1"], [9])  # past the gap
    new = incident_of(app, later[0])
    assert new.id != inc.id and new.n_anomalies == 1 and new.severity == "watch" and new.title == "fan failure <NUM>"

    other = add_stream(app, "join-other")  # another stream's anomaly at the same time: its own incident
    assert incident_of(app, store_batch(app, other, T0 + timedelta(seconds=15), ["x 1"], [3])[0]).id not in (inc.id, new.id)

    with store.write_session(app.state.engine) as s:  # a muted template: a new incident born resolved
        s.add(TemplateMute(stream_id=other, template_id=5, until=T0 + timedelta(days=1)))
    muted = store_batch(app, other, T0 + timedelta(hours=1), ["noise 1"], [5])
    quiet = incident_of(app, muted[0])
    assert quiet.status == "resolved" and quiet.resolved_by == "auto"


def test_a_batch_costs_one_select_and_one_write_of_incidents(served) -> None:
    _, app, _ = served
    sid = add_stream(app, "cheap")
    store_batch(app, sid, T0, ["a 1"], [1])
    seen: list[str] = []
    from sqlalchemy import event

    def capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if "incidents" in statement:
            seen.append(statement.split()[0].upper())

    event.listen(app.state.engine, "before_cursor_execute", capture)
    try:
        store_batch(app, sid, T0 + timedelta(seconds=10), [f"a {i}" for i in range(50)], [1] * 50)
    finally:
        event.remove(app.state.engine, "before_cursor_execute", capture)
    assert seen == ["SELECT", "UPDATE"], seen


# --------------------------------------------------------------------------- the API


def test_the_api_lists_reads_acknowledges_assigns_resolves_and_takes_notes(served) -> None:
    client, app, keys = served
    sid = add_stream(app, "api")
    a1 = store_batch(app, sid, T0, ["disk quota low 1"], [7])
    a2 = store_batch(app, sid, T0 + timedelta(seconds=10), ["checksum bad 1", "checksum bad 2"], [8, 8])
    b = store_batch(app, sid, T0 + timedelta(hours=1), ["fan failure 1"], [9])
    iid, jid = incident_of(app, a1[0]).id, incident_of(app, b[0]).id

    listed = client.get("/api/v1/incidents", params={"stream": "api"}, headers=keys["read"]).json()
    assert [i["id"] for i in listed] == [jid, iid]  # newest first
    assert listed[1]["anomalies"] == 3 and listed[1]["open_anomalies"] == 3 and listed[1]["status"] == "open"
    assert listed[1]["url"].endswith(f"/incidents/{iid}")
    page = client.get("/api/v1/incidents", params={"stream": "api", "before_id": jid}, headers=keys["read"]).json()
    assert [i["id"] for i in page] == [iid]
    assert [i["id"] for i in client.get("/api/v1/incidents", params={"anomaly_id": a2[1]},
                                        headers=keys["read"]).json()] == [iid]

    detail = client.get(f"/api/v1/incidents/{iid}", headers=keys["read"]).json()
    assert [(g["template_id"], g["ids"], g["count"]) for g in detail["groups"]] == [(8, a2, 2), (7, a1, 1)]
    assert detail["notes"] == [] and detail["groups"][0]["example"] == "checksum bad 2"

    for method, path, body in (("POST", f"/api/v1/incidents/{iid}", {"status": "acknowledged"}),
                               ("POST", f"/api/v1/incidents/{iid}/notes", {"text": "looking"})):
        r = client.request(method, path, json=body, headers=keys["read"])
        assert r.status_code == 403 and "operate" in r.json()["detail"], r.text
    assert client.get("/api/v1/incidents").status_code == 401

    r = client.post(f"/api/v1/incidents/{iid}", json={"status": "acknowledged", "assignee": "otto"},
                    headers=keys["operate"])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged" and r.json()["assignee"] == "otto" and r.json()["acknowledged_at"]
    r = client.post(f"/api/v1/incidents/{iid}/notes", json={"text": "  disk on node 3 is full  "},
                    headers=keys["operate"])
    assert r.status_code == 201 and [(n["author"], n["text"]) for n in r.json()["notes"]] == \
        [("key:k-operate", "disk on node 3 is full")]
    r = client.post(f"/api/v1/incidents/{iid}", json={"status": "resolved", "assignee": ""}, headers=keys["operate"])
    assert r.json()["status"] == "resolved" and r.json()["resolved_by"] == "key:k-operate" and r.json()["assignee"] is None
    assert r.json()["open_anomalies"] == 3  # resolving by hand answers no anomaly
    assert [i["id"] for i in client.get("/api/v1/incidents", params={"stream": "api", "status": "resolved"},
                                        headers=keys["read"]).json()] == [iid]
    assert [i["id"] for i in client.get("/api/v1/incidents", params={"stream": "api", "status": "unresolved"},
                                        headers=keys["read"]).json()] == [jid]
    r = client.post(f"/api/v1/incidents/{iid}", json={"status": "open"}, headers=keys["operate"])
    assert r.json()["status"] == "open" and r.json()["resolved_at"] is None

    # within the gap, a new anomaly joins the stream's newest unresolved incident; once that is resolved, a new one
    assert incident_of(app, store_batch(app, sid, T0 + timedelta(hours=1, seconds=5), ["fan failure 2"], [9])[0]).id == jid
    client.post(f"/api/v1/incidents/{jid}", json={"status": "resolved"}, headers=keys["operate"])
    c = store_batch(app, sid, T0 + timedelta(hours=1, seconds=10), ["fan failure 3"], [9])
    assert incident_of(app, c[0]).id not in (iid, jid)

    assert client.get("/api/v1/incidents/999999", headers=keys["read"]).status_code == 404
    assert client.post("/api/v1/incidents/999999", json={"status": "resolved"}, headers=keys["operate"]).status_code == 404
    assert client.post("/api/v1/incidents/999999/notes", json={"text": "x"}, headers=keys["operate"]).status_code == 404
    assert client.post(f"/api/v1/incidents/{iid}", json={}, headers=keys["operate"]).status_code == 422
    assert client.post(f"/api/v1/incidents/{iid}", json={"status": "closed"}, headers=keys["operate"]).status_code == 422
    assert client.post(f"/api/v1/incidents/{iid}/notes", json={"text": "   "}, headers=keys["operate"]).status_code == 422
    assert client.post(f"/api/v1/incidents/{iid}/notes", json={"text": "x" * 4001},
                       headers=keys["operate"]).status_code == 422
    assert client.get("/api/v1/incidents", params={"status": "closed"}, headers=keys["read"]).status_code == 422


def test_an_incident_resolves_once_all_its_anomalies_are_closed(served) -> None:
    client, app, keys = served
    sid = add_stream(app, "settle")
    ids = store_batch(app, sid, T0, ["disk quota low 1", "disk quota low 2"], [7, 7])
    ids += store_batch(app, sid, T0 + timedelta(seconds=10), ["checksum bad 1"], [8])
    iid = incident_of(app, ids[0]).id
    r = client.post("/api/v1/anomalies/feedback", json={"ids": ids[:2], "label": "anomaly"}, headers=keys["operate"])
    assert r.status_code == 200 and r.json()["answered"] == 2
    assert client.get(f"/api/v1/incidents/{iid}", headers=keys["read"]).json()["status"] == "open"  # one still open
    r = client.post(f"/api/v1/anomalies/{ids[2]}/feedback", json={"suppress_until": (T0 + timedelta(days=2)).isoformat()},
                    headers=keys["operate"])  # muting closes the last one
    assert r.status_code == 200, r.text
    got = client.get(f"/api/v1/incidents/{iid}", headers=keys["read"]).json()
    assert got["status"] == "resolved" and got["resolved_by"] == "auto" and got["open_anomalies"] == 0
    assert [g["status"] for g in got["groups"]] == ["muted", "confirmed"]

    def undo(status: str) -> None:  # an answer undone (and given again): the anomaly open, then closed
        with store.write_session(app.state.engine) as s:
            s.execute(text("UPDATE anomalies SET status = :st, updated_at = :now WHERE id = :i"),
                      {"st": status, "now": datetime.now(timezone.utc).replace(tzinfo=None), "i": ids[2]})

    undo("open")
    got = client.get(f"/api/v1/incidents/{iid}", headers=keys["read"]).json()
    assert (got["status"], got["resolved_at"], got["open_anomalies"]) == ("open", None, 1)  # reopened by itself
    undo("confirmed")
    assert client.get(f"/api/v1/incidents/{iid}", headers=keys["read"]).json()["status"] == "resolved"

    r = client.post(f"/api/v1/incidents/{iid}", json={"status": "open"}, headers=keys["operate"])  # reopened by hand
    assert r.json()["status"] == "open"
    assert client.get(f"/api/v1/incidents/{iid}", headers=keys["read"]).json()["status"] == "open"  # stays open

    jid = incident_of(app, store_batch(app, sid, T0 + timedelta(hours=3), ["fan failure 1"], [9])[0]).id
    with store.write_session(app.state.engine) as s:  # the worker raising a line anomaly raises its incident
        s.execute(text("UPDATE anomalies SET severity = 'danger' WHERE incident_id = :i"), {"i": jid})
    assert client.get(f"/api/v1/incidents/{jid}", headers=keys["read"]).json()["severity"] == "danger"


# --------------------------------------------------------------------------- the UI


def login(app, user: str) -> TestClient:  # noqa: ANN001
    c = TestClient(app)
    token = CSRF_RE.search(c.get("/login").text).group(1)
    r = c.post("/login", data={"username": user, "password": PASSWORDS[user], "next": "/", "csrf_token": token},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    return c


def test_the_pages_show_buttons_to_an_operator_and_none_to_a_viewer(served) -> None:
    _, app, _ = served
    sid = add_stream(app, "ui")
    ids = store_batch(app, sid, T0, ["disk quota low 1"], [7])
    ids += store_batch(app, sid, T0 + timedelta(seconds=5), ["checksum bad 3"], [8], severity="danger")
    iid = incident_of(app, ids[0]).id

    otto = login(app, "otto")
    page = otto.get("/incidents?stream=ui")
    assert page.status_code == 200 and "<html" in page.text and f'id="incident-{iid}"' in page.text
    assert 'href="/incidents"' in page.text and 'aria-current="page">Incidents' in page.text  # the nav link
    partial = otto.get("/incidents?stream=ui", headers=HX)
    assert "<html" not in partial.text and f'id="incident-{iid}"' in partial.text
    detail = otto.get(f"/incidents/{iid}")
    assert detail.status_code == 200
    for want in ('value="acknowledge"', 'value="assign-me"', 'value="resolve"', 'name="text"',
                 f'href="/anomalies/{ids[0]}"', f'href="/anomalies/{ids[1]}"', f"/incidents/{iid}</a>"):
        assert want in detail.text, want
    token = CSRF_RE.search(detail.text).group(1)
    assert otto.post(f"/incidents/{iid}/act", data={"action": "acknowledge"}).status_code == 403  # no CSRF token
    r = otto.post(f"/incidents/{iid}/act", data={"action": "acknowledge", "csrf_token": token}, headers=HX)
    assert r.status_code == 200 and "Acknowledged." in r.text and "<html" not in r.text
    assert 'id="incident-status">acknowledged' in r.text and 'value="acknowledge"' not in r.text
    r = otto.post(f"/incidents/{iid}/act", data={"action": "assign-me", "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/incidents/{iid}"
    r = otto.post(f"/incidents/{iid}/notes", data={"text": "node 3\nis full", "csrf_token": token}, headers=HX)
    assert r.status_code == 200 and "node 3<br>is full" in r.text and 'id="incident-assignee">otto' in r.text
    assert otto.post(f"/incidents/{iid}/act", data={"action": "explode", "csrf_token": token}).status_code == 400
    assert otto.post(f"/incidents/{iid}/notes", data={"text": " ", "csrf_token": token}).status_code == 400
    r = otto.post(f"/incidents/{iid}/act", data={"action": "resolve", "csrf_token": token}, headers=HX)
    assert 'id="incident-status">resolved' in r.text and 'value="reopen"' in r.text
    with Session(app.state.engine) as s:
        row = s.get(Incident, iid)
        assert (row.status, row.assignee, row.resolved_by) == ("resolved", "otto", "user:otto")
        assert [n.author for n in s.exec(select(IncidentNote).where(IncidentNote.incident_id == iid))] == ["user:otto"]
    r = otto.get(f"/incidents/of-anomaly/{ids[1]}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/incidents/{iid}"
    assert otto.get("/incidents/of-anomaly/999999").status_code == 404
    assert otto.get("/incidents/999999").status_code == 404
    assert otto.get("/incidents?status=closed").status_code == 400
    assert f'id="incident-{iid}"' in otto.get("/incidents?stream=ui&status=resolved").text
    assert f'id="incident-{iid}"' not in otto.get("/incidents?stream=ui").text  # unresolved by default

    vic = login(app, "vic")
    seen = vic.get(f"/incidents/{iid}")
    assert seen.status_code == 200 and "node 3" in seen.text
    assert 'name="action"' not in seen.text and 'name="text"' not in seen.text
    token = CSRF_RE.search(vic.get("/jobs").text).group(1)
    for path, data in ((f"/incidents/{iid}/act", {"action": "reopen"}), (f"/incidents/{iid}/notes", {"text": "hi"})):
        r = vic.post(path, data={**data, "csrf_token": token})
        assert r.status_code == 403 and "This needs the operator role" in r.text, path
    assert TestClient(app).get("/incidents", follow_redirects=False).status_code == 303  # login first


# --------------------------------------------------------------------------- the migration


def test_migration_0014_groups_the_stored_anomalies_by_the_gap(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    upgrade_database(url, "0013")
    engine = make_engine(url)
    t = datetime(2026, 11, 30, 12, 0, 0)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO streams (id, name, settings, created_at, updated_at) "
                             "VALUES (1, 'a', '{}', '2026-11-30', '2026-11-30'), (2, 'b', '{}', '2026-11-30', '2026-11-30')")
        conn.exec_driver_sql("INSERT INTO log_lines (id, stream_id, received_at, raw, masked, sessions, severity) "
                             "VALUES (1, 1, '2026-11-30 12:00:00', 'disk 1', 'disk <NUM>', '[]', 'watch')")
        for aid, sid, seconds, severity, status, line in (
            (1, 1, 0, "watch", "open", 1), (2, 1, 100, "danger", "refuted", None), (3, 2, 50, "watch", "open", None),
            (4, 1, 1000, "watch", "confirmed", None), (5, 1, 1200, "watch", "muted", None),
        ):
            when = (t + timedelta(seconds=seconds)).isoformat(" ")
            conn.exec_driver_sql(
                "INSERT INTO anomalies (id, stream_id, line_id, template_id, kind, severity, status, reasons, created_at, "
                "updated_at) VALUES (?, ?, ?, 7, 'line', ?, ?, '{}', ?, ?)", (aid, sid, line, severity, status, when, when))
    engine.dispose()
    upgrade_database(url, "0014")
    engine = make_engine(url)
    with Session(engine) as s:
        by_anomaly = dict(s.execute(select(Anomaly.id, Anomaly.incident_id)).all())
        incidents = {i.id: i for i in s.execute(select(Incident)).scalars()}
    engine.dispose()
    assert by_anomaly == {1: 1, 2: 1, 3: 3, 4: 4, 5: 4}
    one, other, later = incidents[1], incidents[3], incidents[4]
    assert (one.status, one.severity, one.n_anomalies, one.title) == ("open", "danger", 2, "disk <NUM>")
    assert one.opened_at == datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    assert one.last_seen_at == datetime(2026, 11, 30, 12, 1, 40, tzinfo=timezone.utc)
    assert (other.stream_id, other.status) == (2, "open")
    assert (later.status, later.resolved_by, later.n_anomalies) == ("resolved", "auto", 2)
