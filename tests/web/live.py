"""A real LogSense server for the browser tests: uvicorn in a thread on 127.0.0.1, a fresh data
directory, the worker on; and a seeded demo: an HDFS stream trained on the fixture slice (tiny
LogGPT), then odd lines RAPID flags (some LogGPT too), and an untrained second stream."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from sqlmodel import Session

from logsense.server.app import create_app
from logsense.server.auth import create_api_key
from logsense.server.settings import Settings
from logsense.server.users import create_user
from tests.server.helpers import hdfs_slice, SMALL_FIXTURE_K, tiny_loggpt_config, wait_for

USERNAME, PASSWORD = "operator", "correct horse battery"

# Odd lines for the trained HDFS stream: RAPID flags them (new wording), LogGPT sees new templates.
ODD_QUOTA = ["081110 101010 1 INFO dfs.Odd: disk quota nearly exhausted on volume %d" % i for i in range(3)]
ODD_LEASE = "081110 101012 3 WARN dfs.LeaseManager: lease recovery stalled for client DFSClient_77"
ODD_CHECKSUM = ["081110 101011 2 WARN dfs.Other: replica checksum mismatch at offset %d" % i for i in range(2)]
PAYMENTS = [
    "2024-05-01T10:00:01Z ERROR payment gateway timeout after 30000 ms for order 1181",
    "2024-05-01T10:00:02Z ERROR payment gateway timeout after 30000 ms for order 1182",
    "2024-05-01T10:00:03Z WARN retry queue length 412 above soft limit",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    data_dir: Path
    dev_mode: bool = False
    port: int = field(default_factory=free_port)
    app: object = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    api_key: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> "LiveServer":
        settings = Settings(_env_file=None, data_dir=self.data_dir, dev_mode=self.dev_mode,
                            worker_poll_seconds=0.1, scheduler_enabled=False)
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="live-uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"the live server did not get ready in {timeout} s")
            time.sleep(0.1)
        with Session(self.app.state.engine) as session:
            self.api_key, _ = create_api_key(session, "browser-tests")
            create_user(session, USERNAME, PASSWORD)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=60)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.api_key}, timeout=60)


def post(api: httpx.Client, stream: str, lines: list[str]) -> list[dict]:
    out = []
    for start in range(0, len(lines), 500):
        r = api.post(f"/api/v1/streams/{stream}/logs", json={"lines": lines[start : start + 500]})
        assert r.status_code == 200, r.text
        out.extend(r.json()["lines"])
    return out


def wait_job(api: httpx.Client, job_id: int, timeout: float = 120.0) -> dict:
    def done() -> dict | None:
        job = api.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["state"] in ("done", "failed") else None

    job = wait_for(done, timeout, 0.1, f"job {job_id}")
    assert job["state"] == "done", job
    return job


def wait_checked(api: httpx.Client, stream: str, timeout: float = 60.0) -> None:
    def idle() -> bool:
        counts = api.get(f"/api/v1/streams/{stream}/windows").json()["counts"]
        return counts["queued"] == 0 and counts["checking"] == 0

    wait_for(idle, timeout, 0.1, f"the LogGPT checks of {stream}")


def seed_demo(server: LiveServer) -> dict:
    """The demo data; returns the ingest answers of the odd lines by name."""
    lines, _ = hdfs_slice()
    with server.api() as api:
        r = api.post("/api/v1/streams", json={"name": "hdfs-prod", "settings": {
            "format": "hdfs", "window_size": 10, "loggpt_config": tiny_loggpt_config(), "loggpt_top_k": SMALL_FIXTURE_K, "train_mode": True}})
        assert r.status_code == 201, r.text
        post(api, "hdfs-prod", lines[:600])
        wait_job(api, api.post("/api/v1/streams/hdfs-prod/train").json()["job_id"])
        assert api.patch("/api/v1/streams/hdfs-prod", json={"settings": {"train_mode": False}}).status_code == 200
        normal_after = lines[600:640]
        answers = post(api, "hdfs-prod", [*normal_after[:12], *ODD_QUOTA, *normal_after[12:20], ODD_LEASE,
                                          *normal_after[20:30], *ODD_CHECKSUM, *normal_after[30:]])
        api.post("/api/v1/streams/hdfs-prod/flush")
        wait_checked(api, "hdfs-prod")
        r = api.post("/api/v1/streams", json={"name": "payments", "settings": {
            "format": "iso8601", "window_size": 20, "train_mode": False}})
        assert r.status_code == 201, r.text
        pay = post(api, "payments", PAYMENTS)
    by_raw = {a["index"]: a for a in answers}
    return {"hdfs": by_raw, "payments": pay}
