"""Alerts out: channels through the API, alerts queued in the event's transaction, delivered by
the dispatcher to a local webhook receiver (signed), after the receiver comes back and after a
restart (exactly once), to a real SMTP server (aiosmtpd; STARTTLS and SMTPS with a certificate
made by openssl), and to a real Alertmanager when Debian's package is installed. Rules: streams,
severity, new incidents only, digests (one message for several alerts, also across a restart);
channels changed and deleted."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlmodel import Session

from logsense.server import alerts, store
from logsense.server.app import create_app
from logsense.server.auth import create_api_key
from logsense.server.client import free_port
from logsense.server.tables import AlertChannel, AlertOutbox, Anomaly, Stream, utcnow

from . import helpers
from .conftest import make_settings, wait_ready
from .helpers import stop

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # the test SMTP server

SECRET = "s3cret-for-the-hmac-check"
PUBLIC = "https://logsense.example.org"
ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")


class Receiver:
    """A webhook receiver on 127.0.0.1:`port` that keeps what it was sent; `up()` / `down()`."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.got: list[dict] = []  # {"headers": lower-cased names, "body": bytes, "json": ...}
        self.status = 200
        self._server: ThreadingHTTPServer | None = None

    def up(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.got.append({"headers": headers, "body": body, "json": json.loads(body)})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def wait_for(what: Callable[[], object], timeout: float = 30.0, message: str = "") -> object:
    """`helpers.wait_for` polling faster and giving up sooner: a delivery takes a moment, not a training."""
    return helpers.wait_for(what, timeout, 0.05, message)


def verify(delivery: dict, secret: str = SECRET) -> dict:
    """What a receiver does: recompute the HMAC of the raw body and compare in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), delivery["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(delivery["headers"]["x-logsense-signature"], expected)
    return delivery["json"]


def _app(data_dir: Path, **overrides):  # noqa: ANN202
    return create_app(make_settings(data_dir, worker_poll_seconds=0.1, scheduler_enabled=False, public_url=PUBLIC,
                                    **overrides))


@contextmanager
def _serving(data_dir: Path, **overrides) -> Iterator[tuple]:  # noqa: ANN003
    """`_app` started and ready: yields (app, client, an admin key's headers)."""
    app = _app(data_dir, **overrides)
    with TestClient(app) as client:
        wait_ready(client)
        yield app, client, _key(app)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().up()
    yield r
    r.down()


def _key(app, scopes: list[str] | None = None) -> dict:  # noqa: ANN001
    with Session(app.state.engine) as session:
        key, _ = create_api_key(session, f"k{time.monotonic_ns()}", scopes)
    return {"X-API-Key": key}


def _stream_id(app, name: str) -> int:  # noqa: ANN001
    with Session(app.state.engine) as s:
        return s.execute(select(Stream.id).where(Stream.name == name)).scalar_one()


def _new_anomaly(app, stream_id: int, template_id: int, raw: str, severity: str = "watch",  # noqa: ANN001
                 when: datetime | None = None) -> int:
    """An anomaly stored as ingest stores one: routed, then `store.insert_anomalies` (the alert hook)."""
    now = when or utcnow()
    with store.write_session(app.state.engine) as s:
        (line_id,) = store.insert_lines(s, stream_id, now, {
            "raw": [raw], "masked": [raw], "template_id": [template_id], "sessions": [[]],
            "severity": [severity], "rapid_score": [0.6], "rapid_flag": [True]})
        rows = [{"stream_id": stream_id, "line_id": line_id, "window_id": None, "template_id": template_id,
                 "kind": "line", "severity": severity, "status": "open", "reasons": {}, "created_at": now,
                 "updated_at": now}]
        store.route_anomalies(s, stream_id, rows, now, 300)
        store.insert_anomalies(s, rows)
        return s.execute(select(Anomaly.id).where(Anomaly.line_id == line_id)).scalar_one()


def _outbox(app) -> list[AlertOutbox]:  # noqa: ANN001
    with Session(app.state.engine) as s:
        return list(s.execute(select(AlertOutbox).order_by(AlertOutbox.id)).scalars().all())


# --------------------------------------------------------------------------- webhook


def test_a_new_anomaly_fires_a_signed_webhook_and_its_refute_resolves_it(tmp_path: Path, receiver: Receiver) -> None:
    with _serving(tmp_path / "data") as (app, client, auth):
        r = client.post("/api/v1/alerts/channels", headers=auth, json={
            "name": "ops-hook", "kind": "webhook", "url": receiver.url, "secret": SECRET, "streams": ["svc"]})
        assert r.status_code == 201, r.text
        channel = r.json()
        assert channel["has_secret"] is True and "secret" not in channel and SECRET not in r.text
        for name, rules in (("danger-only", {"min_severity": "danger"}), ("other-stream", {"streams": ["other"]})):
            assert client.post("/api/v1/alerts/channels", headers=auth, json={
                "name": name, "kind": "webhook", "url": receiver.url, "secret": SECRET, **rules}).status_code == 201
        listed = client.get("/api/v1/alerts/channels", headers=auth)
        assert [c["name"] for c in listed.json()] == ["ops-hook", "danger-only", "other-stream"]
        assert SECRET not in listed.text

        # a stream out of train mode with no model yet: every unseen line is flagged (watch)
        assert client.post("/api/v1/streams", headers=auth, json={
            "name": "svc", "settings": {"train_mode": False,
                                        "context_url": "https://grafana.example/explore?s={stream}&from={from_ms}"}}
                           ).status_code == 201
        r = client.post("/api/v1/streams/svc/logs", headers=auth, json={"lines": ["disk quota exceeded on volume 7"]})
        assert r.status_code == 200 and r.json()["lines"][0]["severity"] == "watch", r.text
        (anomaly,) = client.get("/api/v1/anomalies", headers=auth, params={"stream": "svc"}).json()

        wait_for(lambda: receiver.got, message="the firing alert")
        firing = verify(receiver.got[0])
        assert receiver.got[0]["headers"]["x-logsense-event"] == "firing"
        assert firing["event"] == "firing" and firing["anomaly_id"] == anomaly["id"] and firing["stream"] == "svc"
        assert firing["severity"] == "watch" and firing["count"] == 1
        assert firing["example"] == "disk quota exceeded on volume 7"
        assert firing["link"] == f"{PUBLIC}/anomalies/{anomaly['id']}"
        assert firing["context_link"].startswith("https://grafana.example/explore?s=svc&from=")  # the stream's template
        wait_for(lambda: client.get("/api/v1/alerts/outbox", headers=auth, params={"state": "sent"}).json(),
                 message="the row marked sent")
        sent = client.get("/api/v1/alerts/outbox", headers=auth).json()
        assert [(o["channel"], o["event"], o["state"]) for o in sent] == [("ops-hook", "firing", "sent")]  # rules held
        metrics = client.get("/metrics", headers=auth).text
        assert 'logsense_alerts{channel="ops-hook",state="sent"} 1.0' in metrics
        assert re.search(r'logsense_open_anomalies\{severity="watch",stream="[^"]+"\} [1-9]', metrics)

        r = client.post(f"/api/v1/anomalies/{anomaly['id']}/feedback", headers=auth, json={"label": "normal"})
        assert r.status_code == 200 and r.json()["status"] == "refuted"
        wait_for(lambda: len(receiver.got) >= 2, message="the resolve")
        resolved = verify(receiver.got[1])
        assert resolved["event"] == "resolved" and resolved["status"] == "refuted"
        assert resolved["anomaly_id"] == anomaly["id"] and resolved["resolved_at"]
        wait_for(lambda: client.get("/api/v1/alerts/outbox", headers=auth, params={"state": "sent"}).json()[0]["event"]
                 == "resolved", message="the resolve marked sent")
        r = client.post(f"/api/v1/anomalies/{anomaly['id']}/feedback", headers=auth, json={"label": "anomaly"})
        assert r.status_code == 200  # answered again: it has its resolve already, no second one
        time.sleep(0.5)
        assert len(receiver.got) == 2

        # the test route sends now, signed; a dead receiver is a 502 naming the channel
        r = client.post(f"/api/v1/alerts/channels/{channel['id']}/test", headers=auth)
        assert r.status_code == 200 and r.json() == {"ok": True, "status": 200}
        assert verify(receiver.got[-1])["event"] == "test"
        receiver.status = 500
        r = client.post(f"/api/v1/alerts/channels/{channel['id']}/test", headers=auth)
        assert r.status_code == 502 and "ops-hook" in r.json()["detail"] and "500" in r.json()["detail"]
        assert client.post("/api/v1/alerts/channels/999/test", headers=auth).status_code == 404


def test_channels_are_checked_and_need_the_admin_scope(client, app, auth) -> None:  # noqa: ANN001
    def post(body: dict, headers: dict = auth) -> int:
        return client.post("/api/v1/alerts/channels", headers=headers, json=body).status_code

    assert post({"name": "h", "kind": "webhook", "url": "http://127.0.0.1:9/x"}) == 422  # a webhook is signed
    assert post({"name": "h", "kind": "slack", "url": "https://hooks.slack.com/services/T/B/x", "secret": SECRET}) == 422
    assert post({"name": "h", "kind": "webhook", "url": "ftp://x/y", "secret": SECRET}) == 422
    assert post({"name": "h", "kind": "pager", "url": "http://x/y"}) == 422
    assert post({"name": "s", "kind": "slack", "url": "https://hooks.slack.com/services/T0/B0/abcdef"}) == 201
    assert post({"name": "s", "kind": "slack", "url": "https://hooks.slack.com/services/T0/B0/abcdef"}) == 409
    (slack,) = client.get("/api/v1/alerts/channels", headers=auth).json()
    assert slack["url"] == "https://hooks.slack.com/services/***" and slack["has_secret"] is False  # its path is a secret

    reader = _key(app, ["read"])
    operator = _key(app, ["operate"])
    assert client.get("/api/v1/alerts/channels", headers=reader).status_code == 200
    assert client.get("/api/v1/alerts/outbox", headers=reader).status_code == 200
    assert post({"name": "a", "kind": "alertmanager", "url": "http://127.0.0.1:9093"}, operator) == 403
    assert client.delete(f"/api/v1/alerts/channels/{slack['id']}", headers=operator).status_code == 403
    assert client.post(f"/api/v1/alerts/channels/{slack['id']}/test", headers=reader).status_code == 403
    assert client.delete(f"/api/v1/alerts/channels/{slack['id']}", headers=auth).status_code == 204
    assert client.delete(f"/api/v1/alerts/channels/{slack['id']}", headers=auth).status_code == 404
    assert client.get("/api/v1/alerts/outbox", headers=auth, params={"state": "lost"}).status_code == 422


def test_slack_and_alertmanager_bodies() -> None:
    from logsense.server.alerts import render

    alert = {"event": "firing", "anomaly_id": 12, "stream": "svc", "kind": "line", "severity": "danger",
             "status": "open", "template_id": 7, "template": "disk quota low on <NUM>", "example": "disk quota low on 9",
             "count": 3, "created_at": "2026-12-09T10:00:00Z", "resolved_at": None, "link": f"{PUBLIC}/anomalies/12"}
    text = render("slack", alert)["text"]
    assert "danger" in text and "svc" in text and "disk quota low on <NUM>" in text and "3 anomalies" in text
    assert f"<{PUBLIC}/anomalies/12|" in text
    (am,) = render("alertmanager", alert)
    assert am["labels"] == {"alertname": "LogSenseAnomaly", "stream": "svc", "severity": "danger", "template_id": "7"}
    assert am["annotations"]["example"] == "disk quota low on 9" and am["annotations"]["link"] == alert["link"]
    assert am["startsAt"] == "2026-12-09T10:00:00Z" and "endsAt" not in am
    (done,) = render("alertmanager", {**alert, "event": "resolved", "resolved_at": "2026-12-09T11:00:00Z"})
    assert done["labels"] == am["labels"] and done["endsAt"] == "2026-12-09T11:00:00Z"


def test_one_alert_per_template_while_it_fires(tmp_path: Path, receiver: Receiver) -> None:
    """A flood of one template is one alert (with its count), not one per line; a mute resolves it."""
    with _serving(tmp_path / "data") as (app, client, auth):
        client.post("/api/v1/alerts/channels", headers=auth, json={
            "name": "hook", "kind": "webhook", "url": receiver.url, "secret": SECRET})
        client.post("/api/v1/streams", headers=auth, json={"name": "svc"})
        sid = _stream_id(app, "svc")
        first = _new_anomaly(app, sid, 7, "disk quota low 1")
        _new_anomaly(app, sid, 7, "disk quota low 2")  # the same template, still firing: no second alert
        other = _new_anomaly(app, sid, 8, "fan failure")
        wait_for(lambda: len(receiver.got) >= 2, message="two alerts")
        time.sleep(0.5)
        assert sorted(verify(d)["anomaly_id"] for d in receiver.got) == [first, other]

        r = client.post(f"/api/v1/anomalies/{first}/feedback", headers=auth,
                        json={"suppress_until": (utcnow() + timedelta(hours=1)).isoformat()})
        assert r.status_code == 200 and r.json()["status"] == "muted"
        wait_for(lambda: len(receiver.got) >= 3, message="the resolve of the muted template")
        muted = verify(receiver.got[2])
        assert muted["event"] == "resolved" and muted["status"] == "muted" and muted["anomaly_id"] == first
        assert _new_anomaly(app, sid, 7, "disk quota low 3")  # stored muted: no alert
        time.sleep(0.5)
        assert len(receiver.got) == 3
        assert [(o.event, o.state) for o in _outbox(app)] == [("firing", "sent")] * 2 + [("resolved", "sent")]


# --------------------------------------------------------------------------- durability


def test_an_alert_waits_for_its_receiver_and_survives_a_restart_sent_once(tmp_path: Path) -> None:
    receiver = Receiver()  # its port is free: nothing listens yet
    data = tmp_path / "data"
    with _serving(data) as (app, client, auth):
        app.state.alerts.dispatcher.backoff_base = 0.2
        assert client.post("/api/v1/alerts/channels", headers=auth, json={
            "name": "hook", "kind": "webhook", "url": receiver.url, "secret": SECRET}).status_code == 201
        client.post("/api/v1/streams", headers=auth, json={"name": "svc"})
        sid = _stream_id(app, "svc")

        one = _new_anomaly(app, sid, 1, "the receiver is down")
        wait_for(lambda: (o := _outbox(app)) and o[0].attempts >= 2 and o[0].state == "pending", message="retries")
        (row,) = client.get("/api/v1/alerts/outbox", headers=auth, params={"state": "pending"}).json()
        assert row["anomaly_id"] == one and row["last_error"] and row["attempts"] >= 2
        receiver.up()
        wait_for(lambda: receiver.got, timeout=15, message="delivery once the receiver is back")
        wait_for(lambda: _outbox(app)[0].state == "sent", message="marked sent")

        receiver.down()
        two = _new_anomaly(app, sid, 2, "claimed by a process that died")
        three = _new_anomaly(app, sid, 3, "queued behind it")
        wait_for(lambda: _outbox(app)[1].attempts >= 1, message="a failed try of the second")
        assert _outbox(app)[2].attempts == 0  # one at a time per channel, oldest first: it waits its turn
    # the process "dies" while sending `two`: its claim is left behind, and is taken again once it expires
    with Session(app.state.engine) as s:  # the engine is disposed, not closed: it reconnects
        s.execute(update(AlertOutbox).where(AlertOutbox.anomaly_id == two)
                  .values(state="sending", next_attempt_at=utcnow() - timedelta(seconds=1)))
        s.commit()

    receiver.up()
    try:
        again = _app(data)
        with TestClient(again) as client:
            wait_ready(client)
            wait_for(lambda: all(o.state == "sent" for o in _outbox(again)), timeout=20, message="sent after the restart")
            time.sleep(1.0)  # nothing more comes
        ids = [verify(d)["anomaly_id"] for d in receiver.got]
        assert sorted(ids) == [one, two, three]  # each exactly once, the one sent before the restart not again
        assert ids.index(two) < ids.index(three)  # oldest first
        assert [d["headers"]["x-logsense-delivery"] for d in receiver.got] == [
            str(o.id) for o in sorted(_outbox(again), key=lambda o: ids.index(o.anomaly_id))]
    finally:
        receiver.down()


def test_a_receiver_that_never_answers_2xx_ends_failed(tmp_path: Path, receiver: Receiver) -> None:
    receiver.status = 503
    app = _app(tmp_path / "data")
    with TestClient(app) as client:
        wait_ready(client)
        d = app.state.alerts.dispatcher
        d.backoff_base, d.max_attempts = 0.05, 3
        auth = _key(app)
        client.post("/api/v1/alerts/channels", headers=auth, json={
            "name": "hook", "kind": "webhook", "url": receiver.url, "secret": SECRET})
        client.post("/api/v1/streams", headers=auth, json={"name": "svc"})
        _new_anomaly(app, _stream_id(app, "svc"), 1, "nobody takes it")
        wait_for(lambda: client.get("/api/v1/alerts/outbox", headers=auth, params={"state": "failed"}).json(),
                 message="given up")
        (row,) = client.get("/api/v1/alerts/outbox", headers=auth).json()
        assert row["state"] == "failed" and row["attempts"] == 3 and "HTTP 503" in row["last_error"]
        assert len(receiver.got) == 3


def test_without_channels_ingest_queues_nothing(tmp_path: Path) -> None:
    app = _app(tmp_path / "data", alerts_enabled=False)
    with TestClient(app) as client:
        wait_ready(client)
        assert app.state.alerts.dispatcher is None
        auth = _key(app)
        client.post("/api/v1/streams", headers=auth, json={"name": "svc"})
        _new_anomaly(app, _stream_id(app, "svc"), 1, "no channel wants it")
        assert _outbox(app) == []


# --------------------------------------------------------------------------- Alertmanager


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    if not ALERTMANAGER.exists():
        pytest.skip(f"{ALERTMANAGER} not found: apt-get install prometheus-alertmanager")
    port = free_port()
    workdir = tmp_path / "alertmanager"
    workdir.mkdir()
    config = workdir / "alertmanager.yml"
    config.write_text('route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    proc = subprocess.Popen(
        [str(ALERTMANAGER), f"--config.file={config}", f"--storage.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=(workdir / "log.txt").open("w"))
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"alertmanager exited: {(workdir / 'log.txt').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, timeout=30, message="alertmanager ready")
        yield base
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _am_alerts(base: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v2/alerts?filter=alertname%3D%22LogSenseAnomaly%22", timeout=5) as r:
        return json.loads(r.read())


def test_alertmanager_gets_the_alert_and_its_resolve(tmp_path: Path, alertmanager: str) -> None:
    with _serving(tmp_path / "data") as (app, client, auth):
        r = client.post("/api/v1/alerts/channels", headers=auth, json={
            "name": "am", "kind": "alertmanager", "url": alertmanager})
        assert r.status_code == 201
        assert client.post(f"/api/v1/alerts/channels/{r.json()['id']}/test", headers=auth).status_code == 200
        client.post("/api/v1/streams", headers=auth, json={"name": "svc"})
        aid = _new_anomaly(app, _stream_id(app, "svc"), 7, "disk quota exceeded on volume 7", severity="watch")

        (got,) = wait_for(lambda: _am_alerts(alertmanager), message="the alert in Alertmanager")
        assert got["labels"] == {"alertname": "LogSenseAnomaly", "stream": "svc", "severity": "watch", "template_id": "7"}
        assert got["annotations"]["example"] == "disk quota exceeded on volume 7"
        assert got["annotations"]["link"] == f"{PUBLIC}/anomalies/{aid}"
        assert got["status"]["state"] == "active"

        assert client.post(f"/api/v1/anomalies/{aid}/feedback", headers=auth, json={"label": "anomaly"}).status_code == 200
        wait_for(lambda: not _am_alerts(alertmanager), message="the alert resolved (endsAt now)")
        wait_for(lambda: all(o.state == "sent" for o in _outbox(app)), message="the resolve marked sent")
        sent = client.get("/api/v1/alerts/outbox", headers=auth).json()
        assert [(o["event"], o["state"]) for o in sent] == [("resolved", "sent"), ("firing", "sent")]
        assert sent[0]["payload"]["status"] == "confirmed"


# --------------------------------------------------------------------------- email


class Mailbox:
    """An SMTP server (aiosmtpd) on 127.0.0.1:`port` that keeps the messages it takes; with `user`
    it asks for a login (AUTH PLAIN/LOGIN; over TLS when `tls` is set)."""

    def __init__(self, user: str | None = None, password: str | None = None, **tls) -> None:  # noqa: ANN003
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        box = self
        self.got: list[dict] = []  # {"from", "to", "msg": EmailMessage}

        class Handler:
            async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802
                box.got.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                "msg": message_from_bytes(envelope.content, policy=policy.default)})
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
            ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
                user.encode(), password.encode())
            return AuthResult(success=ok, handled=False)  # a failure answers 535

        auth = {"authenticator": authenticate, "auth_required": True,  # aiosmtpd counts only STARTTLS as TLS
                "auth_require_tls": "tls_context" in tls} if user else {}
        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **auth, **tls)

    def up(self) -> "Mailbox":
        self.controller.start()
        return self

    def down(self) -> None:
        self.controller.stop()

    def messages(self) -> list[EmailMessage]:
        return [g["msg"] for g in self.got]


MAIL_USER, MAIL_PASSWORD = "alerts", "p@ss w0rd!"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(MAIL_USER, MAIL_PASSWORD).up()
    yield box
    box.down()


def _mail_url(box: Mailbox, password: str = MAIL_PASSWORD, scheme: str = "smtp", extra: str = "") -> str:
    from urllib.parse import quote

    return (f"{scheme}://{MAIL_USER}:{quote(password, safe='')}@127.0.0.1:{box.port}"
            f"?from=logsense@example.org&to=ops@example.org,oncall+logs@example.org{extra}")


def test_email_alerts_reach_an_smtp_server_and_the_password_is_never_shown(tmp_path: Path, mailbox: Mailbox) -> None:
    with _serving(tmp_path / "data") as (app, client, auth):
        r = client.post("/api/v1/alerts/channels", headers=auth, json={
            "name": "mail", "kind": "email", "url": _mail_url(mailbox)})
        assert r.status_code == 201, r.text
        channel = r.json()
        assert channel["url"] == (f"smtp://{MAIL_USER}:***@127.0.0.1:{mailbox.port}"
                                  "?from=logsense@example.org&to=ops@example.org,oncall+logs@example.org")
        listed = client.get("/api/v1/alerts/channels", headers=auth).text
        for text in (r.text, listed):
            assert "w0rd" not in text and "p%40ss" not in text

        assert client.post("/api/v1/streams", headers=auth, json={
            "name": "svc", "settings": {"context_url": "https://grafana.example/explore?s={stream}&from={from_ms}"}}
                           ).status_code == 201
        aid = _new_anomaly(app, _stream_id(app, "svc"), 7, "disk quota exceeded on volume 7", severity="danger")
        wait_for(lambda: mailbox.got, message="the firing mail")
        (got,) = mailbox.got
        assert got["from"] == "logsense@example.org"
        assert got["to"] == ["ops@example.org", "oncall+logs@example.org"]  # a + in an address stays a +
        msg = got["msg"]
        assert msg["Subject"] == "[LogSense] danger · svc · disk quota exceeded on volume 7"
        assert msg["To"] == "ops@example.org, oncall+logs@example.org"
        body = msg.get_content()
        assert "New anomaly: stream svc, severity danger" in body
        assert "Example:  disk quota exceeded on volume 7" in body and "Count:    1 anomaly" in body
        assert f"Open in LogSense: {PUBLIC}/anomalies/{aid}" in body
        assert "The lines around it: https://grafana.example/explore?s=svc&from=" in body

        r = client.post(f"/api/v1/anomalies/{aid}/feedback", headers=auth, json={"label": "normal"})
        assert r.status_code == 200
        wait_for(lambda: len(mailbox.got) >= 2, message="the resolve mail")
        resolved = mailbox.got[1]["msg"]
        assert resolved["Subject"] == "[LogSense] resolved (refuted) · svc · disk quota exceeded on volume 7"
        assert "Resolved (refuted): stream svc" in resolved.get_content()
        wait_for(lambda: [o.state for o in _outbox(app)] == ["sent", "sent"], message="both marked sent")

        r = client.post(f"/api/v1/alerts/channels/{channel['id']}/test", headers=auth)
        assert r.status_code == 200 and r.json() == {"ok": True, "status": 250}
        assert mailbox.got[-1]["msg"]["Subject"] == \
            "[LogSense] test alert · (test) · LogSense test alert for channel mail"

        # a wrong password: the server's answer, as a 502 (and an outbox row retried), never the password
        r = client.patch(f"/api/v1/alerts/channels/{channel['id']}", headers=auth,
                         json={"url": _mail_url(mailbox, password="not-it")})
        assert r.status_code == 200 and "not-it" not in r.text
        r = client.post(f"/api/v1/alerts/channels/{channel['id']}/test", headers=auth)
        assert r.status_code == 502 and "SMTP 535" in r.json()["detail"] and "not-it" not in r.text


def test_email_urls_are_checked() -> None:
    def reason(url: str) -> str:
        with pytest.raises(ValueError) as err:
            alerts.smtp_target(url)
        return str(err.value)

    ok = alerts.smtp_target("smtps://u:p%2Fq@mail.example.org?from=a@example.org&to=b@example.org")
    assert (ok.host, ok.port, ok.tls, ok.user, ok.password) == ("mail.example.org", 465, "implicit", "u", "p/q")
    assert alerts.smtp_target("smtp://h.example?from=a@x.org&to=b@x.org&starttls=true").port == 587
    assert alerts.smtp_target("smtp://h.example?from=a@x.org&to=b@x.org").port == 25
    assert "one sender" in reason("smtp://h.example?to=b@x.org")
    assert "at least one recipient" in reason("smtp://h.example?from=a@x.org")
    assert "not https scheme" in reason("https://h.example?from=a@x.org&to=b@x.org")
    assert "names no host" in reason("smtp://?from=a@x.org&to=b@x.org")
    assert "unknown url parameter" in reason("smtp://h.example?from=a@x.org&to=b@x.org&cc=c@x.org")
    assert "not an email address" in reason("smtp://h.example?from=a@x.org&to=b@x.org%0d%0aBcc:%20c@x.org")
    assert "smtps:// speaks TLS" in reason("smtps://h.example?from=a@x.org&to=b@x.org&starttls=true")


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl not found")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@pytest.mark.parametrize("scheme", ["starttls", "smtps"])
def test_email_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    """STARTTLS and implicit TLS, the server's certificate checked (trusted here through SSL_CERT_FILE)."""
    import ssl

    cert, key = _certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    tls = {"tls_context": context, "require_starttls": True} if scheme == "starttls" else {"ssl_context": context}
    box = Mailbox(MAIL_USER, MAIL_PASSWORD, **tls).up()
    try:
        url = _mail_url(box, extra="&starttls=true") if scheme == "starttls" else _mail_url(box, scheme="smtps")
        with pytest.raises(alerts.DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):  # not trusted yet
            alerts.send_email(url, [alerts.test_alert(PUBLIC, "tls")])
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert alerts.send_email(url, [alerts.test_alert(PUBLIC, "tls")]) == 250
        assert box.messages()[0]["Subject"].startswith("[LogSense] test alert")
        if scheme == "starttls":  # the plain URL to a server that needs TLS first: refused, said why
            with pytest.raises(alerts.DeliveryError, match="add starttls=true"):
                alerts.send_email(_mail_url(box), [alerts.test_alert(PUBLIC, "tls")])
    finally:
        box.down()


# --------------------------------------------------------------------------- rules: new incidents, digests


def test_only_new_incidents_alert_once_per_incident(tmp_path: Path) -> None:
    every, first = Receiver().up(), Receiver().up()
    app = _app(tmp_path / "data", incident_gap_seconds=300)
    try:
        with TestClient(app) as client:
            wait_ready(client)
            auth = _key(app)
            for name, r, rules in (("every", every, {}), ("first", first, {"only_new_incidents": True})):
                assert client.post("/api/v1/alerts/channels", headers=auth, json={
                    "name": name, "kind": "webhook", "url": r.url, "secret": SECRET, **rules}).status_code == 201
            client.post("/api/v1/streams", headers=auth, json={"name": "svc"})
            client.post("/api/v1/streams", headers=auth, json={"name": "db"})
            sid, db = _stream_id(app, "svc"), _stream_id(app, "db")
            t0 = utcnow() - timedelta(hours=1)
            opens = _new_anomaly(app, sid, 1, "disk quota low", when=t0)
            _new_anomaly(app, sid, 2, "fan failure", when=t0 + timedelta(seconds=200))  # joins the incident
            _new_anomaly(app, sid, 3, "checksum bad", when=t0 + timedelta(seconds=450))  # 250 s after the last
            elsewhere = _new_anomaly(app, db, 2, "fan failure", when=t0 + timedelta(seconds=210))  # another stream's
            later = _new_anomaly(app, sid, 4, "power lost", when=t0 + timedelta(seconds=451 + 300))  # after the gap
            wait_for(lambda: len(every.got) >= 5 and len(first.got) >= 3, message="the alerts")
            time.sleep(0.5)
            assert len(every.got) == 5
            assert [verify(d)["anomaly_id"] for d in first.got] == [opens, elsewhere, later]
            r = client.patch("/api/v1/alerts/channels/2", headers=auth, json={"only_new_incidents": False})
            assert r.status_code == 200 and r.json()["only_new_incidents"] is False
            _new_anomaly(app, sid, 5, "fan noise", when=t0 + timedelta(seconds=800))  # in the incident: now it alerts
            wait_for(lambda: len(first.got) == 4, message="every anomaly once the rule is off")
    finally:
        every.down()
        first.down()


def test_a_digest_sends_one_message_for_several_alerts_even_across_a_restart(tmp_path: Path,
                                                                            receiver: Receiver) -> None:
    data = tmp_path / "data"
    with _serving(data) as (app, client, auth):
        r = client.post("/api/v1/alerts/channels", headers=auth, json={
            "name": "digest", "kind": "webhook", "url": receiver.url, "secret": SECRET, "digest_seconds": 2})
        assert r.status_code == 201 and r.json()["digest_seconds"] == 2
        client.post("/api/v1/streams", headers=auth, json={"name": "svc"})
        sid = _stream_id(app, "svc")
        ids = [_new_anomaly(app, sid, t, f"trouble {t}") for t in (1, 2, 3)]
        rows = _outbox(app)
        assert len({o.next_attempt_at for o in rows}) == 1  # one window
        assert rows[0].next_attempt_at > utcnow() + timedelta(seconds=1)
        time.sleep(0.5)
        assert receiver.got == []  # held for the window
        wait_for(lambda: receiver.got, message="the digest")
        time.sleep(0.5)
        (delivery,) = receiver.got
        digest = verify(delivery)
        assert delivery["headers"]["x-logsense-event"] == "digest"
        assert digest["event"] == "digest" and digest["count"] == 3
        assert [a["anomaly_id"] for a in digest["alerts"]] == ids
        assert [a["delivery_id"] for a in digest["alerts"]] == [o.id for o in rows]
        assert delivery["headers"]["x-logsense-delivery"] == ",".join(str(o.id) for o in rows)
        wait_for(lambda: [o.state for o in _outbox(app)] == ["sent"] * 3, message="all marked sent")

        # the resolves of two go through the digest too; the process stops before their window ends
        assert client.patch(f"/api/v1/alerts/channels/{r.json()['id']}", headers=auth,
                            json={"digest_seconds": 3600}).status_code == 200
        for aid in ids[:2]:
            r = client.post(f"/api/v1/anomalies/{aid}/feedback", headers=auth, json={"label": "normal"})
            assert r.status_code == 200
        _new_anomaly(app, sid, 4, "trouble 4")
    assert len(receiver.got) == 1
    held = _outbox(app)[3:]
    assert [o.state for o in held] == ["pending"] * 3 and len({o.next_attempt_at for o in held}) == 1  # one window
    with Session(app.state.engine) as s:  # it ends while the server is down
        s.execute(update(AlertOutbox).where(AlertOutbox.state == "pending")
                  .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    again = _app(data)
    with TestClient(again) as client:
        wait_ready(client)
        wait_for(lambda: len(receiver.got) >= 2, message="the digest after the restart")
        time.sleep(0.5)
        assert len(receiver.got) == 2
        second = verify(receiver.got[1])
        assert [(a["event"], a["anomaly_id"]) for a in second["alerts"]] == [
            ("resolved", ids[0]), ("resolved", ids[1]), ("firing", second["alerts"][2]["anomaly_id"])]
        wait_for(lambda: all(o.state == "sent" for o in _outbox(again)), message="all sent")


def test_a_digest_that_fails_is_retried_whole(tmp_path: Path, receiver: Receiver) -> None:
    receiver.status = 503
    app = _app(tmp_path / "data")
    with TestClient(app) as client:
        wait_ready(client)
        app.state.alerts.dispatcher.backoff_base = 0.2
        auth = _key(app)
        client.post("/api/v1/alerts/channels", headers=auth, json={
            "name": "digest", "kind": "webhook", "url": receiver.url, "secret": SECRET, "digest_seconds": 1})
        client.post("/api/v1/streams", headers=auth, json={"name": "svc"})
        sid = _stream_id(app, "svc")
        ids = [_new_anomaly(app, sid, t, f"trouble {t}") for t in (1, 2)]
        wait_for(lambda: len(receiver.got) >= 2, message="two failed tries")
        receiver.status = 200
        wait_for(lambda: [o.state for o in _outbox(app)] == ["sent", "sent"], message="sent once the receiver is back")
        assert all(len(verify(d)["alerts"]) == 2 for d in receiver.got)  # each try carried both
        assert [a["anomaly_id"] for a in verify(receiver.got[-1])["alerts"]] == ids
        assert {o.attempts for o in _outbox(app)} == {len(receiver.got)}


def test_digest_bodies_for_slack_alertmanager_and_email(mailbox: Mailbox) -> None:
    base = {"event": "firing", "stream": "svc", "kind": "line", "status": "open", "count": 1,
            "created_at": "2026-12-09T10:00:00Z", "resolved_at": None}
    two = [{**base, "anomaly_id": 1, "severity": "watch", "template_id": 7, "template": "disk quota low",
            "link": f"{PUBLIC}/anomalies/1"},
           {**base, "anomaly_id": 2, "severity": "danger", "template_id": 8, "template": "fan failure",
            "link": f"{PUBLIC}/anomalies/2", "event": "resolved", "status": "refuted"}]
    text = alerts.render_digest("slack", two)["text"]
    assert text.startswith("LogSense digest: 2 alerts\n") and len(text.splitlines()) == 3
    assert "disk quota low" in text.splitlines()[1] and "Resolved (refuted)" in text.splitlines()[2]
    am = alerts.render_digest("alertmanager", two)
    assert [a["labels"]["template_id"] for a in am] == ["7", "8"] and "endsAt" not in am[0]
    assert alerts.send(("email"), _mail_url(mailbox), None, two, [5, 6], digest=True) == 250
    (msg,) = mailbox.messages()
    assert msg["Subject"] == "[LogSense] digest: 2 alerts (danger) on svc"
    body = msg.get_content()
    assert "LogSense digest: 2 alerts" in body
    assert "Template: disk quota low" in body and "Template: fan failure" in body
    assert f"{PUBLIC}/anomalies/1" in body and "Resolved (refuted): stream svc" in body


# --------------------------------------------------------------------------- changing channels


def test_channels_are_changed_and_deleted_by_admins_only(client, app, auth, receiver: Receiver) -> None:  # noqa: ANN001
    def patch(cid: int, body: dict, headers: dict = auth):  # noqa: ANN202
        return client.patch(f"/api/v1/alerts/channels/{cid}", headers=headers, json=body)

    hook = client.post("/api/v1/alerts/channels", headers=auth, json={
        "name": "hook", "kind": "webhook", "url": receiver.url, "secret": SECRET}).json()
    slack = client.post("/api/v1/alerts/channels", headers=auth, json={
        "name": "slack", "kind": "slack", "url": "https://hooks.slack.com/services/T0/B0/abcdef"}).json()

    r = patch(hook["id"], {"streams": ["svc"], "min_severity": "danger", "digest_seconds": 300,
                           "only_new_incidents": True})
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["streams"], got["min_severity"], got["digest_seconds"], got["only_new_incidents"], got["has_secret"]) \
        == (["svc"], "danger", 300, True, True)  # the secret is kept when the change does not name it
    r = patch(hook["id"], {"streams": None, "digest_seconds": None, "secret": "another-secret-of-16+"})
    assert r.status_code == 200 and r.json()["streams"] is None and r.json()["digest_seconds"] is None
    assert "another-secret" not in r.text
    with Session(app.state.engine) as s:
        assert s.get(AlertChannel, hook["id"]).secret == "another-secret-of-16+"

    for cid, body, reason in (
        (hook["id"], {"secret": None}, "needs a secret"),
        (hook["id"], {"url": "ftp://x/y"}, "http:// or https://"),
        (hook["id"], {"kind": "email"}, "email channel's url"),
        (hook["id"], {"digest_seconds": 0}, "greater than or equal to 1"),
        (hook["id"], {"min_severity": "panic"}, "'watch' or 'danger'"),
        (hook["id"], {"enabled": None}, "valid boolean"),
        (hook["id"], {"colour": "red"}, "Extra inputs"),
        (slack["id"], {"secret": SECRET}, "takes no secret"),
        (slack["id"], {"url": "https://hooks.slack.com/services/***"}, "the url holds ***"),  # what the API shows
    ):
        r = patch(cid, body)
        assert r.status_code == 422 and reason in r.text, (body, r.text)
        assert SECRET not in r.text and "another-secret" not in r.text
    assert patch(hook["id"], {"name": "slack"}).status_code == 409
    assert patch(999, {"enabled": False}).status_code == 404
    assert patch(hook["id"], {"name": "hook-2"}).json()["name"] == "hook-2"

    operator, reader = _key(app, ["operate"]), _key(app, ["read"])
    for headers in (operator, reader):
        assert patch(hook["id"], {"enabled": False}, headers).status_code == 403
        assert client.delete(f"/api/v1/alerts/channels/{hook['id']}", headers=headers).status_code == 403

    # disabled: new anomalies queue nothing to it; its queued rows go when it is deleted
    client.post("/api/v1/streams", headers=auth, json={"name": "svc"})
    sid = _stream_id(app, "svc")
    assert patch(slack["id"], {"enabled": False}).json()["enabled"] is False
    _new_anomaly(app, sid, 1, "queued for the hook only", severity="danger")  # the hook wants danger now
    wait_for(lambda: receiver.got, message="the alert to the enabled channel")
    assert [o.channel_id for o in _outbox(app)] == [hook["id"]]
    assert client.delete(f"/api/v1/alerts/channels/{hook['id']}", headers=auth).status_code == 204
    assert _outbox(app) == []
    assert client.delete(f"/api/v1/alerts/channels/{hook['id']}", headers=auth).status_code == 404
    assert [c["name"] for c in client.get("/api/v1/alerts/channels", headers=auth).json()] == ["slack"]
