"""A stream trained before the session-level normal set existed gets it filled from the database
when its model loads, instead of flagging every closed session as new content."""

from __future__ import annotations

from sqlmodel import Session, select

from logsense.models.rapid import RapidConfig, RapidScorer
from logsense.models.stream import content_text
from logsense.server import store
from logsense.server.tables import Stream, Window

from .helpers import BLK, BLOCK_REGEX, hdfs_slice, post_lines, SMALL_FIXTURE_FPR, tiny_loggpt_config, wait_job


def test_trained_stream_without_session_set_is_backfilled_at_load(served) -> None:
    client, auth, app = served
    lines, _ = hdfs_slice()
    blocks = list(dict.fromkeys(b for line in lines for b in BLK.findall(line)))[:60]
    train = [x for x in lines if set(BLK.findall(x)) <= set(blocks)]
    r = client.post("/api/v1/streams", headers=auth, json={"name": "old", "settings": {
        "format": "hdfs", "session_regex": BLOCK_REGEX, "loggpt_config": tiny_loggpt_config(), "loggpt_target_fpr": SMALL_FIXTURE_FPR, "train_mode": True}})
    assert r.status_code == 201, r.text
    post_lines(client, auth, "old", train)
    client.post("/api/v1/streams/old/flush", headers=auth)
    wait_job(client, auth, client.post("/api/v1/streams/old/train", headers=auth).json()["job_id"])

    registry = app.state.registry
    with Session(app.state.engine) as session:
        stream = session.exec(select(Stream).where(Stream.name == "old")).one()
        windows = session.exec(select(Window).where(Window.stream_id == stream.id)).all()
        members = store.window_lines(session, [w.id for w in windows])
    model = registry.get(stream)
    held = model.excluded_templates()  # the training review's: those sessions train nothing
    so_far: dict[str, list] = {}  # a session cut by the idle timeout: each part with the parts before it
    contents = []
    for w in sorted(windows, key=lambda w: w.id):
        so_far.setdefault(w.key, []).extend(members[w.id])
        if members[w.id] and not held.intersection(x["template_id"] for x in so_far[w.key]):
            contents.append([x["masked"] for x in so_far[w.key]])
    assert contents
    texts = {content_text(ls) for ls in contents}
    assert model.has_trained_sessions and all(model.rapid_session.is_normal(t) for t in texts)

    # what an older version left on disk: no training sessions in the set, and no marker
    model.rapid_session = RapidScorer(model.embedder, RapidConfig(k=model.config.rapid_k))
    model.has_trained_sessions = False
    registry.save(stream.id)
    registry.drop(stream.id)

    loaded = registry.get(stream)
    assert loaded is not model and loaded.trained
    assert loaded.has_trained_sessions and all(loaded.rapid_session.is_normal(t) for t in texts)
    assert loaded.session_flags([set(ls) for ls in contents]) == [False] * len(contents)
