"""`logsense watch`: new whole lines of a followed file are posted once each, through rotation,
truncation and a restart of the watcher; against a real server, a retried batch is not stored twice."""

from __future__ import annotations

import os

from logsense.server.watch import Follower, idempotency_key, watch


def _posted(follower: Follower) -> list[list[str]]:
    got: list[list[str]] = []
    watch(follower, lambda b: got.append(list(b.lines)), once=True)
    return got


def test_new_lines_rotation_truncation_and_a_restart(tmp_path) -> None:
    log, state = tmp_path / "app.log", tmp_path / "state.json"
    log.write_text("one\ntwo\nthree-partial")
    f = Follower(log, state, from_start=True)
    assert _posted(f) == [["one", "two"]]  # the line still being written waits
    with open(log, "a") as out:
        out.write(" done\nfour\n")
    assert _posted(f) == [["three-partial done", "four"]]
    f.close()

    with open(log, "a") as out:  # the watcher was down meanwhile: it resumes after "four"
        out.write("five\n")
    f = Follower(log, state)
    assert _posted(f) == [["five"]]

    with open(log, "a") as out:  # rotation: the old file's last line first, then the new file
        out.write("six\n")
    os.rename(log, tmp_path / "app.log.1")
    log.write_text("seven\n")
    assert sum(_posted(f), []) == ["six", "seven"]

    log.write_text("")  # truncated in place, then written again
    assert _posted(f) == []
    log.write_text("eight\n")
    assert _posted(f) == [["eight"]]
    f.close()


def test_a_first_start_follows_from_the_end_unless_told_otherwise(tmp_path) -> None:
    log = tmp_path / "app.log"
    log.write_text("old\n")
    f = Follower(log, tmp_path / "s.json")
    assert _posted(f) == []
    with open(log, "a") as out:
        out.write("new\n")
    assert _posted(f) == [["new"]]


def test_a_failed_post_is_retried_with_the_same_key_and_stored_once(served, tmp_path) -> None:
    client, auth, app = served
    assert client.post("/api/v1/streams", json={"name": "w", "settings": {"format": "auto"}}, headers=auth).status_code == 201
    log = tmp_path / "app.log"
    log.write_text("".join(f"2024-05-01T12:00:0{i}Z INFO worker started job {i}\n" for i in range(3)))
    keys, answers = [], []

    def post(batch) -> None:  # noqa: ANN001
        keys.append(idempotency_key(batch))
        r = client.post("/api/v1/streams/w/logs", json={"lines": batch.lines},
                        headers={**auth, "Idempotency-Key": keys[-1]})
        answers.append(r.status_code)
        if len(answers) == 1:
            raise ConnectionError("the answer was lost")  # stored, but the watcher never heard

    assert watch(Follower(log, tmp_path / "s.json", from_start=True), post, interval=0.01, once=True) == 3
    assert answers == [200, 200] and keys[0] == keys[1]
    assert len(client.get("/api/v1/streams/w/lines", headers=auth).json()) == 3
