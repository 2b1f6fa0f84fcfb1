"""What a stream says about its own calibration: states, too little validation data, promotions."""

from __future__ import annotations

from .helpers import BLOCK_REGEX, hdfs_slice, post_lines, tiny_loggpt_config, wait_job


def _state(client, auth, name: str) -> tuple[str, str]:
    body = client.get(f"/api/v1/streams/{name}", headers=auth).json()
    return body["state"], body["state_reason"]


def test_an_untrained_stream_is_not_reported_as_detecting(served) -> None:
    client, auth, app = served
    r = client.post("/api/v1/streams", headers=auth, json={"name": "fresh", "settings": {"train_mode": False}})
    assert r.status_code == 201, r.text
    client.post("/api/v1/streams/fresh/logs", headers=auth, json={"lines": ["service started on port 80"]})
    state, reason = _state(client, auth, "fresh")
    assert state == "learning" and "no trained model" in reason
    metrics = client.get("/metrics", headers=auth).text
    assert 'logsense_stream_state{state="detecting",stream="fresh"} 0.0' in metrics
    assert 'logsense_stream_state{state="learning",stream="fresh"} 1.0' in metrics
    assert [s["state"] for s in client.get("/api/v1/streams", headers=auth).json()] == ["learning"]


def test_too_little_validation_data_keeps_the_first_model_back_and_says_so(served) -> None:
    client, auth, app = served
    lines, _ = hdfs_slice()
    r = client.post("/api/v1/streams", headers=auth, json={"name": "small", "settings": {
        "format": "hdfs", "session_regex": BLOCK_REGEX, "loggpt_config": tiny_loggpt_config()}})
    assert r.status_code == 201, r.text
    assert _state(client, auth, "small")[0] == "learning"
    post_lines(client, auth, "small", lines[:800])
    client.post("/api/v1/streams/small/flush", headers=auth)
    job = wait_job(client, auth, client.post("/api/v1/streams/small/train", headers=auth).json()["job_id"], promoted=False)
    assert "too little validation data" in job["message"] and "needed" in job["message"]
    assert "against a target of 0.0100" in job["message"]  # the achieved validation FPR beside the target
    assert job["result"]["metrics"]["calibration"]["holds"] is False
    client.patch("/api/v1/streams/small", headers=auth, json={"settings": {"train_mode": False}})
    state, reason = _state(client, auth, "small")
    assert state == "calibrating" and "too little validation data" in reason
    versions = client.get("/api/v1/streams/small/models", headers=auth).json()
    assert versions and not any(v["live"] for v in versions)


def test_a_burst_in_train_mode_lands_in_the_training_review_and_stays_flagged_until_called_normal(served) -> None:
    """Train mode learns an incident (200 identical error lines from one host in two minutes among
    a day of normal traffic); the training job holds its template back, it keeps being flagged,
    and an operator's "normal" in the review ends that."""
    client, auth, app = served
    r = client.post("/api/v1/streams", headers=auth, json={"name": "app", "settings": {
        "format": "iso8601", "window_size": 10, "loggpt_config": tiny_loggpt_config(), "loggpt_target_fpr": 0.5}})
    assert r.status_code == 201, r.text
    normal = ["user {u} logged in from web", "user {u} opened the dashboard", "user {u} saved report {r}",
              "user {u} logged out"]
    lines = []
    for i in range(1200):  # one a minute
        t = f"2026-12-0{1 + i // 1440}T{(i // 60) % 24:02d}:{i % 60:02d}:00Z"
        lines.append(f"{t} INFO {normal[i % 4].format(u=i % 17, r=i)}")
        if i == 600:  # the incident: 200 lines in two minutes
            lines += [f"2026-12-01T10:00:{s % 60:02d}Z INFO disk quota exceeded on volume vol7 for tenant {s % 3}"
                      for s in range(200)]
    post_lines(client, auth, "app", lines)
    client.post("/api/v1/streams/app/flush", headers=auth)
    job = wait_job(client, auth, client.post("/api/v1/streams/app/train", headers=auth).json()["job_id"])
    assert job["result"]["metrics"]["review_items"] >= 1
    items = client.get("/api/v1/streams/app/review", headers=auth).json()
    burst = [it for it in items if "quota" in it["example"]]
    assert burst and burst[0]["status"] == "unconfirmed" and any(r.startswith("burst") for r in burst[0]["reasons"])
    assert not any("logged in" in it["example"] for it in items)
    client.patch("/api/v1/streams/app", headers=auth, json={"settings": {"train_mode": False}})

    def post_one() -> dict:
        return client.post("/api/v1/streams/app/logs", headers=auth, json={"lines": [
            "2026-12-02T09:00:00Z INFO disk quota exceeded on volume vol7 for tenant 1"]}).json()["lines"][0]

    assert post_one()["rapid_flag"] is True  # learned in train mode, and still flagged: unconfirmed
    r = client.post(f"/api/v1/streams/app/review/{burst[0]['template_id']}", headers=auth, json={"label": "normal"})
    assert r.status_code == 200 and r.json()["status"] == "normal"
    assert post_one()["rapid_flag"] is False
    assert client.post("/api/v1/streams/app/review/999999", headers=auth, json={"label": "normal"}).status_code == 404
    assert client.post(f"/api/v1/streams/app/review/{burst[0]['template_id']}", headers=auth,
                       json={"label": "maybe"}).status_code == 422
