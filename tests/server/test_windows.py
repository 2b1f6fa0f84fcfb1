"""Window assignment on a real SQLite file: the remembered open sessions are a hint, the database the truth."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select

from logsense.server import store, windows
from logsense.server.db import make_engine, upgrade_database
from logsense.server.tables import LogLine, Stream, StreamSettings, Window, WindowLine, utcnow


@pytest.fixture
def db(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/w.db"
    upgrade_database(url)
    engine = make_engine(url)
    with Session(engine) as s:
        stream = Stream(name="svc", settings={})
        s.add(stream)
        s.commit()
        stream_id = stream.id
    yield engine, stream_id
    engine.dispose()


CFG = StreamSettings(session_regex=r"k\d")


def _post(engine, stream_id: int, keys: list[list[str]], fail: bool = False) -> list[int]:
    """Store one line per entry (its session keys) and assign them, as ingest does."""
    now = utcnow()
    columns = {"raw": [f"line {k}" for k in keys], "masked": ["line"] * len(keys), "template_id": [1] * len(keys),
               "sessions": keys, "rapid_score": [0.0] * len(keys), "rapid_flag": [False] * len(keys),
               "severity": ["normal"] * len(keys)}
    try:
        with store.write_session(engine) as session:
            ids = store.insert_lines(session, stream_id, now, columns)
            windows.assign(session, stream_id, CFG, [windows.LineSlot(i, None, k) for i, k in zip(ids, keys)], now)
            if fail:
                raise RuntimeError("the rest of the batch failed")
    except RuntimeError:
        if not fail:
            raise
    return ids


def _sessions(engine) -> dict[tuple[int, str], list[int]]:
    """(window id, key) -> its line ids by position, for every window."""
    with Session(engine) as s:
        out: dict[tuple[int, str], list[int]] = {}
        for w in s.exec(select(Window).order_by(Window.id)).all():
            members = s.exec(select(WindowLine).where(WindowLine.window_id == w.id).order_by(WindowLine.position)).all()
            assert [m.position for m in members] == list(range(len(members))) == list(range(w.n_lines))
            out[(w.id, w.key)] = [m.line_id for m in members]
        return out


def test_remembered_sessions_carry_on_across_batches(db):
    engine, sid = db
    a = _post(engine, sid, [["k1"], ["k2"], ["k1", "k2"]])
    b = _post(engine, sid, [["k2"], ["k1"]])
    assert set(windows.open_sessions(engine).by_stream[sid]) == {"k1", "k2"}
    got = _sessions(engine)
    assert len(got) == 2  # no second window for a key that was remembered
    by_key = {key: lines for (_, key), lines in got.items()}
    assert by_key == {"k1": [a[0], a[2], b[1]], "k2": [a[1], a[2], b[0]]}


def test_a_window_closed_behind_its_back_is_not_reused(db):
    engine, sid = db
    _post(engine, sid, [["k1"], ["k1"]])
    with engine.begin() as conn:  # another process closes it: this one's memory is now wrong
        conn.exec_driver_sql("UPDATE windows SET state = 'queued' WHERE key = 'k1'")
    late = _post(engine, sid, [["k1"], ["k3"]])
    got = _sessions(engine)
    assert len(got) == 3
    with Session(engine) as s:
        open_k1 = s.exec(select(Window).where(Window.key == "k1", Window.state == "open")).one()
        closed_k1 = s.exec(select(Window).where(Window.key == "k1", Window.state == "queued")).one()
    assert got[(open_k1.id, "k1")] == [late[0]]
    assert closed_k1.n_lines == 2 and len(got[(closed_k1.id, "k1")]) == 2


def test_a_rolled_back_batch_leaves_no_trace_in_the_next(db):
    engine, sid = db
    first = _post(engine, sid, [["k1"]])
    _post(engine, sid, [["k1"], ["k4"]], fail=True)  # remembered k1 at 2 lines and a k4 window that never was
    after = _post(engine, sid, [["k4"], ["k1"]])
    got = {key: lines for (_, key), lines in _sessions(engine).items()}
    assert got == {"k1": [first[0], after[1]], "k4": [after[0]]}
    with Session(engine) as s:
        assert s.exec(select(LogLine.id)).all() == sorted(first + after)


def test_closing_forgets(db):
    engine, sid = db
    _post(engine, sid, [["k1"], ["k2"]])
    with store.write_session(engine) as session:
        windows.close_all(session, sid, utcnow())
    assert windows.open_sessions(engine).by_stream[sid] == {}
    _post(engine, sid, [["k1"]])
    assert sorted(key for _, key in _sessions(engine)) == ["k1", "k1", "k2"]


def test_a_session_longer_than_its_limit_goes_on_in_a_new_window(db, monkeypatch):
    """A new session is inserted already counting the lines this batch gives it (no UPDATE
    after): also when the batch fills it and the rest of its lines open the next one."""
    monkeypatch.setattr(windows, "MAX_SESSION_LINES", 3)
    engine, sid = db
    a = _post(engine, sid, [["k1"]] * 7 + [["k1", "k2"]])  # k1: 3 + 3 + 2 lines, k2: 1
    b = _post(engine, sid, [["k2"], ["k1"], ["k1"]])  # k1's third window fills up, k2 goes on
    got = _sessions(engine)  # checks every window's n_lines against its positions
    with Session(engine) as s:
        states = [(w.key, w.state, w.n_lines) for w in s.exec(select(Window).order_by(Window.id)).all()]
    # windows are created in the order of their first line (models.windowing cuts line by line)
    assert states == [("k1", "queued", 3), ("k1", "queued", 3), ("k1", "queued", 3), ("k2", "open", 2),
                      ("k1", "open", 1)]
    assert [lines for (_, key), lines in got.items() if key == "k1"] == [a[0:3], a[3:6], [a[6], a[7], b[1]], [b[2]]]
    assert [lines for (_, key), lines in got.items() if key == "k2"] == [[a[7], b[0]]]


def test_count_windows_are_not_remembered_as_sessions(db):
    """A count window is keyed `line:<id>`; a record may name that string as its session."""
    engine, sid = db
    cfg = StreamSettings(window_size=3)
    now = utcnow()
    with store.write_session(engine) as session:
        ids = store.insert_lines(session, sid, now, {"raw": ["l0", "l1", "l2"], "masked": ["l"] * 3,
                                                     "sessions": [[], [], ["job"]], "severity": ["normal"] * 3})
        windows.assign(session, sid, cfg, [windows.LineSlot(i, None, ("job",) if n == 2 else ())
                                           for n, i in enumerate(ids)], now)  # one batch: both kinds
        count_key = f"line:{ids[0]}"
    assert set(windows.open_sessions(engine).by_stream[sid]) == {"job"}
    with store.write_session(engine) as session:  # a record whose session is the count window's key
        late = store.insert_lines(session, sid, now, {"raw": ["x"], "masked": ["x"], "sessions": [[count_key]],
                                                      "severity": ["normal"]})
        windows.assign(session, sid, cfg, [windows.LineSlot(late[0], None, (count_key,))], now)
    with Session(engine) as s:
        kinds = {(w.kind, w.key): w.n_lines for w in s.exec(select(Window)).all()}
    assert kinds == {("count", count_key): 2, ("session", "job"): 1, ("session", count_key): 1}


def test_the_open_session_lookup_uses_the_key_index(db):
    """Not the state index, which SQLite (3.40) picks without the hint: it walks every open
    window of every stream, per batch."""
    engine, stream_id = db
    with engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + windows.open_sessions_sql(3), (stream_id, "a", "b", "c")).all()
    assert "ix_windows_stream_id_key" in " ".join(str(r[-1]) for r in plan)


def test_normal_window_ids_are_the_windows_of_normal_data_only(db) -> None:
    """Training data: every line train-mode or labelled normal, or the window refuted as a whole;
    never a window with a line or a label confirmed anomalous (store.normal_window_ids)."""
    engine, sid = db
    now = utcnow()
    cases = {  # key -> (severities of its lines, labels of its lines, window label)
        "k1": (["train", "train"], [None, None], None),  # normal
        "k2": (["train", "normal"], [None, None], None),  # an unchecked live line
        "k3": (["train", "watch"], [None, "normal"], None),  # refuted line: normal
        "k4": (["train", "train"], [None, "anomaly"], None),  # confirmed anomalous line
        "k5": (["watch", "watch"], [None, None], "normal"),  # refuted window: normal
        "k6": (["train", "train"], [None, None], "anomaly"),  # confirmed window
    }
    with store.write_session(engine) as session:
        for key, (severities, labels, _window_label) in cases.items():  # window labels: below
            n = len(severities)
            ids = store.insert_lines(session, sid, now, {
                "raw": [key] * n, "masked": [key] * n, "template_id": [1] * n, "sessions": [[key]] * n,
                "severity": severities, "label": labels})
            windows.assign(session, sid, CFG, [windows.LineSlot(i, None, [key]) for i in ids], now)
        session.execute(Window.__table__.update().where(Window.__table__.c.key == "k5").values(label="normal"))
        session.execute(Window.__table__.update().where(Window.__table__.c.key == "k6").values(label="anomaly"))
    with Session(engine) as s:
        by_key = {w.key: w.id for w in s.exec(select(Window)).all()}
        assert store.normal_window_ids(s, sid) == sorted(by_key[k] for k in ("k1", "k3", "k5"))
        assert store.normal_window_ids(s, sid, after_window_id=by_key["k3"]) == [by_key["k5"]]
        assert store.confirmed_anomaly_window_ids(s, sid) == sorted(by_key[k] for k in ("k4", "k6"))
