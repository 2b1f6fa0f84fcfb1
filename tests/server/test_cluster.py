"""Two API replicas, two processors and two workers over a real PostgreSQL and Redis, as
separate `logsense serve --role ...` processes on loopback (`server.cluster`).

One stream is posted through both API replicas while one process of each role is killed with
SIGKILL; then: every acknowledged line is stored once, every masked line has one template id
whichever replica took it, a refutation through one replica scores the line normal through the
other within 2 s, and the every-minute retraining schedule starts one job a minute, not two.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from logsense.server.client import free_port

from .helpers import BLOCK_REGEX, HDFS_LOG, TINY_LOGGPT, wait_for
from logsense.server.bench.backing import fresh_database, redis

pytestmark = pytest.mark.slow

PARTITIONS = 4
LEASE = 3.0  # seconds: a dead processor's partitions move on after this
ODD = ("081109 213530 147 INFO dfs.DataNode$DataXceiver: zebra quantum flux capacitor overheated near "
       "rack 42 while folding proteins")


class Cluster:
    """The processes of one cluster and what they share (database, broker, data directory)."""

    def __init__(self, tmp: Path, db_url: str, broker_url: str):
        self.tmp, self.db_url, self.broker_url = tmp, db_url, broker_url
        self.data = tmp / "data"
        self.nodes: dict[str, tuple[subprocess.Popen, str]] = {}

    def start(self, name: str, role: str) -> None:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSENSE_")}
        env.update({"HF_HUB_OFFLINE": "1", "LOGSENSE_DATABASE_URL": self.db_url, "LOGSENSE_BROKER_URL": self.broker_url,
                    "LOGSENSE_NODE_NAME": name, "LOGSENSE_PARTITIONS": str(PARTITIONS),
                    "LOGSENSE_LEASE_SECONDS": str(LEASE), "LOGSENSE_WORKER_POLL_SECONDS": "0.2",
                    "LOGSENSE_PARSE_HELPER": "false", "LOGSENSE_LOG_LEVEL": "warning"})
        log = open(self.tmp / f"{name}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "logsense.server.cli", "serve", "--role", role, "--port",
                                 str(port), "--data-dir", str(self.data)], env=env, stdout=log, stderr=log)
        self.nodes[name] = (proc, f"http://127.0.0.1:{port}")

    def url(self, name: str) -> str:
        return self.nodes[name][1]

    def wait_ready(self, names: list[str], timeout: float = 300.0) -> None:
        import httpx

        def ready() -> bool:
            for name in names:
                proc, url = self.nodes[name]
                assert proc.poll() is None, f"{name} exited: {(self.tmp / f'{name}.log').read_text()[-3000:]}"
                try:
                    if httpx.get(url + "/readyz", timeout=2).status_code != 200:
                        return False
                except httpx.HTTPError:
                    return False
            return True

        wait_for(ready, timeout, 0.5, f"{names} to get ready")

    def kill(self, name: str) -> None:
        proc, _ = self.nodes[name]
        assert proc.poll() is None, f"{name} had died before it was killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def stop(self) -> None:
        for proc, _ in self.nodes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self.nodes.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str):
    pytest.importorskip("redis", reason="the Redis client (pip install redis)")
    if not HDFS_LOG.exists():
        pytest.skip(f"{HDFS_LOG} is missing")
    tmp = tmp_path_factory.mktemp("cluster")
    with redis(tmp) as broker_url:
        if broker_url is None:
            pytest.skip("redis-server is not installed (Debian's redis-server package)")
        c = Cluster(tmp, fresh_database(postgres_admin_url, "logsense"), broker_url)
        try:
            yield c
        finally:
            c.stop()


def _engine(c: Cluster):  # noqa: ANN202
    from logsense.server.db import make_engine

    return make_engine(c.db_url)


def _post(c: Cluster, auth: dict, replicas: list[str], key: str, lines: list[str], timeout: float = 90.0) -> dict:
    """Post one batch until some replica acknowledges it, retrying with the same Idempotency-Key
    (as a shipper does) through whichever replica is up."""
    import httpx

    deadline, i = time.monotonic() + timeout, 0
    while True:
        name = replicas[i % len(replicas)]
        i += 1
        if c.nodes[name][0].poll() is None:
            try:
                r = httpx.post(c.url(name) + "/api/v1/streams/hdfs/logs", headers={**auth, "Idempotency-Key": key},
                               json={"lines": lines}, timeout=60)
                if r.status_code == 200:
                    return r.json()
                assert r.status_code == 503, r.text  # no owner yet (a takeover): retry
            except httpx.HTTPError:
                pass  # the replica died under the request: retry elsewhere
        assert time.monotonic() < deadline, f"batch {key} was never acknowledged"
        time.sleep(0.5)


def test_a_cluster_keeps_every_line_once_with_one_template_id(cluster: Cluster) -> None:
    import httpx
    from sqlalchemy import text
    from sqlmodel import Session

    from logsense.server.auth import create_api_key
    from logsense.server.db import upgrade_database

    c = cluster
    upgrade_database(c.db_url)
    engine = _engine(c)
    with Session(engine) as s:
        auth = {"X-API-Key": create_api_key(s, "cluster-test", ["admin"])[0]}
    for name in ("api-1", "api-2"):
        c.start(name, "api")
    c.wait_ready(["api-1", "api-2"])
    r = httpx.post(c.url("api-1") + "/api/v1/streams", headers=auth, timeout=30, json={"name": "hdfs", "settings": {
        "format": "hdfs", "session_regex": BLOCK_REGEX, "train_mode": True, "retrain_cron": "* * * * *",
        "loggpt_config": TINY_LOGGPT, "loggpt_top_k": 2}})
    assert r.status_code == 201, r.text
    stream_id = r.json()["id"]
    for name, role in (("proc-1", "processor"), ("proc-2", "processor"), ("work-1", "worker"), ("work-2", "worker")):
        c.start(name, role)
    c.wait_ready(list(c.nodes))

    def owners() -> dict[int, str]:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT partition, owner FROM partition_leases WHERE expires_at > "
                                          "now() AT TIME ZONE 'utc'")).all())

    wait_for(lambda: sorted(Counter(owners().values()).values()) == [2, 2], 60, 0.5, "the partitions to balance")
    owner = owners()[stream_id % PARTITIONS]

    # ingest through both replicas; SIGKILL the stream's owner, then an API replica, then a worker
    lines = HDFS_LOG.read_text().splitlines()[:2400]
    batches = [lines[i : i + 100] for i in range(0, len(lines), 100)]
    kills = {6: owner, 12: "api-1", 18: "work-2"}
    answers = []
    for n, batch in enumerate(batches):
        if n in kills:  # while the batch is in flight
            threading.Timer(0.05, c.kill, (kills[n],)).start()
        replicas = ["api-1", "api-2"] if n % 2 == 0 else ["api-2", "api-1"]
        answers.append(_post(c, auth, replicas, f"batch-{n}", batch))
    acknowledged = [x["id"] for a in answers for x in a["lines"]]
    assert len(acknowledged) == len(lines) == len(set(acknowledged))

    with engine.connect() as conn:
        stored = conn.execute(text("SELECT id, raw FROM log_lines WHERE stream_id = :s ORDER BY id"),
                              {"s": stream_id}).all()
        assert sorted(acknowledged) == [row[0] for row in stored]  # every acknowledged line, none twice
        assert Counter(row[1] for row in stored) == Counter(lines)
        split = conn.execute(text("SELECT masked, count(DISTINCT template_id) FROM log_lines WHERE stream_id = :s "
                                  "GROUP BY masked HAVING count(DISTINCT template_id) > 1"), {"s": stream_id}).all()
        assert split == []  # one id per template, whichever replica or owner took the line
    answered = {(x["template_id"], x["template"]) for a in answers for x in a["lines"]}
    assert len({t for t, _ in answered}) == len({text for _, text in answered})

    # a refutation through one replica: the line scores normal through the other within 2 s
    live = ["api-2"]  # api-1 is dead
    c.start("api-3", "api")
    c.wait_ready(["api-3"])
    assert httpx.patch(c.url("api-3") + "/api/v1/streams/hdfs", headers=auth, timeout=30,
                       json={"settings": {"train_mode": False}}).status_code == 200
    first = _post(c, auth, live, "odd-0", [ODD])["lines"][0]
    assert first["rapid_flag"] is True, first
    found = httpx.get(c.url("api-3") + "/api/v1/anomalies", headers=auth, params={"stream": "hdfs", "kind": "line"},
                      timeout=30).json()
    anomaly = next(a for a in found if a["line_id"] == first["id"])
    r = httpx.post(c.url("api-3") + f"/api/v1/anomalies/{anomaly['id']}/feedback", headers=auth, timeout=30,
                   json={"label": "normal"})
    assert r.status_code == 200, r.text
    refuted, n = time.monotonic(), 0
    while True:
        n += 1
        again = _post(c, auth, live, f"odd-{n}", [ODD])["lines"][0]
        if again["rapid_flag"] is False:
            break
        assert time.monotonic() - refuted < 2.0, "the refutation did not reach the stream's owner within 2 s"
        time.sleep(0.1)
    took = time.monotonic() - refuted
    assert took < 2.0
    print(f"cluster: killed {kills}; {len(lines)} lines acknowledged once; refutation seen after {took:.2f} s "
          f"({n} posts)")

    # the retraining schedule, every minute on two workers, starts one job a minute
    wait_for(lambda: _nightly_minutes(engine, stream_id), 150, 1.0, "a scheduled retraining job")
    minutes = _nightly_minutes(engine, stream_id)
    assert all(n == 1 for n in minutes.values()), minutes
    print(f"cluster: scheduled retraining jobs per minute {dict(minutes)}")
    # nothing the killed worker held stays claimed
    with engine.connect() as conn:
        wait_for(lambda: conn.execute(text("SELECT count(*) FROM windows WHERE state = 'checking' AND claimed_by = "
                                           "'work-2'")).scalar_one() == 0, 30, 0.5, "work-2's windows re-queued")
    engine.dispose()


def _nightly_minutes(engine, stream_id: int) -> Counter:  # noqa: ANN001
    from sqlalchemy import text

    with engine.connect() as conn:
        return Counter(conn.execute(text("SELECT date_trunc('minute', created_at) FROM jobs WHERE kind = 'nightly' "
                                         "AND stream_id = :s"), {"s": stream_id}).scalars().all())
