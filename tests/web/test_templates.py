"""The web UI's pages as HTML (TestClient on a real app: SQLite, migrations, the real embedder):
rows, buttons, whole page vs HTMX partial, login redirects, CSRF rejection, security headers,
bad input as 4xx, and `logsense user create`."""

from __future__ import annotations

import re
import stat
from collections import namedtuple
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from logsense.server import store
from logsense.server.app import create_app
from logsense.server.settings import Settings
from logsense.server.tables import (Anomaly, Feedback, Job, LogLine, ModelVersion, Stream, TemplateMute, Window,
                                   WindowLine)
from logsense.server.ui.queue import incidents_of
from logsense.server.ui.security import SESSION_COOKIE, secret_key
from logsense.server.users import authenticate, create_user
from tests.server.helpers import started_app

from .conftest import csrf_of, login

USER, PASSWORD = "op", "password123"
HX = {"HX-Request": "true"}
BASE = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)
REPO = Path(__file__).resolve().parents[2]


def _settings(data_dir: Path, **kw) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, worker_enabled=False, scheduler_enabled=False, **kw)


def add_stream(app, name: str, **settings) -> int:  # noqa: ANN001
    with Session(app.state.engine) as s:
        row = Stream(name=name, settings={"format": "hdfs", "window_size": 10, **settings})
        s.add(row)
        s.commit()
        return row.id


def add_anomaly(app, stream_id: int, template_id: int, when: datetime, raw: str, *, severity: str = "watch",  # noqa: ANN001
                status: str = "open", kind: str = "line") -> int:
    with Session(app.state.engine) as s:
        (line_id,) = store.insert_lines(s, stream_id, when, {  # as ingest stores lines (and their line and template counts)
            "raw": [raw], "masked": [re.sub(r"\d+", "<NUM>", raw)], "template_id": [template_id], "sessions": [[]],
            "severity": [severity], "rapid_score": [0.6], "rapid_flag": [True]})
        s.commit()
        a = Anomaly(stream_id=stream_id, line_id=line_id, template_id=template_id, kind=kind, severity=severity,
                    status=status, reasons={"rapid_score": 0.6, "rapid_threshold": 0.2}, created_at=when,
                    updated_at=when)
        s.add(a)
        s.commit()
        return a.id


def line_ids_of(app, anomaly_ids: list[int]) -> list[int]:  # noqa: ANN001
    with Session(app.state.engine) as s:
        return [s.get(Anomaly, a).line_id for a in anomaly_ids]


def add_window(app, stream_id: int, kind: str, key: str, line_ids: list[int], reasons: dict,  # noqa: ANN001
               **result) -> tuple[int, int]:  # noqa: ANN003
    """A checked, anomalous window over `line_ids` and its window anomaly with `reasons`, as the
    worker stores them: (anomaly id, window id)."""
    with Session(app.state.engine) as s:
        w = Window(stream_id=stream_id, kind=kind, key=key, state="done", n_lines=len(line_ids), anomalous=True,
                   result={"misses": [], "k": 2, **result})
        s.add(w)
        s.commit()
        for pos, lid in enumerate(line_ids):
            s.add(WindowLine(window_id=w.id, position=pos, line_id=lid))
        a = Anomaly(stream_id=stream_id, window_id=w.id, template_id=None, kind="window", severity="watch",
                    reasons=reasons, created_at=BASE, updated_at=BASE)
        s.add(a)
        s.commit()
        return a.id, w.id


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[tuple[TestClient, object]]:
    with started_app(tmp_path_factory.mktemp("ui") / "data") as (client, app):
        with Session(app.state.engine) as s:
            create_user(s, USER, PASSWORD)
        svc = add_stream(app, "svc")
        other = add_stream(app, "other")
        add_stream(app, "quiet", train_mode=False)
        for i in range(3):  # one incident of svc: template 7 three times, template 8 once
            add_anomaly(app, svc, 7, BASE + timedelta(seconds=10 * i), f"081110 1010 1 INFO disk quota low {i}")
        add_anomaly(app, svc, 8, BASE + timedelta(seconds=30), "081110 1011 2 WARN checksum bad 9", severity="danger")
        add_anomaly(app, svc, 7, BASE + timedelta(hours=1), "081110 1110 1 INFO disk quota low 5")  # a later one
        add_anomaly(app, other, 3, BASE + timedelta(hours=1, minutes=30), "081110 1140 4 ERROR kaboom 1",
                    severity="danger")
        add_anomaly(app, other, 4, BASE - timedelta(days=1), "081109 1140 4 INFO old news 1", status="refuted")
        login(client, USER, PASSWORD)
        yield client, app


def anon(app) -> TestClient:  # noqa: ANN001
    return TestClient(app)  # the app is already started by the module fixture; new cookie jar


def rows(html: str) -> list[str]:
    return re.findall(r'<article class="grow[^"]*" id="(g\d+)" data-ids="([\d,]+)" data-status="(\w+)"', html)


def incidents(html: str) -> list[str]:
    return re.findall(r'<section class="incident sev-(\w+)" id="(i\d+)"', html)


# --------------------------------------------------------------------------- login, sessions, CSRF


