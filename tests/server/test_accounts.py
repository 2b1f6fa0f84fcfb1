"""Web UI accounts: roles on the UI's POST routes, server-side sessions that logout and a new
password end, the login throttle (counted before the password check, per account and address,
X-Forwarded-For only from configured proxies), the bounded password-check pool, the `logsense
user` commands, private database files and `serve --dev` refusing a non-loopback host."""

from __future__ import annotations

import asyncio
import io
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from starlette.requests import Request

from logsense.server import cli, store
from logsense.server.app import create_app
from logsense.server.db import make_engine, upgrade_database
from logsense.server.settings import Settings
from logsense.server.tables import Anomaly, Stream, User, UserSession, utcnow
from logsense.server.throttle import Busy, LoginThrottle, PasswordChecks, client_address, parse_trusted
from logsense.server.ui.login import login_client
from logsense.server.ui.security import SESSION_COOKIE
from logsense.server.users import ROLES, create_user, session_user, set_password, set_role, start_session

from .conftest import make_settings

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORDS = {"ann": "admin password", "otto": "operator password", "vic": "viewer password"}
HX = {"HX-Request": "true"}


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def login(app, username: str, password: str | None = None) -> TestClient:  # noqa: ANN001
    c = TestClient(app)  # the app is started by the fixture; a cookie jar of its own
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": username, "password": password or PASSWORDS[username], "next": "/",
                               "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return c


def csrf(c: TestClient) -> str:
    return csrf_of(c.get("/jobs").text)


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Iterator[tuple[object, Path, int]]:
    data = tmp_path_factory.mktemp("accounts") / "data"
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("LOGSENSE_"):
                mp.delenv(name)
        app = create_app(make_settings(data, worker_enabled=False, scheduler_enabled=False))
        with TestClient(app):
            with Session(app.state.engine) as s:
                assert create_user(s, "ann", PASSWORDS["ann"]).role == "admin"  # the first user
                assert create_user(s, "otto", PASSWORDS["otto"]).role == "operator"  # later ones
                assert create_user(s, "vic", PASSWORDS["vic"], role="viewer").role == "viewer"
                stream = Stream(name="svc", settings={"format": "hdfs", "window_size": 10})
                s.add(stream)
                s.commit()
                sid = stream.id
            yield app, data, sid


def add_anomaly(app, stream_id: int) -> int:  # noqa: ANN001
    when = utcnow() - timedelta(minutes=5)
    with Session(app.state.engine) as s:
        (line_id,) = store.insert_lines(s, stream_id, when, {
            "raw": ["081110 1010 1 INFO disk quota low 1"], "masked": ["disk quota low <NUM>"], "template_id": [7],
            "sessions": [[]], "severity": ["watch"], "rapid_score": [0.6], "rapid_flag": [True]})
        s.commit()
        a = Anomaly(stream_id=stream_id, line_id=line_id, template_id=7, kind="line", severity="watch", status="open",
                    reasons={"rapid_score": 0.6, "rapid_threshold": 0.2}, created_at=when, updated_at=when)
        s.add(a)
        s.commit()
        return a.id


def train_mode(app) -> bool:  # noqa: ANN001
    with Session(app.state.engine) as s:
        return s.exec(select(Stream).where(Stream.name == "svc")).one().config().train_mode


# --------------------------------------------------------------------------- roles


