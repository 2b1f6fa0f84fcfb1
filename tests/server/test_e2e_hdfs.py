"""Must-show 2: an HDFS stream end to end, on a real SQLite file, real migrations, the real MiniLM
model and a tiny LogGPT: train-mode ingest, training, checked ingest, LogGPT verdicts, and a
refuted false positive that comes back normal."""

from __future__ import annotations

from sqlmodel import Session, select

from logsense.server import store
from logsense.server.tables import LogLine, Window

from .helpers import BLK, BLOCK_REGEX, hdfs_slice, post_lines, SMALL_FIXTURE_FPR, tiny_loggpt_config, wait_checked, wait_job


def test_hdfs_end_to_end(served) -> None:
    client, auth, app = served
    lines, labels = hdfs_slice()
    blocks = list(dict.fromkeys(b for line in lines for b in BLK.findall(line)))
    normal = [b for b in blocks if labels[b] == "Normal"]
    train_blocks = set(normal[: int(len(normal) * 0.6)])  # the oldest 60% of the normal blocks
    train = [x for x in lines if set(BLK.findall(x)) <= train_blocks]
    rest = [x for x in lines if not set(BLK.findall(x)) <= train_blocks]

    r = client.post("/api/v1/streams", headers=auth, json={"name": "HDFS", "settings": {
        "format": "hdfs", "session_regex": BLOCK_REGEX, "idle_timeout_seconds": 3600,
        "loggpt_config": tiny_loggpt_config(), "loggpt_target_fpr": SMALL_FIXTURE_FPR, "train_mode": True}})
    assert r.status_code == 201, r.text

    # 1. the normal training part, in train mode: stored as training data, verdict "train"
    answers = post_lines(client, auth, "HDFS", train)
    assert {a["severity"] for a in answers} == {"train"}
    assert all(a["template_id"] is not None for a in answers)
    client.post("/api/v1/streams/HDFS/flush", headers=auth)

    # 2. train: a job with progress, then a live LogGPT version
    r = client.post("/api/v1/streams/HDFS/train", headers=auth)
    assert r.status_code == 202, r.text
    job = wait_job(client, auth, r.json()["job_id"])
    assert job["progress"] == 1.0 and job["result"]["promoted"] is True
    versions = client.get("/api/v1/streams/HDFS/models", headers=auth).json()
    assert [v["live"] for v in versions] == [True] and versions[0]["metrics"]["k"] >= 1

    # 3. train mode off, post the rest: instant RAPID verdicts, then LogGPT checks in the background
    r = client.patch("/api/v1/streams/HDFS", headers=auth, json={"settings": {"train_mode": False}})
    assert r.status_code == 200 and r.json()["settings"]["train_mode"] is False
    answers = post_lines(client, auth, "HDFS", rest)
    assert {a["severity"] for a in answers} <= {"normal", "watch"}
    assert all(a["pending"] for a in answers)  # every line has a block id: a LogGPT check is to come
    client.post("/api/v1/streams/HDFS/flush", headers=auth)
    wait_checked(client, auth, "HDFS")

    first_id = answers[0]["id"]
    checked = client.get("/api/v1/streams/HDFS/lines", headers=auth, params={"after_id": first_id - 1,
                                                                             "limit": 10_000}).json()
    assert len(checked) == len(rest)
    assert all(x["loggpt_flag"] is not None and x["checked_at"] for x in checked)
    with Session(app.state.engine) as session:
        done = session.exec(select(Window).where(Window.state == "done", Window.anomalous.is_not(None))).all()
    flagged = {w.key for w in done if w.anomalous}
    anomalous_blocks = {b for b in blocks if labels[b] == "Anomaly"}
    assert anomalous_blocks and len(flagged & anomalous_blocks) >= len(anomalous_blocks) / 2, (flagged, anomalous_blocks)
    test_normal = [w.key for w in done if labels.get(w.key) == "Normal"]
    assert sum(k in flagged for k in test_normal) < len(test_normal)  # not everything

    # known content comes first: a checked session with a training session's content is never
    # flagged; one holding a line no training session had is a window anomaly that says so (a
    # session's content is the distinct masked lines of its parts so far)
    with Session(app.state.engine) as session:
        all_windows = session.exec(select(Window).order_by(Window.id)).all()
        members = store.window_lines(session, [w.id for w in all_windows])
    trained_by_key: dict[str, list] = {}
    for w in all_windows:
        if members[w.id] and all(x["severity"] == "train" for x in members[w.id]):
            trained_by_key.setdefault(w.key, []).extend(x["masked"] for x in members[w.id])
    trained = {tuple(sorted(v)) for v in trained_by_key.values()}  # content: the lines with their repeats
    trained_sets = [frozenset(v) for v in trained_by_key.values()]
    so_far: dict[str, list] = {}
    content = {}
    for w in all_windows:
        so_far.setdefault(w.key, []).extend(x["masked"] for x in members[w.id])
        content[w.id] = tuple(sorted(so_far[w.key]))
    checked = [w for w in done if members[w.id] and not all(x["severity"] == "train" for x in members[w.id])]
    known = [w for w in checked if content[w.id] in trained]
    new = [w for w in checked if not any(set(content[w.id]) <= t for t in trained_sets)]
    assert known and new, (len(known), len(new))
    assert not any(w.anomalous for w in known)
    assert all(w.anomalous and w.result.get("new_content") for w in new)
    window_anomalies = client.get("/api/v1/anomalies", headers=auth, params={"stream": "HDFS", "kind": "window",
                                                                            "limit": 1000}).json()
    assert {a["window_id"] for a in window_anomalies} >= {w.id for w in new}

    # 4. a false positive: a flagged line of a normal block, else a flagged normal session; refute
    # it, and the same block sent again comes back normal
    anomalies = client.get("/api/v1/anomalies", headers=auth, params={"stream": "HDFS", "limit": 1000}).json()
    assert anomalies, "nothing was flagged"
    key_of = {w.id: w.key for w in all_windows}

    def blocks(a: dict) -> list[str]:
        return BLK.findall(a["line"]) if a["line"] else [key_of[a["window_id"]]]

    false_positives = [a for a in anomalies if all(labels[b] == "Normal" for b in blocks(a))]
    line_fps = [a for a in false_positives if a["kind"] == "line"]
    fp = (line_fps or false_positives or [None])[0]
    assert fp is not None, ("no false positive to refute", [(a["kind"], a["severity"], a["line"]) for a in anomalies])
    r = client.post(f"/api/v1/anomalies/{fp['id']}/feedback", headers=auth, json={"label": "normal"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "refuted"
    assert fp["id"] not in [a["id"] for a in client.get("/api/v1/anomalies", headers=auth).json()]

    # the same block's lines once more, under a block id never seen (a new session with the same
    # content: the same id again would continue the refuted session, judged with it as context)
    block = blocks(fp)[0]
    replay = [x.replace(block, "blk_4242424242") for x in lines if block in x]
    fp = {**fp, "line": fp["line"].replace(block, "blk_4242424242") if fp["line"] else fp["line"]}
    block = "blk_4242424242"
    answers = post_lines(client, auth, "HDFS", replay)
    if fp["kind"] == "line":  # RAPID knows the refuted line now: normal at once
        again = answers[replay.index(fp["line"])]
        assert again["rapid_score"] == 0.0 and again["severity"] == "normal", again
    client.post("/api/v1/streams/HDFS/flush", headers=auth)
    wait_checked(client, auth, "HDFS")
    with Session(app.state.engine) as session:
        if fp["kind"] == "line":  # the refuted line itself
            replayed = [session.get(LogLine, answers[replay.index(fp["line"])]["id"])]
        else:  # the part of the new session that holds the refuted window's content: known now
            refuted = session.get(Window, fp["window_id"])
            content = {x["masked"] for x in store.window_lines(session, [refuted.id])[refuted.id]}
            parts = session.exec(select(Window).where(Window.key == block).order_by(Window.id)).all()
            part_lines = store.window_lines(session, [w.id for w in parts])
            same = [w for w in parts if {x["masked"] for x in part_lines[w.id]} == content]
            assert same, "the refuted content did not come again"
            assert all(w.state == "done" and not w.anomalous for w in same), same
            replayed = [session.get(LogLine, x["id"]) for w in same for x in part_lines[w.id]]
        assert replayed and all(x.severity == "normal" for x in replayed), (
            fp, [(x.masked, x.template_id, x.severity, x.rapid_flag, x.rapid_score, x.loggpt_flag) for x in replayed
                 if x.severity != "normal"])

    # metrics: the domain series are there
    text = client.get("/metrics", headers=auth).text
    assert 'logsense_lines_ingested_total{stream="HDFS"}' in text
    assert 'logsense_feedback_total{label="normal",stream="HDFS"} 1.0' in text
    assert 'logsense_model_version{kind="loggpt",stream="HDFS"} 1.0' in text
