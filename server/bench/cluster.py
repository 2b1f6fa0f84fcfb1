"""`logsense bench --cluster`: ingest throughput of the cluster roles beside one process, on the
same PostgreSQL, the same data and the same clients.

Protocol (printed with the figures):
1. PostgreSQL and Redis are started from the machine's own binaries (`server.bench.backing`),
   or taken from --database-url / --broker-url; every setup gets a fresh database and an empty
   Redis.
2. Data: the loghub-2k samples (11 systems, 2,000 lines each, real logs of different formats),
   one stream per system with stream defaults (format auto). A warm-up round posts each
   system's lines once in train mode (untimed), then train mode goes off, and the timing waits
   until every process is idle (the background encoders have embedded the warm-up's texts).
3. Timed: `--cluster-rounds` rounds of the same lines in detection, 500-line batches, from
   `--cluster-clients` client threads over all streams at once (no rate limit: as fast as the
   setup acknowledges). lines/s = lines acknowledged / wall seconds from the first post to the
   last answer.
4. Setups: `all` (one `logsense serve --role all`, its LogGPT worker included), then for each N
   in `--cluster-processors`: 2 `api` replicas (the clients alternate between them), N
   `processor`s and 1 `worker`, all processes of this machine over loopback.
5. CPU per process: user + system seconds over the timed phase (children such as the parse
   helper included), from /proc; PostgreSQL's and Redis's too (they share the machine's cores).
6. `ratio_to_all`: a setup's lines/s over the `all` setup's, same run.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from logsense.server.bench.backing import fresh_database, postgres, redis
from logsense.server.bench.capacity import _children, report_head, run_clients
from logsense.server.client import Client, free_port

BATCH = 500


@dataclass
class ClusterBenchConfig:
    rounds: int = 4  # timed rounds over every system's 2,000 lines
    clients: int = 8  # concurrent client threads
    processors: list[int] = field(default_factory=lambda: [1, 2, 4])  # processors per cluster setup
    partitions: int = 16
    seed: int = 0


def _systems(data_dir: Path | None) -> dict[str, list[str]]:
    """Each loghub-2k system's lines (the server never imports the benchmark package: the folder is
    --data-dir, else $LOGSENSE_DATASETS, else ../shared/datasets from the working directory)."""
    data_dir = data_dir or Path(os.environ.get("LOGSENSE_DATASETS") or Path.cwd().parent / "shared" / "datasets")
    root = data_dir / "loghub-2k"
    found = {p.parent.name.lower(): p.read_text(errors="replace").splitlines() for p in sorted(root.glob("*/*_2k.log"))}
    if not found:
        raise FileNotFoundError(f"no loghub-2k samples under {root}")
    return {name: [ln for ln in lines if ln.strip()] for name, lines in found.items()}


class Node:
    """One `logsense serve` process."""

    def __init__(self, name: str, role: str, env: dict[str, str], data_dir: Path, log_dir: Path):
        self.name, self.port = name, free_port()
        cmd = [sys.executable, "-m", "logsense.server.cli", "serve", "--role", role, "--port", str(self.port),
               "--data-dir", str(data_dir)]
        self.proc = subprocess.Popen(cmd, env={**env, "LOGSENSE_NODE_NAME": name},
                                     stdout=open(log_dir / f"{name}.log", "ab"), stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float:
        return sum(map(_cpu_seconds, [self.proc.pid, *_children(self.proc.pid)]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0 once it has exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _servers_cpu() -> dict[str, float]:
    """CPU seconds so far of this machine's PostgreSQL and Redis processes (they share its cores)."""
    out = {"postgresql": 0.0, "redis": 0.0}
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            comm = stat.read_text().strip()
        except OSError:
            continue
        kind = "postgresql" if comm in ("postgres", "postmaster") else "redis" if comm.startswith("redis-serv") else None
        if kind:
            out[kind] += _cpu_seconds(int(stat.parent.name))
    return out


def _setup(name: str, roles: list[str], admin_url: str, broker_url: str, work: Path,
           cfg: ClusterBenchConfig, systems: dict[str, list[str]]) -> dict:
    """Run one setup from an empty database: start it, warm it up, time it, stop it."""
    from sqlmodel import Session

    from logsense.server.auth import create_api_key
    from logsense.server.db import make_engine, upgrade_database

    db_url = fresh_database(admin_url, f"bench_{name.replace('-', '_')}")
    import redis as redis_client

    redis_client.Redis.from_url(broker_url).flushall()
    upgrade_database(db_url)
    engine = make_engine(db_url)
    with Session(engine) as session:
        key, _ = create_api_key(session, "bench", ["admin"])
    engine.dispose()
    data_dir = work / name
    data_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSENSE_")}
    env.update(HF_HUB_OFFLINE="1", LOGSENSE_DATABASE_URL=db_url, LOGSENSE_BROKER_URL=broker_url,
               LOGSENSE_PARTITIONS=str(cfg.partitions), LOGSENSE_SCHEDULER_ENABLED="false",
               LOGSENSE_LOG_LEVEL=os.environ.get("LOGSENSE_BENCH_LOG_LEVEL", "warning"))
    nodes = [Node(f"{name}-{role}-{i}", role, env, data_dir, work) for i, role in enumerate(roles)]
    try:
        for node in nodes:
            Client(node.port, key).wait_ready(lambda n=node: n.proc.poll() is None, timeout=600)
        entry = [Client(n.port, key) for n, role in zip(nodes, roles) if role in ("api", "all")]
        for stream in systems:
            entry[0].ok("POST", "/api/v1/streams", {"name": stream})
        jobs = [(s, lines[i : i + BATCH]) for s, lines in systems.items() for i in range(0, len(lines), BATCH)]
        _post_all(entry, key, jobs, cfg.clients)  # warm-up, train mode
        for stream in systems:
            entry[0].ok("PATCH", f"/api/v1/streams/{stream}", {"settings": {"train_mode": False}})
        quiet = _wait_idle(nodes)  # the warm-up's normals are embedded in the background: not in the timing
        timed = jobs * cfg.rounds
        random.Random(cfg.seed).shuffle(timed)
        cpu0, servers0 = {n.name: n.cpu_seconds() for n in nodes}, _servers_cpu()
        start = time.perf_counter()
        acknowledged = _post_all(entry, key, timed, cfg.clients)
        seconds = time.perf_counter() - start
        cpu = {n.name: round(n.cpu_seconds() - cpu0[n.name], 1) for n in nodes}
        servers = {k: round(v - servers0[k], 1) for k, v in _servers_cpu().items()}
    finally:
        for node in nodes:
            node.stop()
    return {"setup": name, "processes": roles, "lines": acknowledged, "seconds": round(seconds, 2),
            "lines_per_second": round(acknowledged / seconds, 1), "cpu_seconds": cpu,
            "cpu_seconds_total": round(sum(cpu.values()), 1), "servers_cpu_seconds": servers,
            "idle_wait_seconds": round(quiet, 1)}