def test_a_viewer_reads_but_every_ui_post_needs_its_role(ui) -> None:
    app, _, sid = ui
    aid = add_anomaly(app, sid)
    vic = login(app, "vic")
    for path in ("/", "/anomalies", f"/anomalies/{aid}", "/streams", "/streams/svc", "/models", "/jobs",
                 "/streams/svc/review"):
        assert vic.get(path).status_code == 200, path
    queue = vic.get("/anomalies").text
    assert 'name="action"' not in queue and 'id="bulk"' not in queue  # buttons it cannot use are hidden
    assert 'name="action"' not in vic.get(f"/anomalies/{aid}").text
    token = csrf(vic)
    for path, data, role in (
        ("/anomalies/act", {"ids": str(aid), "action": "confirm"}, "operator"),
        ("/anomalies/bulk", {"sel": str(aid), "action": "confirm"}, "operator"),
        ("/streams/svc/review/7", {"label": "normal"}, "operator"),
        ("/streams/svc/train", {"mode": "train"}, "operator"),
        ("/streams/svc/train-mode", {"train_mode": "off"}, "admin"),
        ("/streams/svc", {"window_size": "5"}, "admin"),
        ("/streams", {"name": "new-one"}, "admin"),
        ("/streams/svc/models/1/rollback", {}, "admin"),
    ):
        r = vic.post(path, data={**data, "csrf_token": token})
        assert r.status_code == 403, (path, r.text)
        assert f"This needs the {role} role" in r.text and "vic has the role viewer" in r.text, path
        assert "<!doctype html>" in r.text.lower(), path  # a whole 403 page
    r = vic.post("/anomalies/act", data={"ids": str(aid), "action": "confirm"}, headers={**HX, "X-CSRF-Token": token})
    assert r.status_code == 403 and r.headers["HX-Retarget"] == "#flash" and "operator role" in r.text
    assert vic.get("/streams/new").status_code == 403  # the create form is admin's too
    with Session(app.state.engine) as s:
        assert s.get(Anomaly, aid).status == "open"
        assert s.exec(select(Stream).where(Stream.name == "new-one")).first() is None
    assert train_mode(app) is True


def test_an_operator_answers_anomalies_but_changes_no_settings(ui) -> None:
    app, _, sid = ui
    aid = add_anomaly(app, sid)
    otto = login(app, "otto")
    assert 'name="action" value="normal"' in otto.get("/anomalies").text
    token = csrf(otto)
    r = otto.post("/anomalies/act", data={"ids": str(aid), "action": "confirm", "csrf_token": token},
                  follow_redirects=False)
    assert r.status_code == 303, r.text
    with Session(app.state.engine) as s:
        assert s.get(Anomaly, aid).status == "confirmed"
    r = otto.post("/streams/svc/train-mode", data={"train_mode": "off", "csrf_token": token})
    assert r.status_code == 403 and "This needs the admin role" in r.text and "otto has the role operator" in r.text
    r = otto.post("/streams/svc/models/1/rollback", data={"csrf_token": token})
    assert r.status_code == 403 and "admin role" in r.text
    assert train_mode(app) is True


