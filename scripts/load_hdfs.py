"""Load test: post HDFS_2pct to a real `logsense serve` over loopback HTTP in 1,000-line batches.

    python scripts/load_hdfs.py [--lines N] [--train-lines N] [--extra-streams 2]

Starts the server as a subprocess on a free port with a temporary data directory, creates an
HDFS stream (block-id sessions), posts the first `--train-lines` lines in train mode, trains it
(a small LogGPT unless `--loggpt-config` says otherwise), turns train mode off and posts the rest
(the measured part), then waits for the LogGPT worker to drain the queue. Prints:

- ingest lines/s and p50/p99 batch latency of the measured part (client side, whole HTTP round trip);
- the bare parse rates on the same lines in this process: Drain3's own TemplateMiner with the
  same mask rules, and `models.parsing.LogParser` (what ingest runs per line), warmed on the
  train-mode lines. The measured lines go in `--parts` parts; the baselines parse each part
  just before it is posted, with the server idle, so that each ratio compares neighbours on a
  machine whose speed drifts. The ratio is of the totals, with each part's beside it;
- the server's peak resident memory (VmHWM, with its parse helper) with one trained stream, and after each further
  trained stream (`--extra-streams`), so the cost per stream can be read off.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from logsense.server.bench.capacity import peak_rss_mb
from logsense.server.client import Client, free_port

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "hdfs" / "HDFS_2pct.log.gz"
SMALL_LOGGPT = {"n_layer": 2, "n_head": 4, "n_embd": 64, "max_epochs": 3}  # fields of models.loggpt.LogGPTConfig


class BareDrain3:
    """Drain3's own TemplateMiner on the message part of lines (or on the whole lines), masking
    with the same rules as LogSense (as drain3 MaskingInstructions): what a plain Drain3 user pays
    per line. The message part is the stricter baseline (fewer tokens to mask). `feed` returns
    the seconds it took, so the baseline can be timed batch by batch beside the ingest."""

    def __init__(self, whole_lines: bool = False):
        from drain3 import TemplateMiner
        from drain3.masking import MaskingInstruction
        from drain3.template_miner_config import TemplateMinerConfig

        from logsense.models.parsing.masking import DEFAULT_RULES, PRESET_RULES

        config = TemplateMinerConfig()
        config.masking_instructions = [MaskingInstruction(PRESET_RULES[n][0], PRESET_RULES[n][1].strip("<>"))
                                       for n in DEFAULT_RULES]
        config.profiling_enabled = False
        self.miner = TemplateMiner(config=config)
        self.whole_lines = whole_lines

    def feed(self, lines: list[str]) -> float:
        messages = list(lines) if self.whole_lines else [line.split(": ", 1)[-1] for line in lines]  # HDFS: "... component: message"
        add = self.miner.add_log_message
        start = time.perf_counter()
        for message in messages:
            add(message)
        return time.perf_counter() - start


def bare_parse_seconds(parser: Any, lines: list[str]) -> float:
    """Seconds a LogParser (header, masking, Drain3, session keys) takes on `lines`."""
    start = time.perf_counter()
    parser.parse_many(lines)
    return time.perf_counter() - start


def wait_job(c: Client, job_id: int) -> dict:
    while True:
        job = c.ok("GET", f"/api/v1/jobs/{job_id}")
        if job["state"] in ("done", "failed"):
            if job["state"] == "failed":
                raise RuntimeError(f"training failed: {job['error']}")
            return job
        time.sleep(0.5)


def setup_stream(c: Client, name: str, train: list[str], loggpt: dict, batch: int) -> dict:
    """Create, post `train` in train mode, train, turn train mode off; the training job."""
    c.ok("POST", "/api/v1/streams", {"name": name, "settings": {
        "format": "hdfs", "session_regex": r"blk_-?\d+", "loggpt_config": loggpt, "train_mode": True}})
    for start in range(0, len(train), batch):
        c.ok("POST", f"/api/v1/streams/{name}/logs", {"lines": train[start : start + batch]})
    c.ok("POST", f"/api/v1/streams/{name}/flush")
    job = wait_job(c, c.ok("POST", f"/api/v1/streams/{name}/train")["job_id"])
    c.ok("PATCH", f"/api/v1/streams/{name}", {"settings": {"train_mode": False}})
    return job


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("LOGSENSE_HDFS", str(DEFAULT_DATA)))
    ap.add_argument("--lines", type=int, default=0, help="use only the first N lines (0: all)")
    ap.add_argument("--train-lines", type=int, default=40_000, help="lines posted in train mode first")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--parts", type=int, default=4,
                    help="the measured lines in this many parts, each posted right after the baselines parse it")
    ap.add_argument("--concurrency", type=int, default=1, help="batches in flight at once (1: strictly in order)")
    ap.add_argument("--extra-streams", type=int, default=2, help="further trained streams, for memory per stream")
    ap.add_argument("--loggpt-config", default=json.dumps(SMALL_LOGGPT), help="JSON overrides of LogGPTConfig")
    ap.add_argument("--data-dir", default=None, help="server data directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    ap.add_argument("--no-worker", action="store_true",
                    help="run the server without its LogGPT worker: ingest alone (windows stay queued)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a server setting for this run, e.g. --set parse_helper=false (as LOGSENSE_NAME)")
    args = ap.parse_args()

    with gzip.open(args.data, "rt") if args.data.endswith(".gz") else open(args.data) as f:
        lines = [line.rstrip("\n") for line in f]
    if args.lines:
        lines = lines[: args.lines]
    train, rest = lines[: args.train_lines], lines[args.train_lines :]
    loggpt = json.loads(args.loggpt_config)  # an unknown field is the server's 422, said out loud

    tmp = None
    data_dir = Path(args.data_dir) if args.data_dir else Path(tmp := tempfile.mkdtemp(prefix="logsense-load-"))
    data_dir.mkdir(parents=True, exist_ok=True)  # a new --data-dir: with a database_url nothing else creates it
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGSENSE_")}
    env.update(HF_HUB_OFFLINE="1", LOGSENSE_SCHEDULER_ENABLED="false")
    if args.no_worker:
        env["LOGSENSE_WORKER_ENABLED"] = "false"
    for item in args.set:
        name, _, value = item.partition("=")
        env[f"LOGSENSE_{name.upper()}"] = value
    key = subprocess.run([sys.executable, "-m", "logsense.server.cli", "apikey", "create", "load", "--data-dir", str(data_dir)],
                         cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.strip()
    port = free_port()
    log = open(data_dir / "server.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "logsense.server.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=REPO, env={**env, "LOGSENSE_LOG_LEVEL": "warning"}, stdout=log, stderr=subprocess.STDOUT)
    c = Client(port, key)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # killed: still stop the server (finally below)
    try:
        ready = c.wait_ready(lambda: proc.poll() is None)
        print(f"server ready in {ready:.1f} s; RSS {peak_rss_mb(proc.pid)[0]:.0f} MB")

        t = time.perf_counter()
        job = setup_stream(c, "HDFS", train, loggpt, args.batch)
        metrics = job["result"]["metrics"]
        print(f"train mode: {len(train)} lines posted and trained in {time.perf_counter() - t:.1f} s "
              f"(LogGPT {metrics.get('fit_seconds')} s, K={metrics.get('k')}, val FPR {metrics.get('val_fpr')})")

        local = threading.local()
        generation = [0]  # connections are opened anew for each part (the baselines outlast keep-alive)
        server_ms: list[dict[str, float]] = []

        def post(i: int) -> float:
            """One batch over a kept-alive connection (one per thread), as a log shipper sends it;
            timed from encoding the body to decoding the answer. JSON through orjson, as cheap as
            a compiled shipper's (Python's json would add ~2 ms per batch of client time)."""
            if getattr(local, "generation", None) != generation[0]:  # a new part: the server closed idle ones
                local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                local.generation = generation[0]
            t = time.perf_counter()
            local.conn.request("POST", "/api/v1/streams/HDFS/logs", orjson.dumps({"lines": rest[i : i + args.batch]}),
                               {"X-API-Key": key, "Content-Type": "application/json"})
            r = local.conn.getresponse()
            body = orjson.loads(r.read())
            elapsed = time.perf_counter() - t
            if r.status != 200:
                raise RuntimeError(f"batch at line {i}: {r.status} {str(body)[:300]}")
            server_ms.append({part.split(";dur=")[0].strip(): float(part.split(";dur=")[1])
                              for part in r.getheader("Server-Timing", "").split(",") if ";dur=" in part})
            return elapsed

        # The bare baselines run in this process on the same lines as the server, interleaved
        # with the posting: the measured lines are cut into `--parts` parts, and before each
        # part is posted the baselines parse it (the server idle: its queue drained, since the
        # second core may share the first one's execution units). The machine's speed drifts
        # with other tenants by up to 2x within minutes, so each ratio compares neighbours.
        # The baselines are warm like the trained stream: they have seen the train-mode lines.
        from logsense.models.parsing import LogParser

        baselines: dict[str, Any] = {"drain3": BareDrain3(), "drain3_whole": BareDrain3(whole_lines=True),
                                     "logparser": LogParser(preset="hdfs", session_regex=r"blk_-?\d+")}

        def feed(name: str, part: list[str]) -> float:
            b = baselines[name]
            return b.feed(part) if isinstance(b, BareDrain3) else bare_parse_seconds(b, part)

        for name in baselines:
            feed(name, train)

        def wait_idle() -> float:
            t = time.perf_counter()
            while not args.no_worker:
                counts = c.ok("GET", "/api/v1/streams/HDFS/windows?limit=1")["counts"]
                if counts["queued"] + counts["checking"] == 0:
                    break
                time.sleep(0.5)
            return time.perf_counter() - t

        starts = list(range(0, len(rest), args.batch))
        n_parts = max(1, min(args.parts, len(starts)))
        parts = [starts[k * len(starts) // n_parts : (k + 1) * len(starts) // n_parts] for k in range(n_parts)]
        latencies: list[float] = []
        per_part = []  # (lines, ingest seconds, {baseline: seconds})
        for part in parts:
            lines_of_part = rest[part[0] : part[-1] + args.batch]
            wait_idle()
            base = {name: feed(name, lines_of_part) for name in baselines}
            generation[0] += 1
            start = time.perf_counter()
            if args.concurrency == 1:  # one batch in flight: the server sees the lines in file order
                latencies += [post(i) for i in part]
            else:  # like a shipper with N requests in flight: batches may commit out of order
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(args.concurrency) as pool:
                    latencies += list(pool.map(post, part))
            per_part.append((len(lines_of_part), time.perf_counter() - start, base))
        total_lines = sum(n for n, _, _ in per_part)
        ingest_rate = total_lines / sum(t for _, t, _ in per_part)
        rate = {name: total_lines / sum(b[name] for _, _, b in per_part) for name in baselines}
        c.ok("POST", "/api/v1/streams/HDFS/flush")
        drain = wait_idle()
        rss_one = peak_rss_mb(proc.pid)
        lat = np.array(latencies) * 1000

        print(f"ingest (trained stream, {total_lines} lines, {len(latencies)} batches of {args.batch}, "
              f"{args.concurrency} in flight): "
              f"{ingest_rate:,.0f} lines/s; batch latency p50 {np.percentile(lat, 50):.0f} ms, "
              f"p99 {np.percentile(lat, 99):.0f} ms")
        if server_ms:
            med = {k: float(np.median([m.get(k, np.nan) for m in server_ms])) for k in server_ms[0]}
            print(f"  server side (Server-Timing, median per batch): {', '.join(f'{k} {v:.0f} ms' for k, v in med.items())};"
                  f" the rest of the round trip is HTTP and the client's JSON")

        def parts_of(name: str) -> str:
            return " / ".join(f"{n / t:,.0f} vs {n / b[name]:,.0f} ({(n / t) / (n / b[name]):.0%})"
                              for n, t, b in per_part)

        print(f"bare Drain3 (drain3.TemplateMiner, same mask rules, message part, same lines, one thread, warm): "
              f"{rate['drain3']:,.0f} lines/s -> ingest is {ingest_rate / rate['drain3']:.0%} of it; "
              f"by part, ingest vs Drain3: {parts_of('drain3')}")
        print(f"  (the same on whole lines, header included: {rate['drain3_whole']:,.0f} lines/s -> ingest is "
              f"{ingest_rate / rate['drain3_whole']:.0%} of it; the message part above is the baseline we hold to)")
        print(f"bare LogParser (header, masking, Drain3, session keys: the parse ingest itself runs): "
              f"{rate['logparser']:,.0f} lines/s -> ingest is {ingest_rate / rate['logparser']:.0%} of it")
        print("LogGPT worker: off (--no-worker)" if args.no_worker else
              f"LogGPT worker drained the queue {drain:.1f} s after the last batch")
        print(f"server memory (with its parse helper) with one trained stream: RSS {rss_one[0]:.0f} MB, peak {rss_one[1]:.0f} MB")
        chunks = {line.split('"')[1]: float(line.split()[-1]) for line in c.text("/metrics").splitlines()
                  if line.startswith("logsense_parse_chunks{")}
        print(f"ingest chunks masked in the parse helper process: {chunks.get('helper', 0):.0f}, in the server "
              f"process: {chunks.get('server', 0):.0f} (each batch's first), {chunks.get('fallback', 0):.0f} "
              f"(helper busy or down)")
        anomalies = c.ok("GET", "/api/v1/anomalies?limit=1000&status=any")
        print(f"anomalies stored (first page): {len(anomalies)}")

        previous = rss_one[1]
        sample = rest[: min(len(rest), max(args.train_lines, 20_000))]
        for n in range(args.extra_streams):
            name = f"HDFS{n + 2}"
            setup_stream(c, name, train, loggpt, args.batch)
            for i in range(0, len(sample), args.batch):
                c.ok("POST", f"/api/v1/streams/{name}/logs", {"lines": sample[i : i + args.batch]})
            c.ok("POST", f"/api/v1/streams/{name}/flush")
            time.sleep(2)
            rss = peak_rss_mb(proc.pid)
            print(f"+ stream {name} (trained, {len(sample)} lines checked): RSS {rss[0]:.0f} MB, peak {rss[1]:.0f} MB "
                  f"(+{rss[1] - previous:.0f} MB peak)")
            previous = rss[1]
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if tmp and not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
