"""`logsense bench --capacity`: a real server over loopback HTTP, fed lines it has never seen.

Protocol (printed with the figures):
1. Start `logsense serve` (subprocess, temporary data directory, default settings, one stream
   with stream defaults). Lines are synthetic service logs: a few dozen message shapes whose
   slots take words from the embedder's own vocabulary, so masking cannot collapse them; every
   generated text is checked to mask to a text of its own with the product's parser.
2. Train mode: `--train-lines` lines over `--train-distinct` texts, then a training job and
   train mode off (LogGPT at its default size).
3. New lines: `--novel-batches` batches of 1,000 lines, every line a new text. Each batch's round
   trip gives `p99_all_new_batch_ms`; the time from the first post until no line waits for its
   RAPID verdict gives the server's new-line rate. Then, with the server idle, bare
   `SentenceTransformer.encode` of the same masked texts in this process gives the encoder's
   rate: `novel_lines_ratio_to_encoder` is the first over the second.
4. Load: `--clients` clients post the rest at `--rate` lines/s in all, 1,000-line batches,
   mostly known texts with `--new-share` new ones; `loggpt_drain_seconds` is the time from the
   last answer until the LogGPT queue is empty and no RAPID verdict is pending.
5. `peak_rss_mb`: the sum of the peak resident memory (VmHWM) of the server and its children
   (the parse helper), an upper bound of their peak together.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from logsense.server.client import Client, free_port

BATCH = 1000

# Shapes of service log messages; {w} takes a vocabulary word, {n} a number, {ip} an address.
SHAPES = [
    "INFO scheduler: job {w} started on worker {w} after {n} ms",
    "INFO scheduler: job {w} finished on worker {w} in {n} ms",
    "WARN cache: entry {w} evicted from shard {w} after {n} seconds",
    "INFO auth: session for {w} opened from {ip}",
    "INFO auth: session for {w} closed after {n} seconds",
    "DEBUG queue: message {w} acknowledged by consumer {w}",
    "INFO billing: invoice {n} for account {w} settled",
    "ERROR storage: volume {w} degraded, replica {w} unreachable",
    "INFO deploy: release {w} of service {w} rolled out to {n} hosts",
    "WARN http: slow response from upstream {w} on route {w} ({n} ms)",
    "INFO mailer: notification {w} queued for team {w}",
    "INFO search: index {w} refreshed with {n} documents",
    "DEBUG feature: flag {w} evaluated true for tenant {w}",
    "INFO export: report {w} written for customer {w}",
    "WARN pool: connection to {w} recycled after {n} requests",
    "INFO config: setting {w} reloaded by {w}",
]


@dataclass
class CapacityConfig:
    train_lines: int = 60_000  # posted in train mode first
    train_distinct: int = 15_000  # distinct texts among them (RAPID's core set grows by these)
    novel_batches: int = 20  # 1,000-line batches of texts never seen before
    lines: int = 400_000  # all lines posted, train and novel included
    clients: int = 4  # load phase: concurrent clients
    rate: float = 8000.0  # load phase: lines/s over all clients
    new_share: float = 0.005  # load phase: share of lines with a text never seen before
    seed: int = 0


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB of a process and its children (the parse helper), from /proc.
    The peak is the sum of each process's own peak: an upper bound on the peak of the whole."""
    current = peak = 0.0
    for p in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:  # exited meanwhile
            continue
        values = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("VmRSS", "VmHWM"))}
        current += values["VmRSS"] / 1024
        peak += values["VmHWM"] / 1024
    return current, peak


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


