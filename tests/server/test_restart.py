"""Must-show 3: `logsense serve` killed with SIGKILL while windows are queued; after a restart the
queued windows are checked and every acknowledged line is in the database.

The first server runs with its worker off (`LOGSENSE_WORKER_ENABLED=false`), so windows are
certainly still queued when it is killed; the kill lands while a client keeps posting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from logsense.server.client import Client, free_port

from .helpers import HDFS_LOG, SMALL_FIXTURE_K, tiny_loggpt_config

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSENSE_")}
    env.update(HF_HUB_OFFLINE="1", LOGSENSE_SCHEDULER_ENABLED="false", LOGSENSE_WORKER_POLL_SECONDS="0.1", **extra)
    return env


def _state(pid: int) -> str:
    try:
        return next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return "gone zombie"


def _serve(data_dir: Path, port: int, log: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "logsense.server.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=REPO, env=_env(**env), stdout=open(log, "ab"), stderr=subprocess.STDOUT,
    )


def test_sigkill_with_queued_windows_loses_nothing(tmp_path: Path) -> None:
    if not HDFS_LOG.exists():
        pytest.skip("HDFS fixture missing")
    lines = HDFS_LOG.read_text().splitlines()
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    key = subprocess.run([sys.executable, "-m", "logsense.server.cli", "apikey", "create", "test", "--data-dir", str(data_dir)],
                         cwd=REPO, env=_env(), capture_output=True, text=True, check=True).stdout.strip()
    port = free_port()
    proc = _serve(data_dir, port, log, LOGSENSE_WORKER_ENABLED="false")
    c = Client(port, key, timeout=60)
    try:
        c.wait_ready(lambda: proc.poll() is None, timeout=120)
        code, _ = c.call("POST", "/api/v1/streams", {"name": "svc", "settings": {
            "format": "hdfs", "window_size": 10, "loggpt_config": tiny_loggpt_config(), "loggpt_top_k": SMALL_FIXTURE_K, "train_mode": True}})
        assert code == 201
        for start in range(0, 1000, 500):
            assert c.call("POST", "/api/v1/streams/svc/logs", {"lines": lines[start : start + 500]})[0] == 200
        code, job = c.call("POST", "/api/v1/streams/svc/train")
        assert code == 202
        deadline = time.monotonic() + 120
        while (state := c.call("GET", f"/api/v1/jobs/{job['job_id']}")[1]["state"]) not in ("done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert state == "done"
        assert c.call("PATCH", "/api/v1/streams/svc", {"settings": {"train_mode": False}})[0] == 200

        acked: dict[int, str] = {}
        stop = threading.Event()

        def post_forever() -> None:
            start = 1000
            while not stop.is_set() and start < len(lines):
                batch = lines[start : start + 100]
                try:
                    code, body = c.call("POST", "/api/v1/streams/svc/logs", {"lines": batch}, timeout=30)
                except Exception:  # noqa: BLE001 (the server died mid-request: not acknowledged)
                    return
                if code == 200:
                    for x in body["lines"]:
                        acked[x["id"]] = batch[x["index"]]
                start += 100

        poster = threading.Thread(target=post_forever)
        poster.start()
        deadline = time.monotonic() + 60
        while len(acked) < 500 and time.monotonic() < deadline:
            time.sleep(0.01)
        helpers = [int(c) for t in Path(f"/proc/{proc.pid}/task").glob("*")
                   for c in (t / "children").read_text().split()]  # the parse helper
        assert helpers or (os.cpu_count() or 1) < 2, "a multi-core machine: the server runs a parse helper"
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: a request is likely in flight
        proc.wait(10)
        deadline_helper = time.monotonic() + 10
        while any(Path(f"/proc/{h}").exists() and "zombie" not in _state(h) for h in helpers):
            assert time.monotonic() < deadline_helper, "the parse helper outlived its server"
            time.sleep(0.1)
        stop.set()
        poster.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert len(acked) >= 500

    engine = create_engine(f"sqlite:///{data_dir / 'logsense.db'}")
    with engine.connect() as conn:
        queued = conn.execute(text("SELECT count(*) FROM windows WHERE state = 'queued'")).scalar()
        stored = dict(conn.execute(text("SELECT id, raw FROM log_lines WHERE severity != 'train'")).all())
    assert queued >= 40  # 10-line windows of >= 500 lines, none checked
    assert all(stored.get(i) == raw for i, raw in acked.items()), "an acknowledged line is missing"

    proc = _serve(data_dir, port, log)  # worker on
    try:
        c.wait_ready(lambda: proc.poll() is None, timeout=120)
        deadline = time.monotonic() + 120
        while (counts := c.call("GET", "/api/v1/streams/svc/windows")[1]["counts"])["queued"] + counts["checking"]:
            assert time.monotonic() < deadline, counts
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(30)
    with engine.connect() as conn:
        states = dict(conn.execute(text("SELECT state, count(*) FROM windows GROUP BY state")).all())
        unchecked = conn.execute(text(
            "SELECT count(*) FROM log_lines l JOIN window_lines wl ON wl.line_id = l.id "
            "JOIN windows w ON w.id = wl.window_id WHERE w.state = 'done' AND l.severity != 'train' "
            "AND (l.checked_at IS NULL OR l.loggpt_flag IS NULL)")).scalar()
        versions = conn.execute(text("SELECT DISTINCT model_version FROM windows WHERE state = 'done' "
                                     "AND anomalous IS NOT NULL")).scalars().all()
        stored_after = dict(conn.execute(text("SELECT id, raw FROM log_lines WHERE severity != 'train'")).all())
    assert states.get("queued", 0) == 0 and states.get("checking", 0) == 0 and states.get("failed", 0) == 0, states
    assert unchecked == 0 and versions == [1]
    assert all(stored_after.get(i) == raw for i, raw in acked.items())
    engine.dispose()
