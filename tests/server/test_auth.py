from pathlib import Path

from fastapi.testclient import TestClient
from sqlmodel import Session

from logsense.server.app import create_app
from logsense.server.auth import create_api_key, hash_key, revoke_api_key

from .conftest import make_settings


def test_api_routes_need_a_valid_key(client: TestClient, api_key: str) -> None:
    r = client.get("/api/v1/streams")
    assert r.status_code == 401 and "missing API key" in r.json()["detail"]
    r = client.get("/api/v1/streams", headers={"X-API-Key": api_key[:-1] + ("A" if api_key[-1] != "A" else "B")})
    assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
    r = client.get("/api/v1/streams", headers={"X-API-Key": "junk"})
    assert r.status_code == 401
    assert client.get("/api/v1/streams", headers={"X-API-Key": api_key}).status_code == 200
    assert client.get("/healthz").status_code == 200  # outside /api: open


def test_revoked_key_is_refused(client: TestClient, app, api_key: str) -> None:
    with Session(app.state.engine) as s:
        from sqlmodel import select

        from logsense.server.tables import ApiKey

        row = s.exec(select(ApiKey)).one()
        assert revoke_api_key(s, row.id)
    r = client.get("/api/v1/streams", headers={"X-API-Key": api_key})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_only_the_hash_is_stored(client: TestClient, app, settings, api_key: str) -> None:
    assert api_key.startswith("ls_") and len(api_key) >= 40
    client.get("/api/v1/streams", headers={"X-API-Key": api_key})  # also writes last_used_at
    db = Path(settings.database_url.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))  # main file, -wal, -shm
    assert hash_key(api_key).encode() in stored  # the reading works ...
    assert api_key.encode() not in stored and api_key[12:].encode() not in stored  # ... and the key is not there


def test_keys_are_unique(client: TestClient, app) -> None:
    with Session(app.state.engine) as s:
        keys = {create_api_key(s, f"k{i}")[0] for i in range(5)}
    assert len(keys) == 5


def test_dev_mode_opens_the_api(tmp_path: Path, caplog) -> None:
    app = create_app(make_settings(tmp_path / "dev", dev_mode=True))
    with caplog.at_level("WARNING", logger="logsense"), TestClient(app) as c:
        assert c.get("/api/v1/streams").status_code == 200
        assert c.post("/api/v1/streams", json={"name": "svc"}).status_code == 201
        assert c.get("/api/v1/streams", headers={"X-API-Key": "wrong"}).status_code == 401  # a sent key is checked
    assert any("DEV MODE" in r.getMessage() for r in caplog.records)