class Lines:
    """Synthetic lines whose masked texts are all different from each other (checked)."""

    def __init__(self, seed: int):
        from logsense.models.embedding import model_path
        from logsense.models.parsing import LogParser

        vocab = (model_path() / "vocab.txt").read_text().split()
        self.words = sorted({w for w in vocab if re.fullmatch(r"[a-z]{4,10}", w)})
        self.rng = random.Random(seed)
        self.parser = LogParser()  # the product's defaults: format auto, default masks
        self.seen: set[str] = set()
        self.clock = 1_796_000_000.0

    def _fill(self, shape: str) -> str:
        out = re.sub(r"\{w\}", lambda _: self.rng.choice(self.words), shape)
        out = re.sub(r"\{n\}", lambda _: str(self.rng.randint(1, 99_999)), out)
        return re.sub(r"\{ip\}", lambda _: ".".join(str(self.rng.randint(1, 254)) for _ in range(4)), out)

    def new_texts(self, n: int) -> list[str]:
        """n messages (no header) whose masked forms are new and pairwise different."""
        out: list[str] = []
        while len(out) < n:
            candidates = [self._fill(self.rng.choice(SHAPES)) for _ in range(2 * (n - len(out)))]
            for msg, parsed in zip(candidates, self.parser.parse_many(candidates, learn=False)):
                if parsed.masked not in self.seen and len(out) < n:
                    self.seen.add(parsed.masked)
                    out.append(msg)
        return out

    def stamp(self, messages: list[str]) -> list[str]:
        """ISO 8601 headers, a few milliseconds apart, in posting order."""
        out = []
        for m in messages:
            self.clock += 0.004
            t = time.gmtime(self.clock)
            out.append(f"{time.strftime('%Y-%m-%dT%H:%M:%S', t)}.{int(self.clock % 1 * 1000):03d}Z {m}")
        return out