def test_an_admin_changes_stream_settings(ui) -> None:
    app, _, _ = ui
    ann = login(app, "ann")
    page = ann.get("/")
    assert "ann" in page.text and ">admin<" in page.text  # the role shows beside the name
    token = csrf(ann)
    r = ann.post("/streams/svc/train-mode", data={"train_mode": "off", "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert train_mode(app) is False
    r = ann.post("/streams/svc/train-mode", data={"train_mode": "on", "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and train_mode(app) is True


def test_a_new_role_applies_from_the_next_request(ui) -> None:
    app, _, sid = ui
    aid = add_anomaly(app, sid)
    c = login(app, "vic")
    token = csrf(c)
    with Session(app.state.engine) as s:
        set_role(s, "vic", "operator")
    try:
        r = c.post("/anomalies/act", data={"ids": str(aid), "action": "confirm", "csrf_token": token},
                   follow_redirects=False)
        assert r.status_code == 303, r.text
    finally:
        with Session(app.state.engine) as s:
            set_role(s, "vic", "viewer")
    assert c.post("/anomalies/act", data={"ids": str(aid), "action": "confirm", "csrf_token": token}).status_code == 403


# --------------------------------------------------------------------------- sessions


def test_logout_revokes_the_cookie(ui) -> None:
    app, _, _ = ui
    c = login(app, "otto")
    cookie = c.cookies.get(SESSION_COOKIE)
    assert c.get("/jobs", follow_redirects=False).status_code == 200
    r = c.post("/logout", data={"csrf_token": csrf(c)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    replay = TestClient(app)  # someone who copied the cookie before the logout
    replay.cookies.set(SESSION_COOKIE, cookie)
    r = replay.get("/jobs", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    other = login(app, "otto")  # other sessions of the same user live on
    assert other.get("/jobs", follow_redirects=False).status_code == 200


def test_set_password_revokes_every_session(ui, monkeypatch: pytest.MonkeyPatch) -> None:
    app, data, _ = ui
    first, second = login(app, "otto"), login(app, "otto")
    assert first.get("/jobs", follow_redirects=False).status_code == 200
    monkeypatch.setattr("sys.stdin", io.StringIO("a brand new password\n"))
    assert cli.main(["user", "set-password", "otto", "--password-stdin", "--data-dir", str(data)]) == 0
    for c in (first, second):
        r = c.get("/jobs", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    fresh = login(app, "otto", "a brand new password")
    assert fresh.get("/jobs", follow_redirects=False).status_code == 200
    with Session(app.state.engine) as s:
        set_password(s, "otto", PASSWORDS["otto"])
    assert fresh.get("/jobs", follow_redirects=False).status_code == 303


def test_sessions_expire_and_end_with_their_user(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    upgrade_database(url)
    engine = make_engine(url)
    with Session(engine) as s:
        user = create_user(s, "eve", "password eve")
        token = start_session(s, user)
        assert session_user(s, token).username == "eve"
        assert session_user(s, token + "x") is None and session_user(s, None) is None
        row = s.exec(select(UserSession)).one()
        assert row.id != token and len(row.id) == 64  # the table keeps the token's hash, not the token
        row.created_at = utcnow() - timedelta(hours=13)
        s.add(row)
        s.commit()
        assert session_user(s, token) is None  # past the 12 h lifetime
        token = start_session(s, user)  # and the expired row is cleaned up on the way
        assert len(s.exec(select(UserSession)).all()) == 1
    with Session(engine) as s:
        from logsense.server.users import delete_user

        delete_user(s, "eve")
        assert session_user(s, token) is None and s.exec(select(UserSession)).all() == []
    engine.dispose()


# --------------------------------------------------------------------------- the login throttle


def test_concurrent_wrong_passwords_are_all_counted() -> None:
    """200 simultaneous attempts: each is counted before its password check, so 10 get through."""
    throttle = LoginThrottle(free_failures={"user": 10, "addr": 30})
    keys = ["user:alice", "addr:192.0.2.7"]
    barrier = threading.Barrier(200)
    allowed = []

    def attempt() -> None:
        barrier.wait()
        if throttle.attempt(keys) == 0:
            allowed.append(1)

    threads = [threading.Thread(target=attempt) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 10
    assert throttle.failures("user:alice") == 10 and throttle.retry_after("user:alice") > 0
    # the address alone (another account) still has tries left: 30 per address
    assert throttle.attempt(["user:bob", "addr:192.0.2.7"]) == 0


def test_lockout_backs_off_with_a_cap_and_the_right_password_resets_it() -> None:
    now = [1000.0]
    throttle = LoginThrottle(free_failures=3, base_delay=10, max_delay=60, clock=lambda: now[0])
    keys = ["user:alice", "addr:192.0.2.7"]
    assert [throttle.attempt(keys) for _ in range(3)] == [0, 0, 0]
    assert throttle.attempt(keys) == pytest.approx(10)  # blocked after 3 failures, nothing more counted
    delays = []
    for _ in range(5):
        now[0] += throttle.retry_after("user:alice")
        assert throttle.attempt(keys) == 0  # one more try once the block is over
        delays.append(throttle.retry_after("user:alice"))
    assert delays == [20, 40, 60, 60, 60]  # doubling, capped: never locked out for good
    now[0] += 60
    assert throttle.attempt(keys) == 0
    throttle.succeeded(keys)  # the right password
    assert throttle.failures("user:alice") == 0 and throttle.attempt(keys) == 0
    now[0] += 10_000  # a key untried for an hour starts afresh
    throttle.attempt(["user:carol"])
    now[0] += 4000
    assert throttle.failures("user:carol") == 1 and throttle.attempt(["user:carol"]) == 0
    assert throttle.failures("user:carol") == 1


def test_the_login_route_counts_per_account_and_refuses_with_retry_after(ui) -> None:
    app, _, _ = ui
    app.state.login_throttle.reset()
    c = TestClient(app)
    token = csrf_of(c.get("/login").text)
    codes = [c.post("/login", data={"username": "ann", "password": "wrong password", "csrf_token": token}).status_code
             for _ in range(11)]
    assert codes == [401] * 10 + [429]
    r = c.post("/login", data={"username": "ann", "password": PASSWORDS["ann"], "csrf_token": token})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0 and "try again in" in r.text
    app.state.login_throttle.reset()
    login(app, "ann")


def _request(peer: str, forwarded: str | None, allow: str) -> Request:
    settings = Settings(_env_file=None, forwarded_allow_ips=allow)
    app = SimpleNamespace(state=SimpleNamespace(settings=settings))
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "method": "POST", "path": "/login", "headers": headers, "client": (peer, 4711),
                    "app": app})


def test_x_forwarded_for_counts_only_from_a_configured_proxy(ui) -> None:
    # not trusted by default: the socket peer is the client, whatever the header says
    assert login_client(_request("127.0.0.1", "203.0.113.9", "")) == "127.0.0.1"
    assert login_client(_request("10.0.0.2", "203.0.113.9", "")) == "10.0.0.2"
    # from a configured proxy: the nearest address in front of the trusted ones
    assert login_client(_request("10.0.0.2", "203.0.113.9", "10.0.0.0/8")) == "203.0.113.9"
    assert login_client(_request("10.0.0.2", "198.51.100.1, 203.0.113.9, 10.0.0.5", "10.0.0.0/8")) == "203.0.113.9"
    assert login_client(_request("192.0.2.1", "203.0.113.9", "10.0.0.0/8")) == "192.0.2.1"  # not that proxy
    assert login_client(_request("::1", "2001:db8::1", "::1")) == "2001:db8::1"
    assert client_address("10.0.0.2", ["10.0.0.3"], parse_trusted("10.0.0.0/8")) == "10.0.0.3"  # all trusted
    assert client_address("10.0.0.2", None, parse_trusted("*")) == "10.0.0.2"
    with pytest.raises(ValueError, match="forwarded_allow_ips"):
        Settings(_env_file=None, forwarded_allow_ips="10.0.0.0/8, nonsense")
    # through the app: rotating the header from an untrusted peer does not dodge the throttle
    app, _, _ = ui
    app.state.login_throttle.reset()
    c = TestClient(app)
    token = csrf_of(c.get("/login").text)
    for i in range(3):
        r = c.post("/login", data={"username": f"nobody{i}", "password": "wrong password", "csrf_token": token},
                   headers={"X-Forwarded-For": f"198.51.100.{i}"})
        assert r.status_code == 401
    assert app.state.login_throttle.failures("addr:testclient") == 3
    assert all(app.state.login_throttle.failures(f"addr:198.51.100.{i}") == 0 for i in range(3))
    app.state.login_throttle.reset()


def test_password_checks_run_at_most_two_at_once_in_their_own_threads() -> None:
    checks = PasswordChecks(workers=2, max_waiting=4)
    lock, running, peak, names = threading.Lock(), [0], [0], set()

    def work(_i: int) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            names.add(threading.current_thread().name)
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return "ok"

    async def main() -> list:
        return await asyncio.gather(*(checks.run(work, i) for i in range(10)), return_exceptions=True)

    results = asyncio.run(main())
    checks.shutdown()
    assert results.count("ok") == 6 and sum(isinstance(r, Busy) for r in results) == 4  # 2 running + 4 waiting
    assert peak[0] == 2 and all(n.startswith("password-check") for n in names)


# --------------------------------------------------------------------------- the user commands


def test_user_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    data = str(tmp_path / "cli")

    def run(*argv: str, stdin: str | None = None) -> tuple[int, str]:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = cli.main(["user", *argv, "--data-dir", data])
        out, err = capsys.readouterr()
        return code, out + err

    assert cli.ROLES == ROLES
    assert run("create", "alice", "--password-stdin", stdin="alice password\n") == \
        (0, "user 1 ('alice', role admin) created; log in at the web UI's /login\n")
    assert "role operator" in run("create", "bob", "--password-stdin", stdin="bob password\n")[1]
    assert "role viewer" in run("create", "carl", "--role", "viewer", "--password-stdin", stdin="carl password\n")[1]
    code, out = run("list")
    assert code == 0
    assert re.search(r"alice\s+admin", out) and re.search(r"bob\s+operator", out) and re.search(r"carl\s+viewer", out)
    assert run("set-role", "bob", "admin") == (0, "'bob' is now admin\n")
    assert run("set-role", "nobody", "admin")[0] == 1
    with pytest.raises(SystemExit):
        run("set-role", "bob", "root")  # argparse: not one of the roles
    code, out = run("set-password", "carl", "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 8" in out
    code, out = run("set-password", "nobody", "--password-stdin", stdin="long enough\n")
    assert code == 1 and "no user named 'nobody'" in out
    prompts = iter(["typed password", "typed password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(prompts))
    assert run("set-password", "carl")[0] == 0
    assert run("delete", "carl")[0] == 0 and run("delete", "carl")[0] == 1
    engine = make_engine(f"sqlite:///{data}/logsense.db")
    with Session(engine) as s:
        from logsense.server.users import authenticate

        assert authenticate(s, "alice", "alice password").role == "admin"
        assert s.exec(select(User).where(User.username == "carl")).first() is None
    engine.dispose()


def test_users_made_before_roles_become_admins(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    upgrade_database(url, "0010")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO users (username, password_hash, created_at) VALUES ('old', 'x', '2026-12-01')")
    engine.dispose()
    upgrade_database(url)
    engine = make_engine(url)
    with Session(engine) as s:
        assert s.exec(select(User)).one().role == "admin"
    engine.dispose()


# --------------------------------------------------------------------------- files and dev mode


def test_the_database_and_its_folder_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        data = tmp_path / "fresh" / "data"
        url = f"sqlite:///{data}/logsense.db"
        upgrade_database(url)
        engine = make_engine(url)
        with engine.begin() as conn:  # a write: the WAL and its index exist while the connection is open
            conn.exec_driver_sql("INSERT INTO users (username, password_hash, created_at, role) "
                                 "VALUES ('x', 'x', '2026-12-01', 'admin')")
        db = data / "logsense.db"
        for path in (db, db.with_name("logsense.db-wal"), db.with_name("logsense.db-shm")):
            assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700  # every folder it made
        engine.dispose()
        db.chmod(0o644)  # as an older version left it
        make_engine(url).dispose()
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_serve_dev_refuses_a_non_loopback_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    ran = []
    monkeypatch.setattr("uvicorn.run", lambda *a, **kw: ran.append(kw))
    for host in ("0.0.0.0", "::", "192.0.2.10", "example.org"):
        assert cli.main(["serve", "--dev", "--host", host, "--data-dir", str(tmp_path / "d")]) == 2
        assert "refusing --dev" in capsys.readouterr().err
    monkeypatch.setenv("LOGSENSE_DEV_MODE", "true")
    monkeypatch.setenv("LOGSENSE_HOST", "0.0.0.0")
    assert cli.main(["serve", "--data-dir", str(tmp_path / "d")]) == 2
    assert ran == []
    assert cli.main(["serve", "--dev", "--host", "127.0.0.1", "--data-dir", str(tmp_path / "d")]) == 0
    assert ran[0]["host"] == "127.0.0.1" and ran[0]["proxy_headers"] is False  # X-Forwarded-For: the app decides
    assert all(cli.is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