def _wait_idle(nodes: list[Node], timeout: float = 900.0) -> float:
    """Wait until every node is idle (under 5% of a core over 2 s); the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        before = [n.cpu_seconds() for n in nodes]
        time.sleep(2.0)
        if all(n.cpu_seconds() - b < 0.1 for n, b in zip(nodes, before)):
            break
    return time.perf_counter() - start


def _post_all(entry: list[Client], key: str, jobs: list[tuple[str, list[str]]], clients: int) -> int:
    """Post every (stream, lines) job from `clients` threads, each on kept-alive connections to
    every entry node in turn; the lines acknowledged."""
    lock, todo, done, errors = threading.Lock(), list(reversed(jobs)), [0], []

    def client(k: int) -> None:
        ports = [int(c.base.rsplit(":", 1)[1]) for c in entry]
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=600) for port in ports]
        n = k
        while True:
            with lock:
                if not todo or errors:
                    return
                stream, lines = todo.pop()
            body = orjson.dumps({"lines": lines})
            headers = {"X-API-Key": key, "Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex}
            for attempt in range(2):  # the server closes a connection idle past its keep-alive: once more
                i = n % len(conns)
                try:
                    conns[i].request("POST", f"/api/v1/streams/{stream}/logs", body, headers)
                    r = conns[i].getresponse()
                    answer = r.read()
                    break
                except (http.client.HTTPException, OSError):
                    conns[i].close()
                    conns[i] = http.client.HTTPConnection("127.0.0.1", ports[i], timeout=600)
                    if attempt:
                        raise
            n += 1
            if r.status not in (200, 207):
                errors.append(f"{stream}: {r.status} {answer[:300]!r}")
                return
            with lock:
                done[0] += orjson.loads(answer)["accepted"]

    run_clients(client, clients)
    if errors:
        raise RuntimeError(errors[0])
    return done[0]


def run_cluster_bench(out: str | os.PathLike, cfg: ClusterBenchConfig | None = None, data_dir: Path | None = None,
                      database_url: str | None = None, broker_url: str | None = None) -> int:
    cfg = cfg or ClusterBenchConfig()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        systems = _systems(data_dir)
    except FileNotFoundError as exc:
        print(f"bench --cluster: {exc}", file=sys.stderr)
        return 2
    head = report_head(__doc__, cfg)
    work = Path(tempfile.mkdtemp(prefix="logsense-cluster-bench-"))
    results = []
    with ExitStack() as stack:
        admin_url = database_url or stack.enter_context(postgres())
        broker = broker_url or stack.enter_context(redis(work))
        if not admin_url or not broker:
            print("bench --cluster: needs PostgreSQL (initdb, pg_ctl) and redis-server, or --database-url and "
                  "--broker-url", file=sys.stderr)
            return 2
        setups = [("all", ["all"])] + [(f"cluster-{n}p", ["api", "api", *["processor"] * n, "worker"])
                                       for n in cfg.processors]
        for name, roles in setups:
            print(f"setup {name}: {', '.join(roles)}", flush=True)
            row = _setup(name, roles, admin_url, broker, work, cfg, systems)
            results.append(row)
            print(json.dumps(row), flush=True)
    base = results[0]["lines_per_second"]
    for row in results:
        row["ratio_to_all"] = round(row["lines_per_second"] / base, 3)
    report = {**head, "systems": len(systems), "results": results}
    (out_dir / "results.json").write_text(json.dumps(report, indent=2))
    print(f"\n{'setup':<14}{'lines/s':>10}{'ratio':>8}{'cpu s':>8}  cpu per process; postgresql, redis")
    for row in results:
        print(f"{row['setup']:<14}{row['lines_per_second']:>10.0f}{row['ratio_to_all']:>8.2f}"
              f"{row['cpu_seconds_total']:>8.1f}  {row['cpu_seconds']}; {row['servers_cpu_seconds']}")
    if os.environ.get("LOGSENSE_KEEP_BENCH_DIR") is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0
