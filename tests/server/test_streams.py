from fastapi.testclient import TestClient
from sqlmodel import Session

from logsense.server.tables import LogLine

HDFS = {"name": "HDFS", "settings": {"format": "hdfs", "session_regex": r"blk_-?\d+", "train_mode": True}}


def test_create_list_read_update_delete(client: TestClient, auth: dict) -> None:
    r = client.post("/api/v1/streams", json=HDFS, headers=auth)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "HDFS" and body["settings"]["session_regex"] == r"blk_-?\d+"
    assert body["settings"]["rapid_k"] == 5  # defaults filled in
    client.post("/api/v1/streams", json={"name": "BGL", "settings": {"format": "bgl"}}, headers=auth)
    assert [s["name"] for s in client.get("/api/v1/streams", headers=auth).json()] == ["BGL", "HDFS"]
    assert client.get("/api/v1/streams/HDFS", headers=auth).json()["id"] == body["id"]

    r = client.patch("/api/v1/streams/HDFS", json={"settings": {"train_mode": False, "rapid_threshold": 0.3}},
                     headers=auth)
    assert r.status_code == 200, r.text
    got = r.json()["settings"]
    assert got["train_mode"] is False and got["rapid_threshold"] == 0.3
    assert got["session_regex"] == r"blk_-?\d+"  # untouched settings stay
    assert r.json()["updated_at"] >= body["updated_at"]

    assert client.delete("/api/v1/streams/BGL", headers=auth).status_code == 204
    assert client.get("/api/v1/streams/BGL", headers=auth).status_code == 404


def test_duplicate_name_is_409(client: TestClient, auth: dict) -> None:
    assert client.post("/api/v1/streams", json=HDFS, headers=auth).status_code == 201
    r = client.post("/api/v1/streams", json={"name": "HDFS"}, headers=auth)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]


def test_bad_settings_are_422_naming_the_field(client: TestClient, auth: dict) -> None:
    r = client.post("/api/v1/streams", json={"name": "x", "settings": {"session_regex": "blk_("}}, headers=auth)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "settings", "session_regex"]
    assert "session_regex" in r.json()["message"] and "regular expression" in r.json()["message"]
    cases = [
        {"name": "has space"},
        {"name": "x" * 65},
        {"name": "x", "settings": {"format": "nope"}},
        {"name": "x", "settings": {"rapid_k": 0}},
        {"name": "x", "settings": {"retrain_cron": "every night"}},
        {"name": "x", "settings": {"mask_rules": [{"name": "m", "regex": "[", "replacement": "<M>"}]}},
        {"name": "x", "settings": {"window_size": None, "session_regex": None}},
        {"name": "x", "settings": {"unknown": 1}},
        {"name": "x", "settings": {"loggpt_config": {"epochs": 3}}},  # LogGPTConfig calls it max_epochs
        {"name": "x", "settings": {"mask_rules": ["ip", "bogus"]}},  # no such preset
        {"name": 5},
    ]
    for body in cases:
        r = client.post("/api/v1/streams", json=body, headers=auth)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["message"]
    assert client.get("/api/v1/streams", headers=auth).json() == []


def test_patch_is_validated_as_a_whole(client: TestClient, auth: dict) -> None:
    client.post("/api/v1/streams", json=HDFS, headers=auth)
    r = client.patch("/api/v1/streams/HDFS", json={"settings": {"format_regex": "(?P<x"}}, headers=auth)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "settings", "format_regex"]
    r = client.patch("/api/v1/streams/HDFS", json={"settings": {"sesion_regex": "x"}}, headers=auth)
    assert r.status_code == 422 and "sesion_regex" in r.json()["message"]
    r = client.patch("/api/v1/streams/HDFS", json={"name": "renamed"}, headers=auth)
    assert r.status_code == 422  # names are fixed
    assert client.patch("/api/v1/streams/nope", json={"settings": {}}, headers=auth).status_code == 404


def test_unknown_stream_is_404(client: TestClient, auth: dict) -> None:
    for method in ("get", "delete"):
        r = getattr(client, method)("/api/v1/streams/nope", headers=auth)
        assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_delete_refuses_while_the_stream_holds_data(client: TestClient, app, settings, auth: dict) -> None:
    stream_id = client.post("/api/v1/streams", json=HDFS, headers=auth).json()["id"]
    with Session(app.state.engine) as s:
        s.add(LogLine(stream_id=stream_id, raw="x", masked="x"))
        s.commit()
    artifacts = settings.stream_dir(stream_id)
    artifacts.mkdir(parents=True)
    (artifacts / "index.json").write_text("{}")
    deleted = []
    app.state.stream_deleted_hooks.append(deleted.append)

    r = client.delete("/api/v1/streams/HDFS", headers=auth)
    assert r.status_code == 409 and "force=true" in r.json()["detail"]
    assert client.delete("/api/v1/streams/HDFS?force=true", headers=auth).status_code == 204
    assert deleted == [stream_id] and not artifacts.exists()
    with Session(app.state.engine) as s:
        assert s.get(LogLine, 1) is None
    assert client.post("/api/v1/streams", json=HDFS, headers=auth).status_code == 201  # the name is free again