class Server:
    """`logsense serve` in a subprocess with a temporary data directory and an API key."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSENSE_")}
        env.update(HF_HUB_OFFLINE="1", LOGSENSE_SCHEDULER_ENABLED="false", LOGSENSE_LOG_LEVEL="warning")
        cli = [sys.executable, "-m", "logsense.server.cli"]
        self.key = subprocess.run([*cli, "apikey", "create", "capacity", "--data-dir", str(data_dir)], env=env,
                                  capture_output=True, text=True, check=True).stdout.strip()
        self.port = free_port()
        self.proc = subprocess.Popen([*cli, "serve", "--port", str(self.port), "--data-dir", str(data_dir)], env=env,
                                     stdout=open(data_dir / "server.log", "ab"), stderr=subprocess.STDOUT)
        self.client = Client(self.port, self.key)

    @classmethod
    def with_stream(cls, prefix: str, stream: str) -> "Server":
        """A server on a new temporary data directory, ready, with one stream of default settings."""
        server = cls(Path(tempfile.mkdtemp(prefix=prefix)))
        try:
            server.client.wait_ready(lambda: server.proc.poll() is None)
            server.client.ok("POST", "/api/v1/streams", {"name": stream})
        except BaseException:
            server.stop()
            raise
        return server

    @contextmanager
    def database(self) -> Iterator[Any]:
        """An engine on the server's SQLite file, for what the API does not show (the server is
        another process: SQLite's locks keep the two apart); disposed after."""
        from logsense.server.db import make_engine

        engine = make_engine(f"sqlite:///{self.data_dir / 'logsense.db'}")
        try:
            yield engine
        finally:
            engine.dispose()

    def connect(self) -> http.client.HTTPConnection:
        """A connection to keep alive over one phase, as a log shipper holds one."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def stop(self) -> None:
        """Stop the server and remove its data directory (kept with LOGSENSE_KEEP_BENCH_DIR set)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if os.environ.get("LOGSENSE_KEEP_BENCH_DIR") is None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def report_head(doc: str, config: Any) -> dict[str, Any]:
    """The start of a benchmark's results.json: its protocol (from the module docstring), its
    configuration, the machine and the date. Printed too."""
    head = {"protocol": doc.split("Protocol (printed with the figures):")[1].strip(), "config": asdict(config),
            "cores": os.cpu_count(), "machine": f"{platform.machine()} {platform.system()} python {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print(head["protocol"], "\n", json.dumps(head["config"]), flush=True)
    return head


def run_clients(target, n: int) -> None:  # noqa: ANN001
    """`target(k)` for k in 0..n-1, each on its own thread, and wait for them all."""
    threads = [threading.Thread(target=target, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _post(conn: http.client.HTTPConnection, key: str, stream: str, lines: list[str]) -> tuple[float, dict]:
    """One batch over a kept-alive connection: seconds from encoding the body to decoding the answer."""
    t = time.perf_counter()
    conn.request("POST", f"/api/v1/streams/{stream}/logs", orjson.dumps({"lines": lines}),
                 {"X-API-Key": key, "Content-Type": "application/json"})
    r = conn.getresponse()
    body = orjson.loads(r.read())
    if r.status != 200:
        raise RuntimeError(f"ingest answered {r.status}: {str(body)[:300]}")
    return time.perf_counter() - t, body


def _wait(predicate, timeout: float, every: float = 0.1) -> float:  # noqa: ANN001
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"not done after {timeout} s")
        time.sleep(every)
    return time.perf_counter() - start


def _quiet(c: Client, stream: str) -> bool:
    s = c.ok("GET", f"/api/v1/streams/{stream}")
    return s["queue_depth"] == 0 and s["rapid_pending"] == 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_capacity(out: str | os.PathLike, cfg: CapacityConfig | None = None) -> int:
    cfg = cfg or CapacityConfig()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    gen = Lines(cfg.seed)
    report = report_head(__doc__ or "", cfg)
    stream = "capacity"
    server = Server.with_stream("logsense-capacity-", stream)
    c = server.client
    try:
        conn = server.connect()

        # 2. train mode
        pool = gen.new_texts(cfg.train_distinct)
        train = gen.stamp([pool[i] if i < len(pool) else gen.rng.choice(pool) for i in range(cfg.train_lines)])
        t = time.perf_counter()
        train_ms = [_post(conn, server.key, stream, train[i : i + BATCH])[0] * 1000 for i in range(0, len(train), BATCH)]
        posted = time.perf_counter() - t
        embedded = _wait(lambda: c.ok("GET", f"/api/v1/streams/{stream}")["rapid_unindexed"] == 0, 1800)
        c.ok("POST", f"/api/v1/streams/{stream}/flush")
        t = time.perf_counter()
        job = c.ok("POST", f"/api/v1/streams/{stream}/train")
        _wait(lambda: c.ok("GET", f"/api/v1/jobs/{job['job_id']}")["state"] in ("done", "failed"), 1800, 0.5)
        job = c.ok("GET", f"/api/v1/jobs/{job['job_id']}")
        if job["state"] != "done":
            raise RuntimeError(f"training failed: {job.get('error')}")
        c.ok("PATCH", f"/api/v1/streams/{stream}", {"settings": {"train_mode": False}})
        report["train"] = {"lines": len(train), "distinct": len(pool), "p50_batch_ms": round(_percentile(train_ms, 0.5), 1),
                           "p99_batch_ms": round(_percentile(train_ms, 0.99), 1),
                           "posted_seconds": round(posted, 1), "embedded_after_seconds": round(embedded, 1),
                           "training_seconds": round(time.perf_counter() - t, 1),
                           "model": {k: job["result"]["metrics"].get(k) for k in ("k", "val_fpr", "rapid_core_set")}}
        print("train:", report["train"], flush=True)

        # 3. all-new batches
        novel = [gen.stamp(gen.new_texts(BATCH)) for _ in range(cfg.novel_batches)]
        first_id = c.ok("POST", f"/api/v1/streams/{stream}/logs", {"lines": gen.stamp(pool[:1])})["lines"][0]["id"]
        conn = server.connect()  # the last one idled past the server's keep-alive during training
        t = time.perf_counter()
        batch_ms = [_post(conn, server.key, stream, b)[0] * 1000 for b in novel]
        served = time.perf_counter() - t + _wait(lambda: c.ok("GET", f"/api/v1/streams/{stream}")["rapid_pending"] == 0, 1800)
        texts = _masked_since(c, stream, first_id)
        encode = _bare_encode_seconds(texts)
        n = sum(map(len, novel))
        report["novel"] = {"lines": n, "distinct_texts": len(texts), "server_seconds": round(served, 2),
                           "server_lines_per_s": round(n / served, 1), "encode_seconds": round(encode, 2),
                           "encode_texts_per_s": round(len(texts) / encode, 1),
                           "p50_batch_ms": round(_percentile(batch_ms, 0.5), 1),
                           "p99_batch_ms": round(_percentile(batch_ms, 0.99), 1)}
        print("novel:", report["novel"], flush=True)

        # 4. load at a steady rate
        rest = cfg.lines - len(train) - n - 1
        load = _load(server, stream, gen, pool, rest, cfg)
        t = time.perf_counter()
        drain = _wait(lambda: _quiet(c, stream), 1800, 0.2)
        report["load"] = {**load, "drain_seconds": round(drain, 2)}
        print("load:", report["load"], flush=True)

        s = c.ok("GET", f"/api/v1/streams/{stream}")
        lines, distinct = _db_counts(server)
        _, peak = peak_rss_mb(server.proc.pid)
        report.update({
            "lines": lines, "distinct_masked": distinct, "memory_mb_reported": s["memory_mb"],
            "novel_lines_ratio_to_encoder": round(report["novel"]["server_lines_per_s"]
                                                  / report["novel"]["encode_texts_per_s"], 3),
            "p99_all_new_batch_ms": report["novel"]["p99_batch_ms"],
            "loggpt_drain_seconds": report["load"]["drain_seconds"],
            "peak_rss_mb": round(peak, 1),
            "seconds": round(time.perf_counter() - started, 1),
        })
        targets = {"novel_lines_ratio_to_encoder": (">=", 0.8), "p99_all_new_batch_ms": ("<", 1000),
                   "loggpt_drain_seconds": ("<", 10), "peak_rss_mb": ("<", 1536)}
        report["targets"] = {k: {"target": f"{op} {v}", "met": (report[k] >= v if op == ">=" else report[k] < v)}
                             for k, (op, v) in targets.items()}
        (out_dir / "results.json").write_text(json.dumps(report, indent=2))
        print(json.dumps({k: report[k] for k in ("lines", "distinct_masked", *targets, "memory_mb_reported")}, indent=2))
        print(f"wrote {out_dir / 'results.json'}")
        return 0
    finally:
        server.stop()


def _masked_since(c: Client, stream: str, after_id: int) -> list[str]:
    """The distinct masked texts of the stream's lines after `after_id`, as the server stored them."""
    texts: dict[str, None] = {}
    while True:
        rows = c.ok("GET", f"/api/v1/streams/{stream}/lines?after_id={after_id}&limit=10000")
        if not rows:
            return list(texts)
        texts.update(dict.fromkeys(r["masked"] for r in rows))
        after_id = rows[-1]["id"]


def _bare_encode_seconds(texts: list[str]) -> float:
    """Seconds bare `SentenceTransformer.encode` takes on `texts` (the bundled MiniLM, CPU)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from logsense.models.embedding import model_path

    model = SentenceTransformer(str(model_path()), device="cpu")
    model.encode(texts[:64])  # warm up
    t = time.perf_counter()
    model.encode(texts)
    return time.perf_counter() - t


def _load(server: Server, stream: str, gen: Lines, pool: list[str], total: int, cfg: CapacityConfig) -> dict:
    """Post `total` lines from `cfg.clients` threads at `cfg.rate` lines/s in all."""
    batches = []
    for start in range(0, total, BATCH):
        size = min(BATCH, total - start)
        n_new = sum(gen.rng.random() < cfg.new_share for _ in range(size))
        msgs = [gen.rng.choice(pool) for _ in range(size - n_new)] + gen.new_texts(n_new)
        gen.rng.shuffle(msgs)
        batches.append(gen.stamp(msgs))
    interval = BATCH / cfg.rate  # seconds between batch starts, over all clients
    start = time.perf_counter()
    times: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def client(k: int) -> None:
        conn = server.connect()
        for i in range(k, len(batches), cfg.clients):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                seconds, _ = _post(conn, server.key, stream, batches[i])
            except Exception as exc:  # noqa: BLE001 (reported, the run goes on)
                errors.append(str(exc))
                continue
            with lock:
                times.append(seconds)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(cfg.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - start
    return {"lines": total, "clients": cfg.clients, "target_rate": cfg.rate,
            "achieved_rate": round(total / elapsed, 1), "seconds": round(elapsed, 1),
            "p50_batch_ms": round(_percentile(times, 0.5) * 1000, 1) if times else None,
            "p99_batch_ms": round(_percentile(times, 0.99) * 1000, 1) if times else None,
            "errors": errors[:5], "n_errors": len(errors)}


def _db_counts(server: Server) -> tuple[int, int]:
    """(lines, distinct masked texts) of the run, read from the server's database."""
    from sqlmodel import Session

    from logsense.server.lines import totals

    with server.database() as engine, Session(engine) as db:
        return totals(db)
