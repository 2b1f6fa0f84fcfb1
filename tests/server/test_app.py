from fastapi.testclient import TestClient

from logsense.server.app import create_app

from .conftest import make_settings, wait_ready


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert client.get("/ready").json() == r.json()  # Loki's path, for shippers' health checks


def test_ready_checks_can_say_not_ready(client: TestClient, app) -> None:
    app.state.ready_checks.append(lambda app: "models: HDFS not loaded")
    app.state.ready_checks.append(lambda app: 1 / 0)
    r = client.get("/readyz")
    assert r.status_code == 503 and client.get("/ready").status_code == 503
    reasons = r.json()["reasons"]
    assert "models: HDFS not loaded" in reasons and any("ZeroDivisionError" in x for x in reasons)


def test_readyz_is_503_when_the_database_is_gone(client: TestClient, app, tmp_path) -> None:
    from sqlalchemy import create_engine

    app.state.engine.dispose()
    app.state.engine = create_engine(f"sqlite:///{tmp_path}")  # a directory: cannot be opened
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["reasons"][0].startswith("database")


def test_start_prepares_data_dir_and_database(tmp_path) -> None:
    settings = make_settings(tmp_path / "fresh" / "data")
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        assert c.get("/readyz").status_code == 200
    assert (tmp_path / "fresh" / "data" / "logsense.db").exists()


def test_metrics_expose_request_and_domain_metrics(client: TestClient, auth: dict) -> None:
    client.get("/healthz")
    client.post("/api/v1/streams", json={"name": "svc"}, headers=auth)
    text = client.get("/metrics", headers=auth).text
    assert 'logsense_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="/api/v1/streams",status="201"' in text  # whole route template
    assert "logsense_http_request_duration_seconds_bucket" in text
    for name in ("logsense_lines_ingested_total", "logsense_verdicts_total", "logsense_feedback_total",
                 "logsense_queue_depth", "logsense_model_version", "logsense_last_training_timestamp_seconds",
                 "logsense_windows_checked_total"):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    assert 'logsense_queue_depth{stream="svc"} 0.0' in text
    assert 'logsense_open_anomalies{severity="danger",stream="svc"} 0.0' in text
    assert 'logsense_model_version{kind="loggpt",stream="svc"} 0.0' in text


def test_bad_input_is_4xx_never_500(client: TestClient, auth: dict) -> None:
    json_header = {**auth, "content-type": "application/json"}
    r = client.post("/api/v1/streams", content=b'{"name": ', headers=json_header)
    assert r.status_code == 400 and "malformed JSON" in r.json()["message"]
    r = client.post("/api/v1/streams", content=b"\xff\xfe\x00\x9cjunk", headers=json_header)
    assert 400 <= r.status_code < 500
    r = client.post("/api/v1/streams", content=b"[1, 2]", headers=json_header)
    assert r.status_code == 422 and r.json()["message"]
    r = client.post("/api/v1/streams", content=b"name=x", headers={**auth, "content-type": "text/plain"})
    assert 400 <= r.status_code < 500
    r = client.post("/api/v1/streams", json={"name": "x", "settings": {"rapid_k": "many"}}, headers=auth)
    assert r.status_code == 422 and "rapid_k" in r.json()["message"]
    assert client.get("/api/v1/nothing-here", headers=auth).status_code == 404


def test_oversized_bodies_are_413(tmp_path) -> None:
    with TestClient(create_app(make_settings(tmp_path, dev_mode=True, max_request_bytes=1000))) as c:
        r = c.post("/api/v1/streams", content=b"x" * 2000, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "max_request_bytes" in r.json()["detail"]

        def chunks():  # no Content-Length: counted while read
            for _ in range(5):
                yield b" " * 500

        r = c.post("/api/v1/streams", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/api/v1/streams", json={"name": "small"}).status_code == 201


def test_openapi_docs(client: TestClient) -> None:
    import re

    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert assets and all(a.startswith("/") for a in assets), assets  # no CDN: works without internet
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    spec = client.get("/openapi.json").json()
    assert "/api/v1/streams" in spec["paths"] and "/readyz" in spec["paths"]
    schemes = spec["components"]["securitySchemes"].values()
    assert any(s.get("name") == "X-API-Key" for s in schemes)
