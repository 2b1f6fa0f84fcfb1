"""The queue grouped by cause through the API (`group=template`), one answer for a whole group,
and later anomalies of a confirmed incident joining it instead of queueing again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlmodel import Session, select

from logsense.server import store
from logsense.server.tables import Anomaly, Stream

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _anomaly(app, stream_id: int, template_id: int, when: datetime, raw: str, kind: str = "line") -> int:  # noqa: ANN001
    with Session(app.state.engine) as s:
        (line_id,) = store.insert_lines(s, stream_id, when, {
            "raw": [raw], "masked": [raw], "template_id": [template_id], "sessions": [[]],
            "severity": ["watch"], "rapid_score": [0.6], "rapid_flag": [True]})
        a = Anomaly(stream_id=stream_id, line_id=line_id, template_id=template_id, kind=kind, severity="watch",
                    status="open", reasons={}, created_at=when, updated_at=when)
        s.add(a)
        s.commit()
        return a.id


def _stream(client, app, auth) -> int:  # noqa: ANN001
    assert client.post("/api/v1/streams", json={"name": "svc"}, headers=auth).status_code == 201
    with Session(app.state.engine) as s:
        return s.exec(select(Stream).where(Stream.name == "svc")).one().id


def test_the_api_lists_the_queue_rows_and_answers_a_row_at_once(client, app, auth) -> None:
    sid = _stream(client, app, auth)
    early = NOW - timedelta(hours=2)
    flood = [_anomaly(app, sid, 7, early + timedelta(seconds=10 * i), f"disk quota low {i}") for i in range(3)]
    flood.append(_anomaly(app, sid, 7, early + timedelta(seconds=40), "session 9 stopped early", kind="window"))
    other = _anomaly(app, sid, 8, early + timedelta(seconds=50), "checksum bad")
    later = _anomaly(app, sid, 7, early + timedelta(hours=1), "disk quota low 9")  # a new incident

    rows = client.get("/api/v1/anomalies", params={"stream": "svc", "group": "template"}, headers=auth).json()
    assert [(r["template_id"], r["ids"]) for r in rows] == [(7, [later]), (8, [other]), (7, flood)]  # newest first
    assert rows[2]["kinds"] == {"line": 3, "window": 1} and rows[2]["count"] == 4
    assert rows[1]["incident"] == rows[2]["incident"] != rows[0]["incident"]
    assert len(client.get("/api/v1/anomalies", params={"stream": "svc"}, headers=auth).json()) == 6  # ungrouped

    r = client.post("/api/v1/anomalies/feedback", json={"ids": rows[2]["ids"], "label": "anomaly"}, headers=auth)
    assert r.status_code == 200 and r.json()["answered"] == 4
    left = client.get("/api/v1/anomalies", params={"stream": "svc", "group": "template"}, headers=auth).json()
    assert [r["ids"] for r in left] == [[later], [other]]
    again = client.post("/api/v1/anomalies/feedback", json={"ids": flood, "label": "normal"}, headers=auth)
    assert again.json()["answered"] == 0  # answered already: nothing changes

    assert client.post("/api/v1/anomalies/feedback", json={"ids": [999999], "label": "anomaly"},
                       headers=auth).status_code == 404
    assert client.post("/api/v1/anomalies/feedback", json={"ids": [], "label": "anomaly"}, headers=auth).status_code == 422
    assert client.get("/api/v1/anomalies", params={"group": "stream"}, headers=auth).status_code == 422


def test_a_new_anomaly_of_a_confirmed_incident_joins_it_instead_of_queueing(client, app, auth) -> None:
    sid = _stream(client, app, auth)
    confirmed = _anomaly(app, sid, 7, NOW - timedelta(seconds=100), "disk quota low 1")
    old = _anomaly(app, sid, 9, NOW - timedelta(hours=2), "fan failure 1")
    for aid in (confirmed, old):
        assert client.post("/api/v1/anomalies/feedback", json={"ids": [aid], "label": "anomaly"}, headers=auth).status_code == 200
    with Session(app.state.engine) as s:  # the confirmation itself is recent: backdate it to the anomaly's time
        row = s.get(Anomaly, old)
        row.updated_at = NOW - timedelta(hours=2)
        s.add(row)
        s.commit()
    rows = [{"template_id": t, "status": "open", "reasons": {}} for t in (7, 8, 9, None)]
    with Session(app.state.engine) as s:
        store.route_anomalies(s, sid, rows, NOW, gap_seconds=300)
    assert [r["status"] for r in rows] == ["confirmed", "open", "open", "open"]
    assert "incident" in rows[0]["reasons"]
