"""Numbers, dates and ids at the edge of what the database stores are a 422 with a reason (or a
line's error), never a 500; shippers' epoch milliseconds are read as milliseconds."""

from __future__ import annotations

from sqlmodel import Session, func, select

from logsense.server.tables import LogLine

LINE = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38 terminating"
BIG = 2**63


def test_ids_beyond_a_64_bit_integer_are_422(client, auth) -> None:
    client.post("/api/v1/streams", json={"name": "svc"}, headers=auth)
    for url in (f"/api/v1/anomalies/{BIG}", f"/api/v1/jobs/{BIG}", f"/api/v1/anomalies?after_id={BIG}",
                f"/api/v1/streams/svc/lines?after_id={BIG}", f"/api/v1/streams/svc/windows?after_id={BIG}"):
        r = client.get(url, headers=auth)
        assert r.status_code == 422 and r.json()["message"], url
    assert client.post(f"/api/v1/streams/svc/models/{BIG}/rollback", headers=auth).status_code == 422
    r = client.post("/api/v1/anomalies/feedback", json={"ids": [BIG], "label": "normal"}, headers=auth)
    assert r.status_code == 422
    assert client.get(f"/api/v1/anomalies/{BIG - 1}", headers=auth).status_code == 404  # the largest id: just unknown


def test_dates_that_leave_the_calendar_in_utc_are_422(client, auth) -> None:
    r = client.get("/api/v1/anomalies", params={"since": "0001-01-01T00:00:00+14:00"}, headers=auth)
    assert r.status_code == 422 and "range" in r.json()["message"]
    r = client.post("/api/v1/anomalies/1/feedback", json={"suppress_until": "9999-12-31T23:59:59-14:00"}, headers=auth)
    assert r.status_code == 422 and "range" in r.json()["message"]
    assert client.get("/api/v1/anomalies", params={"since": "2024-05-01T12:30:00+02:00"}, headers=auth).status_code == 200


def test_record_timestamps_in_ms_are_read_as_ms_and_impossible_ones_are_a_line_error(served) -> None:
    client, auth, app = served
    assert client.post("/api/v1/streams", json={"name": "hdfs", "settings": {"format": "hdfs"}}, headers=auth).status_code == 201
    records = [{"message": LINE, "timestamp": 1733000000000}, {"message": LINE, "timestamp": 1733000000},
               {"message": LINE, "timestamp": 1e308}, {"message": LINE, "timestamp": -1e18},
               {"message": LINE, "timestamp": "0001-01-01T00:00:00+14:00"}, {"message": LINE, "timestamp": 1733000000e9}]
    r = client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"records": records})
    assert r.status_code == 207, r.text
    body = r.json()
    assert [x["index"] for x in body["lines"]] == [0, 1, 5]
    assert {e["index"] for e in body["errors"]} == {2, 3, 4}
    with Session(app.state.engine) as session:
        stamps = [session.get(LogLine, x["id"]).timestamp for x in body["lines"]]
    assert stamps == [1733000000.0, 1733000000.0, 1733000000.0]


def test_a_retried_batch_with_an_idempotency_key_is_answered_again_not_stored_twice(served) -> None:
    client, auth, app = served
    client.post("/api/v1/streams", json={"name": "hdfs", "settings": {"format": "hdfs"}}, headers=auth)
    client.post("/api/v1/streams", json={"name": "other", "settings": {"format": "hdfs"}}, headers=auth)
    keyed = {**auth, "Idempotency-Key": "batch-0001"}
    first = client.post("/api/v1/streams/hdfs/logs", headers=keyed, json={"lines": [LINE, LINE, 7]})
    again = client.post("/api/v1/streams/hdfs/logs", headers=keyed, json={"lines": [LINE, LINE, 7]})
    assert first.status_code == again.status_code == 207
    assert again.content == first.content and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    elsewhere = client.post("/api/v1/streams/other/logs", headers=keyed, json={"lines": [LINE]})  # keys are per stream
    assert elsewhere.status_code == 200 and "Idempotent-Replayed" not in elsewhere.headers
    fresh = client.post("/api/v1/streams/hdfs/logs", headers={**auth, "Idempotency-Key": "batch-0002"}, json={"lines": [LINE]})
    assert fresh.json()["accepted"] == 1
    with Session(app.state.engine) as session:
        assert session.exec(select(func.count()).select_from(LogLine)).one() == 4  # 2 + 1 + 1
    r = client.post("/api/v1/streams/hdfs/logs", headers={**auth, "Idempotency-Key": "x" * 256}, json={"lines": [LINE]})
    assert r.status_code == 422