def test_pages_need_a_login_and_redirect_back(ui) -> None:
    _, app = ui
    c = anon(app)
    for path in ("/", "/anomalies", "/anomalies/1", "/streams", "/models", "/jobs"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/login"), path
    assert c.get("/anomalies?stream=svc", follow_redirects=False).headers["location"] == \
        "/login?next=%2Fanomalies%3Fstream%3Dsvc"
    r = c.get("/anomalies", headers=HX, follow_redirects=False)  # HTMX: a full-page redirect header
    assert r.headers["HX-Redirect"].startswith("/login")
    assert c.get("/api/v1/streams").status_code == 401  # the API keeps its own key check and JSON
    page = c.get("/login")
    assert page.status_code == 200 and 'type="password"' in page.text and 'name="csrf_token"' in page.text
    assert "Log out" not in page.text and 'href="/streams"' not in page.text  # no navigation before login


def test_login_checks_password_csrf_and_sets_a_safe_cookie(ui) -> None:
    _, app = ui
    c = anon(app)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": USER, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in r.text and "no CSRF token" in r.text
    r = c.post("/login", data={"username": USER, "password": "wrong-password", "csrf_token": token})
    assert r.status_code == 401 and "Wrong username or password" in r.text
    r = c.post("/login", data={"username": USER, "password": PASSWORD, "csrf_token": token,
                               "next": "//evil.example/x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"  # never to another host
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(SESSION_COOKIE + "=") and "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert PASSWORD not in cookie
    page = c.get("/")
    assert page.status_code == 200 and f">{USER}<" in page.text
    r = c.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert c.get("/", follow_redirects=False).status_code == 303  # logged out


def test_failed_logins_are_throttled(ui) -> None:
    _, app = ui
    c = anon(app)
    token = csrf_of(c.get("/login").text)
    codes = [c.post("/login", data={"username": "nobody", "password": "x" * 8, "csrf_token": token}).status_code
             for _ in range(11)]
    assert codes[:10] == [401] * 10 and codes[10] == 429
    app.state.login_throttle.reset()


def test_posts_without_the_csrf_token_are_refused(ui) -> None:
    client, app = ui
    aid = add_anomaly(app, add_stream(app, "csrf-check"), 1, BASE, "081110 1 1 INFO csrf check 1")
    for headers, data, why in (
        ({}, {"ids": str(aid), "action": "confirm"}, "no CSRF token"),
        ({"X-CSRF-Token": "forged"}, {"ids": str(aid), "action": "confirm"}, "wrong or stale"),
        ({}, {"ids": str(aid), "action": "confirm", "csrf_token": "forged"}, "wrong or stale"),
    ):
        r = client.post("/anomalies/act", data=data, headers=headers)
        assert r.status_code == 403 and why in r.text and "<!doctype html>" in r.text.lower()
    r = client.post("/anomalies/act", data={"ids": str(aid), "action": "confirm"}, headers=HX)
    assert r.status_code == 403 and r.headers["HX-Retarget"] == "#flash" and "CSRF" in r.text and "<html" not in r.text
    with Session(app.state.engine) as s:
        assert s.get(Anomaly, aid).status == "open"  # nothing happened


# --------------------------------------------------------------------------- the queue


def test_queue_whole_page_and_partial(ui) -> None:
    client, _ = ui
    page = client.get("/anomalies?stream=svc")
    assert page.status_code == 200
    html = page.text
    assert html.lower().startswith("<!doctype html>") and '<nav aria-label="main">' in html
    assert '<script src="/static/htmx.min.js"' in html and 'hx-headers=\'{"X-CSRF-Token": "' in html
    assert "DEV MODE" not in html
    # two incidents of svc (5-minute gap), the newest first; three template rows
    assert [sev for sev, _ in incidents(html)] == ["watch", "danger"]
    found = rows(html)
    assert len(found) == 3 and all(status == "open" for *_, status in found)
    counts = re.findall(r'title="anomalies in this row">×(\d+)<', html)
    assert counts == ["1", "1", "3"]  # newest incident (1); then template 8 (newest group), template 7 ×3
    assert html.count(">Mark normal</button>") == 1 + 3 and html.count(">Confirm anomaly</button>") == 1 + 3
    assert "disk quota low 2" in html  # the newest line of the group is its example
    assert 'id="queue-total">5<' in html and "first seen" in html
    assert 'hx-trigger="every 5s"' in html  # live refresh

    partial = client.get("/anomalies?stream=svc", headers=HX)
    assert partial.status_code == 200
    assert "<html" not in partial.text and '<nav aria-label="main">' not in partial.text
    assert rows(partial.text) == found and 'id="queue-total">5<' in partial.text
    restore = client.get("/anomalies?stream=svc", headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in restore.text  # back button without a cache: the whole page


def test_queue_filters_paging_and_bad_input(ui) -> None:
    client, _ = ui
    assert len(rows(client.get("/anomalies?stream=other").text)) == 1
    danger = client.get("/anomalies?severity=danger", headers=HX).text
    assert {s for s, _ in incidents(danger)} == {"danger"} and len(rows(danger)) == 2
    closed = client.get("/anomalies?stream=other&status=refuted", headers=HX).text
    assert [r[2] for r in rows(closed)] == ["refuted"] and ">Mark normal</button>" not in closed
    assert len(rows(client.get("/anomalies?stream=other&status=any", headers=HX).text)) == 2
    since = (BASE + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M")
    assert len(rows(client.get(f"/anomalies?stream=svc&since={since}", headers=HX).text)) == 1
    assert rows(client.get("/anomalies?stream=svc&page=2", headers=HX).text) == []
    assert "Nothing here" in client.get("/anomalies?stream=nosuch", headers=HX).text
    for query, message in (("status=bogus", "status must be one of"), ("severity=meh", "severity must be"),
                           ("since=yesterday", "is not a date and time"), ("page=0", "page must be"),
                           ("page=abc", "page must be")):
        r = client.get(f"/anomalies?{query}")
        assert r.status_code == 400 and message in r.text, query
    r = client.get("/anomalies/abc", headers={"Accept": "text/html"})
    assert r.status_code == 400 and "Bad input" in r.text and "<html" in r.text
    r = client.get("/anomalies/99999")
    assert r.status_code == 404 and "no anomaly 99999" in r.text


def test_new_anomalies_show_a_notice_instead_of_moving_rows(ui) -> None:
    client, app = ui
    sid = add_stream(app, "poller")
    first = add_anomaly(app, sid, 1, BASE, "081110 1 1 INFO poll one 1")
    r = client.get(f"/anomalies/poll?stream=poller&newest={first}")
    assert r.status_code == 200 and ": show</a>" not in r.text and 'id="queue-notice"' in r.text
    add_anomaly(app, sid, 2, BASE + timedelta(seconds=5), "081110 1 1 INFO poll two 2")
    r = client.get(f"/anomalies/poll?stream=poller&newest={first}")
    assert "1 new anomaly: show" in r.text and f"newest={first}" in r.text  # keeps its place until asked
    assert 'id="nav-count"' in r.text and 'hx-swap-oob="true"' in r.text


def test_incidents_follow_the_gap() -> None:
    Row = namedtuple("Row", "id stream_id stream created_at severity status template_id kind line_id")
    t0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
    data = [Row(1, 1, "a", t0, "watch", "open", 5, "line", 11),
            Row(2, 1, "a", t0 + timedelta(seconds=200), "danger", "open", 5, "line", 12),
            Row(3, 1, "a", t0 + timedelta(seconds=500), "watch", "open", 6, "window", None),
            Row(4, 2, "b", t0 + timedelta(seconds=100), "watch", "open", 5, "line", 14)]
    wide = incidents_of(data, 300)
    assert [(i.stream, i.count) for i in wide] == [("a", 3), ("b", 1)]  # stream b never joins stream a
    assert [g.template_id for g in wide[0].groups] == [6, 5] and wide[0].severity == "danger"
    assert wide[0].groups[1].ids == [1, 2] and wide[0].groups[1].example_line_id == 12
    narrow = incidents_of(data, 150)
    assert [(i.stream, i.count) for i in narrow] == [("a", 1), ("a", 1), ("b", 1), ("a", 1)]


def test_row_buttons_update_the_row_in_place(ui) -> None:
    client, app = ui
    sid = add_stream(app, "rowact")
    a1 = add_anomaly(app, sid, 21, BASE, "081110 1 1 INFO row action 1")
    a2 = add_anomaly(app, sid, 21, BASE + timedelta(seconds=1), "081110 1 1 INFO row action 2")
    b = add_anomaly(app, sid, 22, BASE + timedelta(seconds=2), "081110 1 1 WARN other thing 3")
    page = client.get("/anomalies?stream=rowact")
    token = csrf_of(page.text)
    assert len(rows(page.text)) == 2
    r = client.post("/anomalies/act", headers={**HX, "X-CSRF-Token": token},
                    data={"ids": f"{a1},{a2}", "action": "normal", "view": "row", "qs": "stream=rowact"})
    assert r.status_code == 200 and "<html" not in r.text
    assert rows(r.text) == [(f"g{a1}", f"{a1},{a2}", "refuted")]
    assert "Marked normal: 2 anomalies." in r.text and ">Mark normal</button>" not in r.text
    assert '<span id="queue-total" hx-swap-oob="true">1</span>' in r.text  # the queue count changes
    assert re.search(r'id="nav-count"[^>]*hx-swap-oob="true"', r.text)
    with Session(app.state.engine) as s:
        assert [s.get(Anomaly, i).status for i in (a1, a2, b)] == ["refuted", "refuted", "open"]
        assert s.get(LogLine, s.get(Anomaly, a1).line_id).label == "normal"
        assert {f.actor for f in s.exec(select(Feedback).where(Feedback.anomaly_id.in_([a1, a2]))).all()} == {"user:op"}
    assert len(rows(client.get("/anomalies?stream=rowact").text)) == 1  # it left the open queue
    # the model learned the line: the same masked text is a known normal now
    model = app.state.registry.peek(sid)
    with Session(app.state.engine) as s:
        assert model.rapid.is_normal(s.get(LogLine, s.get(Anomaly, a1).line_id).masked)

    r = client.post("/anomalies/act", headers={"X-CSRF-Token": token},  # without HTMX: back to the queue
                    data={"ids": str(b), "action": "confirm"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/anomalies"
    with Session(app.state.engine) as s:
        assert s.get(Anomaly, b).status == "confirmed" and s.get(LogLine, s.get(Anomaly, b).line_id).label == "anomaly"
    for data, message in (({"ids": "x", "action": "normal"}, "is not an anomaly id"),
                          ({"ids": "", "action": "normal"}, "no anomaly selected"),
                          ({"ids": str(b), "action": "explode"}, "unknown action"),
                          ({"ids": str(b), "action": "mute", "hours": "-1"}, "at most"),
                          ({"ids": str(b), "action": "mute", "hours": "soon"}, "not a number"),
                          ({"ids": "987654", "action": "normal"}, "no anomaly with id 987654")):
        r = client.post("/anomalies/act", headers={**HX, "X-CSRF-Token": token}, data=data)
        assert 400 <= r.status_code < 500 and message in r.text, data


def test_bulk_actions_and_mutes(ui) -> None:
    client, app = ui
    sid = add_stream(app, "bulk")
    ids = [add_anomaly(app, sid, 31 + (i % 2), BASE + timedelta(seconds=i), f"081110 1 1 INFO bulk {i}")
           for i in range(4)]
    token = csrf_of(client.get("/anomalies?stream=bulk").text)
    sel = [f"{ids[0]},{ids[2]}", f"{ids[1]},{ids[3]}"]
    r = client.post("/anomalies/bulk", headers={**HX, "X-CSRF-Token": token},
                    data={"sel": sel[:1], "action": "mute", "hours": "24", "qs": "stream=bulk"})
    assert r.status_code == 200 and "Muted: 1 template(s)." in r.text
    assert len(rows(r.text)) == 1 and 'id="queue-total">2<' in r.text  # the queue drawn again
    with Session(app.state.engine) as s:
        assert [s.get(Anomaly, i).status for i in ids] == ["muted", "open", "muted", "open"]
        mute = s.exec(select(TemplateMute).where(TemplateMute.stream_id == sid)).one()
        assert mute.template_id == 31 and mute.actor == "user:op"
    r = client.post("/anomalies/bulk", headers={**HX, "X-CSRF-Token": token},
                    data={"sel": sel[1:], "action": "confirm", "qs": "stream=bulk"})
    assert "Confirmed as anomaly: 2 anomalies." in r.text and "Nothing here" in r.text
    r = client.post("/anomalies/bulk", headers={**HX, "X-CSRF-Token": token}, data={"action": "confirm"})
    assert r.status_code == 400 and "no anomaly selected" in r.text


def test_detail_page_explains_and_acts(ui) -> None:
    client, app = ui
    sid = add_stream(app, "detail")
    aid = add_anomaly(app, sid, 41, BASE, "081110 1 1 WARN sprocket 42 jammed", severity="danger")
    page = client.get(f"/anomalies/{aid}")
    assert page.status_code == 200 and "<html" in page.text
    html = page.text
    assert f'href="/incidents/of-anomaly/{aid}"' in html and re.search(r'id="line-context" href="/lines/\d+"', html)
    for text in ("081110 1 1 WARN sprocket 42 jammed", "sprocket &lt;NUM&gt; jammed", "Why it looks wrong",
                 "RAPID score 0.600 is above the stream&#39;s threshold 0.200", "New template",
                 "RAPID: the nearest normal lines", "LogGPT", "Lines around it in time"):
        assert text in html, text
    for button in (">Mark normal</button>", ">Mark normal: whole template</button>", ">Confirm anomaly</button>",
                   ">Mute</button>"):
        assert button in html
    assert 'id="anomaly-status">open<' in html
    partial = client.get(f"/anomalies/{aid}", headers=HX)
    assert "<html" not in partial.text and 'id="actions"' in partial.text

    token = csrf_of(html)
    r = client.post("/anomalies/act", headers={**HX, "X-CSRF-Token": token},
                    data={"ids": str(aid), "action": "mute", "hours": "8", "view": "detail"})
    assert r.status_code == 200 and r.text.lstrip().startswith('<section id="actions"')
    assert 'id="anomaly-status">muted<' in r.text and "template muted until" in r.text
    r = client.post("/anomalies/act", headers={**HX, "X-CSRF-Token": token},
                    data={"ids": str(aid), "action": "normal-template", "view": "detail"})
    assert 'id="anomaly-status">refuted<' in r.text and "for the whole template" in r.text


def test_detail_of_a_window_anomaly_and_a_burst(ui) -> None:
    client, app = ui
    sid = add_stream(app, "windowed")
    burst = [add_anomaly(app, sid, 51, BASE + timedelta(seconds=i), f"081110 1 1 INFO flood {i}") for i in range(6)]
    line_ids = line_ids_of(app, burst[:3])
    misses = [{"position": 1, "line_id": line_ids[1], "actual": 51, "actual_template": None, "expected": [3, 4],
               "expected_templates": ["x <NUM>", None], "unseen": True},
              {"position": 3, "line_id": None, "actual": "<eos>", "actual_template": "(end of session)",
               "expected": [5, "<eos>"], "expected_templates": [None, "(end of session)"], "unseen": False}]
    wid, _ = add_window(app, sid, "count", "line:1", line_ids, {"loggpt_misses": misses, "k": 2, "model_version": 1})
    html = client.get(f"/anomalies/{wid}").text
    assert "No single line: LogGPT flagged the window as a whole" in html
    assert html.count('<li class="miss">') == 2 and "expected one of" in html and ">E3</span>" in html
    assert "(the window ended)" in html and ">end</span>" in html
    assert "Sequence miss at position 1" in html and "never saw this key in training" in html
    assert ">Mark normal: whole template</button>" not in html and ">Mute</button>" not in html  # no template
    detail = client.get(f"/anomalies/{burst[-1]}").text
    assert "Burst of a template: 6 lines of E51" in detail
    around = detail[detail.index("<h3>Around it</h3>"):]  # context, apart from the detectors' reasons
    assert "Burst of a template" in around and "Burst of a template" not in detail[:detail.index("<h3>Around it</h3>")]
    assert "LogGPT checked its window" not in detail  # that line is in no window
    first = client.get(f"/anomalies/{burst[0]}").text
    assert "LogGPT: the window as a list of keys" in first and '<li class="this">' in first

    # a session whose set of events no normal session had (RAPID, session level), no LogGPT miss
    new_id, _ = add_window(app, sid, "session", "blk_7", line_ids[:2], {
        "loggpt_misses": [], "k": 2, "new_content": "no normal session had this set of events"}, new_content=True)
    html = client.get(f"/anomalies/{new_id}").text
    assert "RAPID found the session's set of events in no normal session" in html, html
    assert "New session content: no normal session had this set of events" in html
    assert "Sequence miss" not in html


def test_detail_page_reads_template_counts_not_the_streams_history(ui) -> None:
    """Each query of the page on log_lines is bounded (an id range, a LIMIT on an index walk, the
    label index); none walks every line of the stream, as the template counts did before migration
    0004 (2.3 s at 1.1M lines). The plans are SQLite's for the page's real SQL."""
    client, app = ui
    from tests.server.helpers import query_plan, selects_on

    sid = add_stream(app, "planned")
    first = add_anomaly(app, sid, 61, BASE, "081110 1 1 INFO odd 1")
    later = add_anomaly(app, sid, 61, BASE + timedelta(seconds=30), "081110 1 1 INFO odd 2")
    same_slot = add_anomaly(app, sid, 61, BASE + timedelta(seconds=30), "081110 1 1 INFO odd 3")
    with selects_on(app.state.engine, "log_lines") as seen:
        html = client.get(f"/anomalies/{later}").text
    assert "Template E61 never occurred in normal or training data (1 earlier line(s), none of them normal)" in html
    assert "(2 earlier line(s)" in client.get(f"/anomalies/{same_slot}").text  # one of them in its own slot
    assert "New template: this is the first line of template E61" in client.get(f"/anomalies/{first}").text
    assert len(seen) >= 5, seen
    for statement, parameters in seen:
        plan = query_plan(app.state.engine, statement, parameters)
        assert "SCAN log_lines" not in plan and "ix_log_lines_stream_id_id (stream_id=?)" not in plan, (statement, plan)


# --------------------------------------------------------------------------- overview, streams, models, jobs


def test_overview_lists_every_stream_with_a_chart(ui) -> None:
    client, _ = ui
    html = client.get("/?range=6h").text
    for name in ("svc", "other", "quiet"):
        assert f">{name}</a></h2>" in html
    assert "lines/min" in html and "not trained" in html and "train mode" in html
    # no stream here has a trained model: none says "detecting", the one out of train mode says why
    assert "detecting" not in html and "no trained model yet" in html
    assert re.search(r"<svg viewBox=\"0 0 600 130\"", html) and 'class="bar-anomalies"' in html
    link = re.search(r'<a href="(/anomalies\?status=any&amp;stream=svc&amp;since=[^"]+)"><rect class="bar-anomalies"', html)
    assert link, "an anomaly bar opens the queue for its time span"
    span = client.get(link.group(1).replace("&amp;", "&"))
    assert span.status_code == 200 and "disk quota low" in span.text
    assert re.search(r'<a href="/search\?stream=svc&amp;since=[^"]+"><rect class="bar-lines"', html)
    assert "danger</a>" in html
    partial = client.get("/", headers=HX).text
    assert "<html" not in partial and 'class="card stream-card"' in partial
    r = client.get("/?range=forever")
    assert r.status_code == 400 and "range must be one of" in r.text


def test_chart_counts_lines_and_anomalies_per_bucket(ui) -> None:
    _, app = ui
    from logsense.server.ui.charts import stream_chart

    sid = add_stream(app, "charted")
    now = datetime.now(timezone.utc)
    for minutes in (50, 50, 10):  # two lines 50 minutes ago, one 10 minutes ago, one before the range
        add_anomaly(app, sid, 61, now - timedelta(minutes=minutes), "081110 1 1 INFO chart 1")
    add_anomaly(app, sid, 61, now - timedelta(hours=3), "081110 1 1 INFO chart 2")
    chart = stream_chart(app.state.engine, sid, "1h", now)
    assert chart.total_lines == 3 and chart.total_anomalies == 3 and chart.max_lines == 2
    assert len(chart.line_bars) == 2 and chart.line_bars[0].h > chart.line_bars[1].h  # 2 lines, then 1
    assert chart.line_bars[0].x < chart.line_bars[1].x and "2 lines" in chart.line_bars[0].title
    assert 35 <= (chart.line_bars[1].x - chart.line_bars[0].x) / ((600 - 8) / 60) <= 45  # 40 buckets apart
    assert stream_chart(app.state.engine, sid, "24h", now).total_lines == 4


def test_streams_create_edit_and_train_mode(ui) -> None:
    client, _ = ui
    form_page = client.get("/streams/new")
    assert form_page.status_code == 200 and 'name="window_size"' in form_page.text and 'name="train_mode"' in form_page.text
    token = csrf_of(form_page.text)
    base = {"csrf_token": token, "format": "syslog", "window_size": "25", "rapid_k": "5", "rapid_target_fpr": "0.01",
            "loggpt_target_fpr": "0.01", "idle_timeout_seconds": "300", "train_mode": ["off", "on"]}
    r = client.post("/streams", data={**base, "name": "web-1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/streams/web-1?created=1"
    r = client.post("/streams", data={**base, "name": "web-1"})
    assert r.status_code == 422 and "already exists" in r.text
    r = client.post("/streams", data={**base, "name": "bad name!"})
    assert r.status_code == 422 and "letters, digits" in r.text
    r = client.post("/streams", data={**base, "name": "web-2", "window_size": "1"})
    assert r.status_code == 422 and "greater than or equal to 2" in r.text
    r = client.post("/streams", data={**base, "name": "web-2", "loggpt_config": "{nope"})
    assert r.status_code == 422 and "not valid JSON" in r.text

    edit = client.get("/streams/web-1?created=1")
    assert edit.status_code == 200 and "Saved." in edit.text and 'value="25"' in edit.text
    assert ">Retrain now</button>" in edit.text and "Turn train mode off" in edit.text
    r = client.post("/streams/web-1", data={**base, "window_size": "40", "rapid_threshold": "0.3"})
    assert r.status_code == 200 and "Saved." in r.text and 'value="40"' in r.text
    r = client.post("/streams/web-1", data={**base, "rapid_threshold": "7"})
    assert r.status_code == 422 and "less than or equal to 1" in r.text
    r = client.post("/streams/web-1/train-mode", headers={**HX, "X-CSRF-Token": token}, data={"train_mode": "off"})
    assert r.status_code == 200 and r.text.lstrip().startswith('<form class="switch"') and "Turn train mode on" in r.text
    listing = client.get("/streams")
    assert "web-1" in listing.text and "Turn train mode on" in listing.text and "40 lines" in listing.text
    assert client.get("/streams/nosuch").status_code == 404
    assert client.post("/streams/web-1/train-mode", headers={"X-CSRF-Token": token},
                       data={"train_mode": "maybe"}).status_code == 400
    r = client.post("/streams/web-1/train", headers={**HX, "X-CSRF-Token": token}, data={"mode": "sideways"})
    assert r.status_code == 400 and "mode must be one of" in r.text


def test_retrain_answers_a_progress_bar_that_polls_until_done(ui) -> None:
    client, app = ui
    token = csrf_of(client.get("/streams").text)
    r = client.post("/streams/quiet/train", headers={**HX, "X-CSRF-Token": token}, data={"mode": "train"})
    assert r.status_code == 200 and "<progress" in r.text
    job_id = int(re.search(r'id="job-(\d+)"', r.text).group(1))
    from tests.server.helpers import wait_for

    def finished() -> bool:
        with Session(app.state.engine) as s:
            return s.get(Job, job_id).state in ("done", "failed")

    wait_for(finished, 60, 0.1, "the training job")
    r = client.get(f"/jobs/{job_id}/progress")
    assert 'data-state="failed"' in r.text and "hx-trigger" not in r.text  # no data: it failed, and stops polling
    assert "no normal training windows" in r.text
    jobs = client.get("/jobs").text
    assert f'id="jobrow-{job_id}"' in jobs and "no normal training windows" in jobs
    assert client.get("/jobs?state=bogus").status_code == 400
    assert client.get("/jobs/99999/progress").status_code == 404


def test_models_page_shows_versions_and_rolls_back(ui) -> None:
    client, app = ui
    sid = add_stream(app, "modeled")
    with Session(app.state.engine) as s:
        s.add(ModelVersion(stream_id=sid, kind="loggpt", version=1, path="versions/1", live=False,
                           metrics={"val_fpr": 0.004, "k": 5, "mode": "train", "promoted": True, "reason": "first model"}))
        s.add(ModelVersion(stream_id=sid, kind="loggpt", version=2, path="versions/2", live=True,
                           metrics={"val_fpr": 0.002, "anomaly_recall": 0.9, "k": 4, "mode": "fine_tune",
                                    "promoted": True, "reason": "not worse"}))
        s.add(Job(stream_id=sid, kind="train", state="running", progress=0.4, message="training LogGPT"))
        s.commit()
    html = client.get("/models?stream=modeled").text
    assert html.count('<tr class="live"') == 1 and "v2" in html and "0.002" in html and "0.900" in html
    assert ">Roll back</button>" in html and 'hx-confirm="Make version 1 of modeled live?"' in html
    token = csrf_of(html)
    r = client.post("/streams/modeled/models/1/rollback", headers={**HX, "X-CSRF-Token": token}, data={"only": "modeled"})
    assert r.status_code == 409 and "could not make version 1 live" in r.text  # its files are not there
    r = client.post("/streams/modeled/models/7/rollback", headers={**HX, "X-CSRF-Token": token})
    assert r.status_code == 404 and "no LogGPT version 7" in r.text
    assert client.get("/models?stream=nosuch").status_code == 404
    jobs = client.get("/jobs?stream=modeled")
    assert 'hx-trigger="every 2s"' in jobs.text and "training LogGPT" in jobs.text and "40%" in jobs.text
    assert client.get("/jobs?stream=modeled", headers=HX).text.lstrip().startswith('<div class="jobs-poll"')


# --------------------------------------------------------------------------- headers, static, errors


def test_security_headers_everywhere_and_no_outside_urls(ui) -> None:
    client, _ = ui
    for path in ("/", "/anomalies", "/static/app.css", "/api/v1/streams", "/healthz"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
    assert client.get("/anomalies").headers["cache-control"] == "no-store"
    js = client.get("/static/htmx.min.js")
    assert js.status_code == 200 and 'version:"2.0.11"' in js.text
    web = REPO / "web"
    for f in [*(web / "templates").rglob("*.*"), web / "static" / "app.css", web / "static" / "app.js"]:
        text = f.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), f"outside URL in {f}"
        assert "<script>" not in text and " style=" not in text and " onclick=" not in text, f  # CSP: no inline code


def test_unknown_pages_are_html_404_for_browsers_and_json_for_the_api(ui) -> None:
    client, _ = ui
    r = client.get("/no/such/page", headers={"Accept": "text/html"})
    assert r.status_code == 404 and "There is no page at /no/such/page" in r.text and "<html" in r.text
    r = client.get("/anomalies/99999", headers={"Accept": "text/html"})
    badge = re.search(r'id="nav-count"[^>]*>(\d+)<', r.text)
    assert r.status_code == 404 and badge and int(badge.group(1)) > 0  # the queue badge counts here too
    r = client.get("/api/v1/nothing")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    r = client.post("/api/v1/streams", json={"name": "x y"}, headers={"X-API-Key": "nope"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid API key"


def test_dev_mode_skips_login_and_says_so_on_every_page(tmp_path) -> None:
    app = create_app(_settings(tmp_path / "dev", dev_mode=True))
    with TestClient(app) as c:
        for path in ("/", "/anomalies", "/streams", "/models", "/jobs", "/streams/new"):
            r = c.get(path)
            assert r.status_code == 200 and "DEV MODE" in r.text and "no login is required" in r.text, path
        assert c.get("/login", follow_redirects=False).headers["location"] == "/"
        assert "Log out" not in c.get("/").text
        r = c.post("/streams", data={"name": "dev-stream"})  # CSRF still applies
        assert r.status_code == 403


def test_secret_key_is_generated_once_with_0600(tmp_path) -> None:
    settings = _settings(tmp_path / "d")
    first = secret_key(settings)
    path = tmp_path / "d" / "secret_key"
    assert len(first) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key(settings) == first  # kept, not regenerated
    path.chmod(0o644)
    assert secret_key(settings) == first and stat.S_IMODE(path.stat().st_mode) == 0o600
    given = _settings(tmp_path / "e", secret_key="k" * 40)
    assert secret_key(given) == "k" * 40 and not (tmp_path / "e" / "secret_key").exists()
    # a session made by one process is valid in the next on the same data directory
    app1 = create_app(settings)
    with TestClient(app1) as c1:
        with Session(app1.state.engine) as s:
            create_user(s, "ann", "long enough pw")
        login(c1, "ann", "long enough pw")
        cookie = c1.cookies.get(SESSION_COOKIE)
    app2 = create_app(settings)
    with TestClient(app2) as c2:
        c2.cookies.set(SESSION_COOKIE, cookie)
        assert c2.get("/jobs", follow_redirects=False).status_code == 200


def test_user_create_cli(tmp_path, monkeypatch, capsys) -> None:
    import io

    from logsense.server import cli

    data = str(tmp_path / "cli")
    monkeypatch.setattr("sys.stdin", io.StringIO("a fine password\n"))
    assert cli.main(["user", "create", "alice", "--password-stdin", "--data-dir", data]) == 0
    assert "created" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("another password\n"))
    assert cli.main(["user", "create", "alice", "--password-stdin", "--data-dir", data]) == 1
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["user", "create", "bob", "--password-stdin", "--data-dir", data]) == 1
    assert "at least 8" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("whatever123\n"))
    assert cli.main(["user", "create", "bad name", "--password-stdin", "--data-dir", data]) == 1
    prompts = iter(["typed password", "typed password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(prompts))
    assert cli.main(["user", "create", "carol", "--data-dir", data]) == 0
    from logsense.server.db import make_engine
    from logsense.server.tables import User

    engine = make_engine(f"sqlite:///{data}/logsense.db")
    with Session(engine) as s:
        alice = s.exec(select(User).where(User.username == "alice")).one()
        assert alice.password_hash.startswith("$argon2id$") and "a fine password" not in alice.password_hash
        assert authenticate(s, "alice", "a fine password").id == alice.id
        assert authenticate(s, "alice", "a fine passwort") is None and authenticate(s, "nobody", "x" * 9) is None
        assert authenticate(s, "carol", "typed password") is not None
    engine.dispose()


def test_training_review_page_lists_suspicious_templates_and_answers_in_one_click(ui) -> None:
    from logsense.server.tables import Stream, TemplateReview

    client, app = ui
    with Session(app.state.engine) as s:
        svc = s.exec(select(Stream).where(Stream.name == "svc")).one()
        s.add(TemplateReview(stream_id=svc.id, template_id=7, reasons=["burst: 200 of its 210 lines within 60 s"],
                             n_lines=210, n_windows=21, first_ts=1.7e9, last_ts=1.7e9 + 60,
                             example="disk quota low <NUM>"))
        s.add(TemplateReview(stream_id=svc.id, template_id=-5, shape=[1, 2], n_lines=6, n_windows=3,
                             reasons=["rare session shape: 3 of 400 sessions hold exactly templates 1, 2"],
                             example="open <NUM> | read <NUM>"))
        s.commit()
    page = client.get("/streams/svc/review")
    assert page.status_code == 200
    assert "disk quota low" in page.text and "unconfirmed" in page.text and "burst: 200" in page.text
    assert 'hx-post="/streams/svc/review/7"' in page.text
    r = client.post("/streams/svc/review/7", data={"label": "normal", "csrf_token": csrf_of(page.text)},
                    headers={"HX-Request": "true"})
    assert r.status_code == 200 and "Template 7: normal." in r.text and "<html" not in r.text
    assert client.post("/streams/svc/review/7", data={"label": "normal"}).status_code == 403  # no CSRF token
    assert "rare session shape" in page.text and 'hx-post="/streams/svc/review/-5"' in page.text
    r = client.post("/streams/svc/review/-5", data={"label": "anomaly", "csrf_token": csrf_of(page.text)},
                    headers={"HX-Request": "true"})
    assert r.status_code == 200 and "Session shape: anomaly." in r.text
    assert "Training review" in client.get("/streams/svc").text


def test_the_anomaly_page_links_to_the_lines_around_it_where_the_stream_says_how(ui) -> None:
    client, app = ui
    sid = add_stream(app, "linked", context_url="https://kibana.example/app/discover#/?q={stream}&from={from}&to={to}")
    aid = add_anomaly(app, sid, 9, BASE, "081110 1010 1 INFO disk quota low 1")
    page = client.get(f"/anomalies/{aid}").text
    link = re.search(r'id="context-link" href="([^"]+)"', page)
    assert link and link.group(1).startswith("https://kibana.example/app/discover#/?q=linked&amp;from=20")
    plain = client.get(f"/anomalies/{add_anomaly(app, add_stream(app, 'unlinked'), 9, BASE, 'x 1')}").text
    assert 'id="context-link"' not in plain


def test_overview_shows_lines_waiting_for_the_encoder(ui) -> None:
    client, app = ui
    from logsense.server.encoder import Encoder

    app.state.encoder.stop()  # the line stays pending while the page is read
    try:
        with Session(app.state.engine) as s:
            sid = s.execute(select(Stream.id).where(Stream.name == "quiet")).scalar_one()
            store.insert_lines(s, sid, datetime.now(timezone.utc), {
                "raw": ["081110 1 1 INFO brand new text"], "masked": ["INFO brand new text"], "template_id": [None],
                "sessions": [[]], "severity": ["pending"], "rapid_score": [None], "rapid_flag": [None]})
            s.commit()
        html = client.get("/").text
        assert re.search(r'class="rapid-pending"[^>]*>1 <small>lines waiting for RAPID', html)
    finally:
        app.state.encoder = app.state.services.encoder = Encoder(app.state.services)  # stopped at shutdown
        app.state.encoder.start()


# --------------------------------------------------------------------------- triage at volume (issue 20)


def test_queue_has_a_skip_link_time_presets_and_times_for_the_browser(ui) -> None:
    client, app = ui
    html = client.get("/anomalies?stream=svc").text
    body = html[html.index("<body"):]
    first_link = re.search(r"<(a|button|input|select)\b[^>]*>", body[body.index(">") + 1:]).group(0)
    assert 'class="skip"' in first_link and 'href="#rows"' in first_link  # the first thing Tab reaches
    assert ">Skip to the queue</a>" in html and 'id="rows" tabindex="-1"' in html
    assert 'id="shortcuts"' in html and "<kbd>j</kbd>" in html and "data-shortcuts" in html  # ? lists the keys
    other = client.get("/streams").text
    assert '<a class="skip" href="#main">Skip to the content</a>' in other and '<main id="main" tabindex="-1">' in other
    # presets: one radio group (one Tab stop), the precise fields behind a closed disclosure
    assert re.findall(r'<input type="radio" name="last" value="(\w*)"', html) == ["", "15m", "1h", "24h", "7d"]
    assert '<details class="range">' in html and 'name="since"' in html[html.index('<details class="range">'):]
    assert '<details class="range" open>' in client.get(f"/anomalies?since={BASE:%Y-%m-%dT%H:%M}").text
    # times: UTC in datetime and title, app.js shows them in the browser's zone
    times = re.findall(r'<time datetime="([^"]+)" data-local="(full|time)" title="([^"]+)">([^<]+)</time>', html)
    assert times and all(iso.endswith("+00:00") and title.endswith(" UTC") for iso, _, title, _ in times)
    assert not re.search(r"</time> UTC", html)  # the zone is inside the element, which the script rewrites
    rows_html = html[html.index('id="rows"'):]
    assert 'data-confirm-over="100" data-count="3"' in rows_html and 'aria-keyshortcuts="n">Mark normal</button>' in rows_html

    sid = add_stream(app, "presets")
    now = datetime.now(timezone.utc)
    add_anomaly(app, sid, 71, now - timedelta(minutes=10), "081110 1 1 INFO preset recent 1")
    add_anomaly(app, sid, 72, now - timedelta(hours=3), "081110 1 1 INFO preset older 2")
    assert len(rows(client.get("/anomalies?stream=presets&last=1h", headers=HX).text)) == 1
    day = client.get("/anomalies?stream=presets&last=24h&since=2000-01-01T00:00", headers=HX).text  # a preset wins
    assert len(rows(day)) == 2 and "raised in the last 24 h" in day and "last=24h" in day
    assert client.get("/anomalies?last=2h").status_code == 400
    # precise fields in the browser's zone: tz=-120 is UTC+2, so 12:00 there is 10:00 UTC
    at = (now - timedelta(hours=2)).replace(second=0, microsecond=0)
    local = (at + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    page = client.get(f"/anomalies?stream=presets&since={local}&tz=-120").text
    assert len(rows(page)) == 1 and f'name="since" id="f-since" value="{local}"' in page and 'name="tz" value="-120"' in page
    assert len(rows(client.get(f"/anomalies?stream=presets&since={local}", headers=HX).text)) == 0  # read as UTC
    assert client.get("/anomalies?tz=abc").status_code == 400


def test_a_row_answer_can_be_undone_and_the_api_reopens(ui) -> None:
    client, app = ui
    from logsense.server.auth import create_api_key

    sid = add_stream(app, "undo")
    group = [add_anomaly(app, sid, 81, BASE + timedelta(seconds=i), f"081110 1 1 INFO undo me {i}") for i in range(3)]
    later = add_anomaly(app, sid, 81, BASE + timedelta(hours=2), "081110 1 1 INFO undo me 9")  # the same template, later
    token = csrf_of(client.get("/anomalies?stream=undo").text)
    ids = ",".join(map(str, group))
    r = client.post("/anomalies/act", headers={**HX, "X-CSRF-Token": token},
                    data={"ids": ids, "action": "normal-template", "view": "row", "qs": "stream=undo"})
    assert rows(r.text) == [(f"g{group[0]}", ids, "refuted")]
    assert f'name="ids" value="{ids}"' in r.text and "data-undo" in r.text and "the model keeps what it learned" in r.text
    with Session(app.state.engine) as s:
        assert s.get(Anomaly, later).status == "refuted"  # the template's other anomaly, closed in passing
        assert len(s.exec(select(Feedback).where(Feedback.anomaly_id.in_(group))).all()) == 3
    r = client.post("/anomalies/reopen", headers={**HX, "X-CSRF-Token": token},
                    data={"ids": ids, "view": "row", "qs": "stream=undo"})
    assert r.status_code == 200 and rows(r.text) == [(f"g{group[0]}", ids, "open")]
    assert "Reopened: 3 anomalies; the model keeps what it learned." in r.text and ">Mark normal</button>" in r.text
    assert '<span id="queue-total" hx-swap-oob="true">4</span>' in r.text
    with Session(app.state.engine) as s:
        assert [s.get(Anomaly, i).status for i in (*group, later)] == ["open"] * 4
        assert s.exec(select(Feedback).where(Feedback.anomaly_id.in_(group))).all() == []
        line = s.get(LogLine, s.get(Anomaly, group[0]).line_id)
        assert line.label is None and line.severity == "watch"  # its detectors' verdict again

    with Session(app.state.engine) as s:
        key, _ = create_api_key(s, "undo-test", scopes=["operate"])
    api = {"X-API-Key": key}
    r = client.post("/api/v1/anomalies/feedback", json={"ids": group, "label": "anomaly"}, headers=api)
    assert r.status_code == 200 and r.json()["answered"] == 3 and sorted(r.json()["ids"]) == group
    r = client.post("/api/v1/anomalies/reopen", json={"ids": [*group, later]}, headers=api)
    assert r.status_code == 200 and r.json()["reopened"] == 3 and "1 open already" in r.json()["notes"]
    with Session(app.state.engine) as s:
        assert s.get(LogLine, s.get(Anomaly, group[1]).line_id).label is None
        row = s.get(Anomaly, group[0])  # answered long ago: beyond the undo
        row.status, row.updated_at = "confirmed", datetime.now(timezone.utc) - timedelta(minutes=30)
        s.add(row)
        s.commit()
    r = client.post("/api/v1/anomalies/reopen", json={"ids": [group[0]]}, headers=api)
    assert r.json()["reopened"] == 0 and "1 answered more than 10 minutes ago or muted: unchanged" in r.json()["notes"]
    assert client.post("/api/v1/anomalies/reopen", json={"ids": [987654]}, headers=api).status_code == 404
    assert client.post("/api/v1/anomalies/reopen", json={"ids": []}, headers=api).status_code == 422
    with Session(app.state.engine) as s:
        reader, _ = create_api_key(s, "undo-reader", scopes=["read"])
    assert client.post("/api/v1/anomalies/reopen", json={"ids": [later]}, headers={"X-API-Key": reader}).status_code == 403


def test_explanations_name_whole_words_fold_repeated_misses_and_count_the_hour(ui) -> None:
    client, app = ui
    from logsense.server.ui.explain import highlight, word_scores, worst_words

    text = "lease recovery stalled for client DFSClient_<NUM>"
    tokens = ["lease", "recovery", "stalled", "for", "client", "d", "##fs", "##cl", "##ient", "_", "<", "nu", "##m", ">"]
    worst = [("##ient", 0.13), ("stalled", 0.41), ("##cl", 0.2), ("nu", 0.5), ("[CLS]", 0.0)]
    for given in (tokens, None):  # placed by the text's wordpieces, or guessed without them
        scored = word_scores(text, worst, given)
        assert worst_words(text, scored)[:2] == [("DFSClient", 0.13), ("stalled", 0.41)], given
        assert "<mark" in str(highlight(text, scored)) and ">DFSClient</mark>" in str(highlight(text, scored))
    assert ("<NUM>", 0.5) in worst_words(text, word_scores(text, worst, tokens))
    assert word_scores("naïve café", [("cafe", 0.3)], ["naive", "cafe"]) == [(6, 10, 0.3)]  # accents as the tokenizer reads them

    sid = add_stream(app, "words")
    lines = [add_anomaly(app, sid, 91, BASE + timedelta(seconds=i), f"081110 1 1 INFO step {i}") for i in range(9)]
    line_ids = line_ids_of(app, lines)
    misses = [{"position": p, "line_id": line_ids[p], "actual": 91, "actual_template": "step <NUM>",
               "expected": [3, 4] if p % 2 else [4, 5], "expected_templates": [None, None], "unseen": False}
              for p in range(1, 9)]
    wid, window_id = add_window(app, sid, "count", "line:9", line_ids, {"loggpt_misses": misses, "k": 2})
    html = client.get(f"/anomalies/{wid}").text
    reasons = html[html.index('<ul class="reasons">'):html.index("</ul>", html.index('<ul class="reasons">'))]
    assert reasons.count("Sequence miss") == 1  # eight misses of one key: one line with the count
    assert "Sequence miss 8 times, at positions 1, 2, 3, 4, 5, 6 and 2 more: LogGPT saw E91 “step &lt;NUM&gt;” each time" in reasons
    assert "expected one of E4, E3, E5 (its top-2)" in reasons
    with Session(app.state.engine) as s:  # five different keys missed: two told, three folded into one line
        varied = [{**m, "actual": 200 + p, "actual_template": None} for p, m in enumerate(misses[:5])]
        a = Anomaly(stream_id=sid, window_id=window_id, template_id=None, kind="window", severity="watch",
                    reasons={"loggpt_misses": varied, "k": 2}, created_at=BASE, updated_at=BASE)
        s.add(a)
        s.commit()
        vid = a.id
    html = client.get(f"/anomalies/{vid}").text
    reasons = html[html.index('<ul class="reasons">'):html.index("</ul>", html.index('<ul class="reasons">'))]
    assert reasons.count('<li class="reason sequence">') == 3 and "Sequence miss at position 1:" in reasons
    assert "3 more sequence misses, at positions 3, 4, 5: LogGPT saw E202, E203, E204 where it expected other keys" in reasons

    # the unusual hour in counts over days, not a share of a sample
    hid = add_stream(app, "hours")
    day0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
    with Session(app.state.engine) as s:
        for d in range(3):
            for h in range(9, 17):
                when = day0 + timedelta(days=d, hours=h)
                store.insert_lines(s, hid, when, {
                    "raw": [f"081110 1 1 INFO day work {i}" for i in range(10)], "masked": ["081110 1 1 INFO day work <NUM>"] * 10,
                    "template_id": [5] * 10, "timestamp": [when.timestamp()] * 10, "sessions": [[]] * 10,
                    "severity": ["train"] * 10})
        s.commit()
    night = add_anomaly(app, hid, 6, day0 + timedelta(days=3, hours=3, minutes=5), "081110 1 1 WARN night job 1")
    html = client.get(f"/anomalies/{night}").text
    assert ("Unusual hour: between 03:00 and 04:00 (UTC) the stream&#39;s normal lines were seen 0 times in the 3 days "
            "before this line (240 normal lines in all, about 10 an hour if spread evenly).") in html
    assert "0.0%" not in html and "##" not in html
