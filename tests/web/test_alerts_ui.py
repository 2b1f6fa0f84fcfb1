"""The `/alerts` page (TestClient on a real app): channels with their rules and outbox counts, the
add form and its checks, enable/disable, "Send test" and delete for an admin; a viewer sees the
channels but no form and no buttons, and its posts are refused."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from logsense.server.app import create_app
from logsense.server.settings import Settings
from logsense.server.tables import AlertChannel, AlertOutbox
from logsense.server.users import create_user
from tests.server.test_alerts import SECRET, Receiver

from .conftest import csrf_of, login

HX = {"HX-Request": "true"}
PASSWORDS = {"ann": "admin password", "vic": "viewer password"}


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[object]:
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("LOGSENSE_"):
                mp.delenv(name)
        settings = Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("alerts-ui") / "data",
                            worker_enabled=False, scheduler_enabled=False, alerts_enabled=False)  # rows stay as put
        app = create_app(settings)
        with TestClient(app):
            with Session(app.state.engine) as s:
                create_user(s, "ann", PASSWORDS["ann"], role="admin")
                create_user(s, "vic", PASSWORDS["vic"], role="viewer")
            yield app


def _as(app, user: str) -> TestClient:  # noqa: ANN001
    return login(TestClient(app), user, PASSWORDS[user], "/alerts")


def test_an_admin_adds_switches_tests_and_deletes_channels(ui) -> None:  # noqa: ANN001
    ann = _as(ui, "ann")
    page = ann.get("/alerts")
    assert page.status_code == 200 and '<a href="/alerts" class="on" aria-current="page">Alerts</a>' in page.text
    assert 'id="add-channel"' in page.text and "No alert channels yet" in page.text
    token = csrf_of(page.text)
    receiver = Receiver().up()
    try:
        form = {"csrf_token": token, "name": "ops-hook", "kind": "webhook", "url": receiver.url, "secret": SECRET,
                "streams": "svc, db", "min_severity": "danger", "digest_seconds": "300", "only_new_incidents": "on"}
        r = ann.post("/alerts", data=form, headers=HX)
        assert r.status_code == 200 and "Channel ops-hook added." in r.text
        assert not r.text.lstrip().startswith("<!doctype")  # the partial only
        assert "svc, db · danger and up" in r.text
        assert "new incidents only" in r.text and "digest every 5 min" in r.text
        assert SECRET not in r.text
        r = ann.post("/alerts", data={**form, "name": "mail", "kind": "email", "secret": "",
                                      "url": "smtp://u:hunter2-secret@127.0.0.1:9?from=a@example.org"}, headers=HX)
        assert r.status_code == 422 and "at least one recipient" in r.text
        assert 'value="mail"' in r.text  # what was typed stays in the form (a secret field does not)
        r = ann.post("/alerts", data={**form, "name": "h2", "secret": "short"}, headers=HX)
        assert r.status_code == 422 and "at least 16 characters" in r.text and 'value="short"' not in r.text
        r = ann.post("/alerts", data={**form, "digest_seconds": "soon"}, headers=HX)
        assert r.status_code == 422 and "valid integer" in r.text
        r = ann.post("/alerts", data=form, headers=HX)
        assert r.status_code == 422 and "already exists" in r.text
        mail_url = "smtp://u:hunter2-secret@127.0.0.1:9?from=a@example.org&to=b@example.org"
        r = ann.post("/alerts", data={**form, "name": "mail", "kind": "email", "secret": "", "url": mail_url},
                     follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/alerts"  # without htmx: back to the page
        with Session(ui.state.engine) as s:
            hook, mail = s.exec(select(AlertChannel).order_by(AlertChannel.id)).all()
            s.expunge_all()  # their ids and names stay readable after the commit
            s.add(AlertOutbox(channel_id=hook.id, event="firing", payload={}, state="failed", attempts=10,
                              last_error="HTTP 503: try later"))
            s.add(AlertOutbox(channel_id=hook.id, event="firing", payload={}, state="sent"))
            s.add(AlertOutbox(channel_id=hook.id, event="resolved", payload={}, state="sent"))
            s.commit()
        page = ann.get("/alerts").text
        assert "u:***@127.0.0.1" in page and "hunter2" not in page
        assert "sent 2" in page and "failed 1" in page and "HTTP 503: try later" in page

        r = ann.post(f"/alerts/{hook.id}/enabled", data={"enabled": "off"}, headers={**HX, "X-CSRF-Token": token})
        assert r.status_code == 200 and "Channel ops-hook disabled." in r.text and ">Enable</button>" in r.text
        with Session(ui.state.engine) as s:
            assert s.get(AlertChannel, hook.id).enabled is False
        assert ann.post(f"/alerts/{hook.id}/enabled", data={"enabled": "maybe"},
                        headers={**HX, "X-CSRF-Token": token}).status_code == 400

        r = ann.post(f"/alerts/{hook.id}/test", headers={**HX, "X-CSRF-Token": token})
        assert r.status_code == 200 and "Test alert delivered (the receiver answered 200)." in r.text
        assert receiver.got[-1]["json"]["event"] == "digest"  # a digest channel's shape: a digest of one
        r = ann.post(f"/alerts/{mail.id}/test", headers={**HX, "X-CSRF-Token": token})
        assert r.status_code == 200 and "Test alert not delivered: channel &#39;mail&#39;" in r.text
        assert "hunter2" not in r.text
        assert ann.post("/alerts/999/test", headers={**HX, "X-CSRF-Token": token}).status_code == 404

        r = ann.post(f"/alerts/{hook.id}/delete", headers={**HX, "X-CSRF-Token": token})
        assert r.status_code == 200 and "Channel ops-hook deleted" in r.text
        assert f'id="channel-{hook.id}"' not in r.text
        with Session(ui.state.engine) as s:
            assert s.exec(select(AlertOutbox)).all() == []
        assert ann.post(f"/alerts/{hook.id}/delete", headers={**HX, "X-CSRF-Token": token}).status_code == 404
        assert ann.post(f"/alerts/{mail.id}/delete", data={}).status_code == 403  # no CSRF token
    finally:
        receiver.down()


def test_a_viewer_sees_the_channels_but_cannot_change_them(ui) -> None:  # noqa: ANN001
    with Session(ui.state.engine) as s:
        s.add(AlertChannel(name="viewed", kind="slack", url="https://hooks.slack.com/services/T0/B0/secret-path"))
        s.commit()
        cid = s.exec(select(AlertChannel.id).where(AlertChannel.name == "viewed")).one()
    vic = _as(ui, "vic")
    page = vic.get("/alerts")
    assert page.status_code == 200 and "viewed" in page.text and "secret-path" not in page.text
    assert 'id="add-channel"' not in page.text and "Send test" not in page.text and ">Disable</button>" not in page.text
    partial = vic.get("/alerts", headers=HX).text
    assert "viewed" in partial and "<!doctype" not in partial.lower()  # htmx gets the channels only
    token = csrf_of(vic.get("/jobs").text)
    for path, data in (("/alerts", {"name": "x", "kind": "slack", "url": "https://x.example.org/y"}),
                       (f"/alerts/{cid}/enabled", {"enabled": "off"}), (f"/alerts/{cid}/test", {}),
                       (f"/alerts/{cid}/delete", {})):
        r = vic.post(path, data={**data, "csrf_token": token})
        assert r.status_code == 403 and "This needs the admin role" in r.text, path
    with Session(ui.state.engine) as s:
        assert s.get(AlertChannel, cid).enabled is True
    assert TestClient(ui).get("/alerts", follow_redirects=False).headers["location"] == "/login?next=%2Falerts"
