"""API keys with scopes: a shipper's key posts lines and nothing else; a key limited to a stream
touches no other; every API route's need is named in one table."""

from __future__ import annotations

from sqlmodel import Session

from logsense.server.auth import ROUTE_SCOPES, Scope, create_api_key, needed_scope

LINE = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38 terminating"


def _key(app, scopes, streams=None) -> dict:  # noqa: ANN001
    with Session(app.state.engine) as session:
        key, _ = create_api_key(session, f"k-{'-'.join(scopes)}", scopes, streams)
    return {"X-API-Key": key}


def test_a_shippers_key_posts_lines_and_nothing_else(client, app, auth) -> None:
    assert client.post("/api/v1/streams", json={"name": "svc", "settings": {"format": "hdfs"}}, headers=auth).status_code == 201
    shipper = _key(app, ["ingest"])
    assert client.post("/api/v1/streams/svc/logs", json={"lines": [LINE]}, headers=shipper).status_code == 200
    for method, url in (("GET", "/api/v1/streams"), ("GET", "/api/v1/anomalies"), ("DELETE", "/api/v1/streams/svc"),
                        ("PATCH", "/api/v1/streams/svc"), ("POST", "/api/v1/streams/svc/train")):
        r = client.request(method, url, headers=shipper, json={"settings": {}} if method == "PATCH" else None)
        assert r.status_code == 403 and "needs" in r.json()["detail"], (method, url, r.text)
    reader = _key(app, ["read"])
    assert client.get("/api/v1/streams", headers=reader).status_code == 200
    assert client.post("/api/v1/streams/svc/logs", json={"lines": [LINE]}, headers=reader).status_code == 403
    operator = _key(app, ["operate"])
    assert client.get("/api/v1/anomalies", headers=operator).status_code == 200
    assert client.post("/api/v1/anomalies/feedback", json={"ids": [1], "label": "normal"}, headers=operator).status_code == 404
    assert client.delete("/api/v1/streams/svc", headers=operator).status_code == 403


def test_a_key_limited_to_a_stream_touches_no_other(client, app, auth) -> None:
    for name in ("a", "b"):
        client.post("/api/v1/streams", json={"name": name, "settings": {"format": "hdfs"}}, headers=auth)
    only_a = _key(app, ["ingest", "read"], ["a"])
    assert client.post("/api/v1/streams/a/logs", json={"lines": [LINE]}, headers=only_a).status_code == 200
    r = client.post("/api/v1/streams/b/logs", json={"lines": [LINE]}, headers=only_a)
    assert r.status_code == 403 and "limited to streams" in r.json()["detail"]
    assert client.get("/api/v1/streams/a/lines", headers=only_a).status_code == 200
    assert client.get("/api/v1/anomalies", headers=only_a).status_code == 403  # not one stream's route


def test_every_api_route_has_a_stated_need(app) -> None:
    paths = app.openapi()["paths"]  # every API route, as the spec lists them
    writes = [(m.upper(), p) for p, ops in paths.items() if p.startswith("/api/") for m in ops if m not in ("get", "head")]
    assert writes and all((m, p) in ROUTE_SCOPES for m, p in writes), [w for w in writes if w not in ROUTE_SCOPES]
    assert needed_scope("GET", "/api/v1/anything") is Scope.READ
    assert needed_scope("PUT", "/api/v1/anything") is Scope.ADMIN  # a write nobody named: admin only


def test_the_spec_names_the_errors_each_route_can_give(app) -> None:
    paths = app.openapi()["paths"]
    feedback = paths["/api/v1/anomalies/{anomaly_id}/feedback"]["post"]["responses"]
    assert {"401", "403", "404", "422", "400", "413", "415", "503"} <= set(feedback)
    listing = paths["/api/v1/streams"]["get"]["responses"]
    assert {"401", "403"} <= set(listing) and "404" not in listing and "413" not in listing


def test_metrics_need_a_reading_key_unless_public(client, app, auth) -> None:
    assert client.get("/metrics").status_code == 401
    key = auth["X-API-Key"]
    assert client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 200  # as Prometheus sends it
    assert client.get("/metrics", headers=_key(app, ["ingest"])).status_code == 403
    assert client.get("/metrics", headers=_key(app, ["read"], ["a"])).status_code == 403  # names every stream
    app.state.settings.metrics_public = True
    assert client.get("/metrics").status_code == 200