def test_settings_that_would_break_a_stream_are_refused_with_the_field_named(client, auth) -> None:
    bad = {"window_seconds": 5e-324, "idle_timeout_seconds": 1e300, "loggpt_config": {"n_layer": 1_000_000},
           "format_regex": r"(?P<timestamp>\S+) (?P<level>\w+)", "session_regex": "", "retrain_cron": "0 0 31 2 *"}
    for name, value in bad.items():
        r = client.post("/api/v1/streams", json={"name": "s", "settings": {name: value}}, headers=auth)
        assert r.status_code == 422 and name in r.text, (name, r.text)
    r = client.post("/api/v1/streams", content=b'{"name": "s", "settings": {"idle_timeout_seconds": 1e309}}',
                    headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 422  # JSON's 1e309 is infinity
    r = client.post("/api/v1/streams", json={"name": "s", "settings": {"loggpt_config": {"n_embd": -1}}}, headers=auth)
    assert r.status_code == 422 and "n_embd" in r.text
    ok = {"format_regex": r"(?P<timestamp>\S+) (?P<message>.*)", "retrain_cron": "0 2 * * *", "idle_timeout_seconds": 60}
    assert client.post("/api/v1/streams", json={"name": "s", "settings": ok}, headers=auth).status_code == 201


def test_settings_an_older_version_stored_fall_back_to_their_defaults(client, auth, app) -> None:
    from logsense.server.tables import Stream

    assert client.post("/api/v1/streams", json={"name": "old", "settings": {"format": "hdfs"}}, headers=auth).status_code == 201
    with Session(app.state.engine) as session:  # as an older version let it through
        row = session.exec(select(Stream).where(Stream.name == "old")).one()
        row.settings = {**row.settings, "idle_timeout_seconds": 0.001, "window_seconds": 5e-324,
                        # Python's re ran these; RE2 (linear time) cannot: a backreference, a lookahead
                        "session_regex": r"(blk_\d+).*\1", "mask_rules": [{"name": "x", "regex": r"(?=\d)\w+"}]}
        session.add(row)
        session.commit()
    got = client.get("/api/v1/streams/old", headers=auth)
    assert got.status_code == 200 and got.json()["settings"]["idle_timeout_seconds"] == 300.0
    assert got.json()["settings"]["session_regex"] is None and got.json()["settings"]["mask_rules"] is None
    r = client.post("/api/v1/streams/old/logs", headers=auth, json={"lines": [LINE]})
    assert r.status_code == 200, r.text


def test_methods_content_types_names_and_nul_characters_get_clear_answers(served) -> None:
    client, auth, app = served
    assert client.post("/api/v1/streams", json={"name": "hdfs", "settings": {"format": "hdfs"}}, headers=auth).status_code == 201
    r = client.request("OPTIONS", "/api/v1/streams/hdfs", headers=auth)
    assert r.status_code == 204 and {"GET", "PATCH", "DELETE"} <= set(r.headers["allow"].split(", "))
    r = client.put("/api/v1/streams/hdfs", json={}, headers=auth)
    assert r.status_code == 405 and "PATCH" in r.headers["allow"]
    r = client.post("/api/v1/streams", content=b'{"name": "x"}', headers=auth)  # no Content-Type
    assert r.status_code == 415 and "Content-Type" in r.json()["detail"]
    assert client.post("/api/v1/streams/hdfs/flush", headers=auth).status_code == 200  # no body: no type needed
    for name in (".", ".."):
        assert client.post("/api/v1/streams", json={"name": name}, headers=auth).status_code == 422
    r = client.post("/api/v1/streams/hdfs/logs", headers=auth, json={"records": [
        {"message": LINE, "session": "a\x00b"}, {"message": LINE, "session": "ok"}]})
    assert r.status_code == 207 and r.json()["errors"][0]["index"] == 0 and "NUL" in r.json()["errors"][0]["error"]
    r = client.post("/api/v1/anomalies/1/feedback", json={"label": "normal", "note": "bad\x00note"}, headers=auth)
    assert r.status_code == 422
