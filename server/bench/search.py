"""`logsense bench --search`: search latency over a million stored lines, and a 1,000-member
group action, against a real server over loopback HTTP.

Protocol (printed with the figures):
1. Start `logsense serve` (subprocess, temporary data directory, SQLite, default settings) and
   post `--search-lines` synthetic service lines (records with a `host` attribute, 50 hosts,
   ISO timestamps one per 10 ms) in 5,000-line batches from 2 clients, train mode.
2. Wait until the background indexer has every line in the full-text index (its time is printed).
3. Each query `--search-repeats` times through `GET /api/v1/search` (limit 100), in turn: a rare
   word, a common word, a phrase, a prefix, an attribute, words and an attribute, a word within
   an hour of log time, a word in one stream. p50 and p95 of the round trips.
4. 1,000 anomalies of one template stored in one incident, answered "normal" by
   `POST /api/v1/anomalies/feedback` (the queue row's action): its round trip.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from logsense.server.bench.capacity import Server, _percentile, peak_rss_mb, report_head, run_clients

BATCH = 5000
START = datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()
SHAPES = [
    "INFO http: GET /api/orders/{n} 200 in {n} ms",
    "INFO http: POST /api/payments 201 in {n} ms",
    "DEBUG cache: hit for key order:{n}",
    "INFO worker: job {n} finished in {n} ms",
    "WARN pool: connection {n} idle for {n} s, closing",
    "INFO auth: session {n} refreshed",
]
RARE = "ERROR payment gateway timeout after {n} ms for order {n}"  # one line in 10,000
WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "harbor"]  # one in 1,000 lines


@dataclass
class SearchBenchConfig:
    lines: int = 1_000_000
    repeats: int = 20
    seed: int = 0


def _lines(cfg: SearchBenchConfig) -> list[list[dict]]:
    rng = random.Random(cfg.seed)
    batches, batch = [], []
    for i in range(cfg.lines):
        if i % 10_000 == 5_000:
            shape = RARE
        elif i % 1000 == 500:
            shape = f"INFO deploy: release {rng.choice(WORDS)} rolled out to {{n}} hosts"
        else:
            shape = SHAPES[i % len(SHAPES)]
        msg = shape.replace("{n}", str(rng.randint(1, 99_999)), 1).replace("{n}", str(rng.randint(1, 9_999)))
        ts = datetime.fromtimestamp(START + i * 0.01, timezone.utc).isoformat(timespec="milliseconds")
        batch.append({"message": f"{ts} {msg}", "attributes": {"host": f"web-{i % 50}"}})
        if len(batch) == BATCH:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


QUERIES = {
    "rare word": {"q": "gateway"},
    "common word": {"q": "finished"},
    "phrase": {"q": '"payment gateway timeout"'},
    "prefix": {"q": "refresh*"},
    "attribute": {"attr": "host=web-7"},
    "words and attribute": {"q": "deploy rolled", "attr": "host=web-0"},
    "word in an hour of log time": {"q": "timeout", "since": "2026-12-01T01:00:00Z", "until": "2026-12-01T02:00:00Z"},
    "word in one stream": {"q": "amber", "stream": "search"},
}


def run_search_bench(out: str | os.PathLike, cfg: SearchBenchConfig | None = None) -> int:
    cfg = cfg or SearchBenchConfig()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = report_head(__doc__ or "", cfg)
    stream = "search"
    server = Server.with_stream("logsense-search-", stream)
    c, data_dir = server.client, server.data_dir
    try:
        batches = _lines(cfg)
        t = time.perf_counter()
        _post_all(server, stream, batches)
        posted = time.perf_counter() - t
        last_id = sum(map(len, batches))
        t = time.perf_counter()
        while c.ok("GET", "/api/v1/search?q=zzzz&limit=1")["indexed_to"] < last_id:
            time.sleep(0.5)
        report["ingest"] = {"lines": last_id, "seconds": round(posted, 1), "lines_per_s": round(last_id / posted),
                            "indexed_after_seconds": round(time.perf_counter() - t, 1)}
        print("ingest:", report["ingest"], flush=True)

        conn = server.connect()
        report["queries"] = {}
        for name, params in QUERIES.items():
            times, hits = [], 0
            for _ in range(cfg.repeats):
                ms, body = _get(conn, server.key, "/api/v1/search", params)
                times.append(ms)
                hits = len(body["hits"])
            report["queries"][name] = {"params": params, "hits": hits, "p50_ms": round(_percentile(times, 0.5), 1),
                                       "p95_ms": round(_percentile(times, 0.95), 1)}
            print(f"{name}: {report['queries'][name]}", flush=True)

        report["group_action"] = _group_action(server, stream)
        print("group action:", report["group_action"], flush=True)
        report["db_mb"] = round(sum(p.stat().st_size for p in data_dir.glob("logsense.db*")) / 2**20, 1)
        report["peak_rss_mb"] = round(peak_rss_mb(server.proc.pid)[1], 1)
        report["seconds"] = round(time.perf_counter() - started, 1)
        (out_dir / "results.json").write_text(json.dumps(report, indent=2))
        print(f"database {report['db_mb']} MB, peak RSS {report['peak_rss_mb']} MB; wrote {out_dir / 'results.json'}")
        return 0
    finally:
        server.stop()


def _post_all(server: Server, stream: str, batches: list[list[dict]], clients: int = 2) -> None:
    errors: list[str] = []

    def send(k: int) -> None:
        conn = server.connect()
        for i in range(k, len(batches), clients):
            conn.request("POST", f"/api/v1/streams/{stream}/logs", orjson.dumps({"records": batches[i]}),
                         {"X-API-Key": server.key, "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                errors.append(f"batch {i}: HTTP {r.status}")

    run_clients(send, clients)
    if errors:
        raise RuntimeError("; ".join(errors[:3]))


def _get(conn: http.client.HTTPConnection, key: str, path: str, params: dict) -> tuple[float, Any]:
    from urllib.parse import urlencode

    t = time.perf_counter()
    conn.request("GET", f"{path}?{urlencode(params)}", headers={"X-API-Key": key})
    r = conn.getresponse()
    body = orjson.loads(r.read())
    if r.status != 200:
        raise RuntimeError(f"{path} {params}: HTTP {r.status} {str(body)[:200]}")
    return (time.perf_counter() - t) * 1000, body


def _group_action(server: Server, stream: str, n: int = 1000) -> dict:
    """n open anomalies of one template on the stream's newest lines, stored straight into the
    database (as the detectors would have raised them), then answered as one queue row."""
    from logsense.server import anomalies, lines, store, streams

    with server.database() as engine, store.write_session(engine) as db:
        sid = streams.by_name(db, stream).id
        newest = lines.before(db, sid, None, n)
        now, tid = datetime.now(timezone.utc), newest[0].template_id
        store.insert_anomalies(db, [{"stream_id": sid, "line_id": x.id, "template_id": tid, "kind": "line",
                                     "severity": "watch", "status": "open", "reasons": {}, "created_at": now,
                                     "updated_at": now} for x in newest])
        ids = [r.id for r in anomalies.newest_rows(db, anomalies.Match(stream=stream), n)]
    conn = server.connect()
    t = time.perf_counter()
    conn.request("POST", "/api/v1/anomalies/feedback", orjson.dumps({"ids": ids, "label": "normal", "scope": "line"}),
                 {"X-API-Key": server.key, "Content-Type": "application/json"})
    r = conn.getresponse()
    body = orjson.loads(r.read())
    seconds = time.perf_counter() - t
    if r.status != 200:
        raise RuntimeError(f"group feedback: HTTP {r.status} {str(body)[:300]}")
    return {"members": len(ids), "answered": body.get("answered"), "seconds": round(seconds, 2)}
