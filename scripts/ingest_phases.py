"""Where an ingest batch's time goes: `ingest()` in this process, phase by phase, without HTTP.

    python scripts/ingest_phases.py [--lines 60000] [--train-lines 40000]

Builds the load test's stream (`load_hdfs.setup_stream`: HDFS_2pct, block-id sessions, a small
LogGPT trained on the train-mode lines) in a temporary data directory, with the parse helper as in `logsense serve` and
the LogGPT worker off, then runs the request body's parsing and `ingest()` (which returns the answer's JSON) for
each further 1,000-line batch and prints the median per batch of each phase. The phases are
timed by wrapping the functions ingest calls, so the code measured is the code that runs; what
is left ("the rest") is the Python between them: rows, slots, anomaly rows, the answer.

This machine's speed drifts by up to 2x within a minute, so compare phases within one run, and
compare code A/B by alternating batches in one process rather than by two runs.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from load_hdfs import DEFAULT_DATA, SMALL_LOGGPT, setup_stream  # noqa: E402 (the load test's stream)


class InProcessClient:
    """`server.client.Client.ok` over a FastAPI TestClient, so the load test's `setup_stream`
    builds the same stream here."""

    def __init__(self, client: Any, key: str):
        self.client, self.headers = client, {"X-API-Key": key}

    def ok(self, method: str, path: str, body: dict | None = None) -> Any:
        r = self.client.request(method, path, json=body, headers=self.headers)
        if r.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()


def timed(acc: dict[str, float], name: str, fn: Any) -> Any:
    """`fn`, adding its run time to acc[name]."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[name] += time.perf_counter() - start
    return wrapper


def timed_chunks(acc: dict[str, float], parse_chunks: Any) -> Any:
    """A `StreamModel.parse_chunks` whose chunks are timed as they are taken (mask, mine, wait)."""
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        chunks = parse_chunks(self, *args, **kwargs)

        class Timed:
            def __iter__(self) -> "Timed":
                return self

            def __next__(self) -> Any:
                start = time.perf_counter()
                try:
                    return next(chunks)
                finally:
                    acc["parse (header, masking, templates)"] += time.perf_counter() - start

            def close(self) -> None:
                chunks.close()
        return Timed()
    return wrapper


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("LOGSENSE_HDFS", str(DEFAULT_DATA)))
    ap.add_argument("--train-lines", type=int, default=40_000)
    ap.add_argument("--lines", type=int, default=60_000, help="lines measured after training")
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    if not Path(args.data).exists():
        print(f"no data at {args.data} (the shared datasets are not here; set --data or LOGSENSE_HDFS)")
        return 2

    import orjson
    from fastapi.testclient import TestClient
    from sqlmodel import Session, select

    import logsense.server.batch as batch_api
    import logsense.server.ingest as ingest_api
    from logsense.models.stream import StreamModel
    from logsense.server import store, windows
    from logsense.server.app import create_app
    from logsense.server.auth import create_api_key
    from logsense.server.settings import Settings
    from logsense.server.tables import Stream

    with gzip.open(args.data, "rt") if args.data.endswith(".gz") else open(args.data) as f:
        lines = [line.rstrip("\n") for line in f]
    train, rest = lines[: args.train_lines], lines[args.train_lines : args.train_lines + args.lines]
    data_dir = Path(tempfile.mkdtemp(prefix="logsense-phases-"))
    app = create_app(Settings(_env_file=None, data_dir=data_dir, scheduler_enabled=False, worker_enabled=False))
    with TestClient(app) as c:
        while c.get("/readyz").status_code != 200:
            time.sleep(0.1)
        with Session(app.state.engine) as session:
            key, _ = create_api_key(session, "phases")
        setup_stream(InProcessClient(c, key), "HDFS", train, SMALL_LOGGPT, args.batch)
        with Session(app.state.engine) as session:
            stream = session.exec(select(Stream).where(Stream.name == "HDFS")).one()
            session.expunge(stream)

        acc: dict[str, float] = defaultdict(float)
        store.insert_lines = timed(acc, "insert lines (log_lines and their counts)", store.insert_lines)
        windows.assign = timed(acc, "windows (rows, session updates, new sessions)", windows.assign)
        store.muted_templates = timed(acc, "muted templates", store.muted_templates)
        store.insert_anomalies = timed(acc, "insert anomalies", store.insert_anomalies)
        Session.commit = timed(acc, "commit", Session.commit)
        StreamModel.score = timed(acc, "RAPID score", StreamModel.score)
        StreamModel.parse_chunks = timed_chunks(acc, StreamModel.parse_chunks)
        parse_body = timed(acc, "request body", batch_api.parse_body)
        per_batch = []
        for start in range(0, len(rest), args.batch):
            body = orjson.dumps({"lines": rest[start : start + args.batch]})
            acc.clear()
            t = time.perf_counter()
            batch = parse_body(body, "application/json", app.state.settings)
            ingest_api.ingest(app.state.services, stream, batch)  # the answer's JSON too
            total = time.perf_counter() - t
            acc["the rest"] = total - sum(acc.values())
            acc["total"] = total
            per_batch.append(dict(acc))
    per_batch = per_batch[5:]  # warm-up
    print(f"ingest() in-process, {len(per_batch)} batches of {args.batch} HDFS_2pct lines after {len(train)} train-mode "
          f"lines and training; parse helper on, LogGPT worker off; median per batch:")
    for name in per_batch[-1]:
        print(f"  {name:48s} {statistics.median(b.get(name, 0.0) for b in per_batch) * 1000:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
