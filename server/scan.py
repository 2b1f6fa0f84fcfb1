"""`logsense scan --server URL`: post files to a running server's stream and read back their
anomalies as the queue groups them (the offline scan is `models.scan`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class ScanError(RuntimeError):
    """A scan against a server that cannot go on: the message says why."""


def scan_server(client: Any, stream: str, lines: list[str], train: list[str] | None, cfg: Any, wait: float = 600.0,
                progress: bool = True, say: Callable[[str], None] = lambda _m: None) -> dict:
    """Post `lines` to a running server's stream and read back their anomalies (the queue's rows).
    `client` answers `call(method, path, body) -> (status, JSON)` (`server.client.Client`). With
    `train`, a new stream is created with `cfg`'s format and session regex, `train` is posted in
    train mode, flushed and trained, and the stream leaves train mode first."""
    import time
    import urllib.error
    from urllib.parse import quote

    from tqdm.auto import tqdm

    from logsense.models.scan import QUICK_LOGGPT, has_label_field, strip_label_field

    name = quote(stream, safe="")
    base = f"/api/v1/streams/{name}"

    def call(method: str, path: str, body: dict | None = None, ok: tuple = (200,)) -> Any:
        try:
            code, out = client.call(method, path, body)
        except (urllib.error.URLError, OSError) as exc:
            raise ScanError(f"{method} {path}: the server does not answer: {exc}") from None
        if code not in ok:
            raise ScanError(f"{method} {path}: {code} {out}")
        return out

    labels = None
    if cfg.label_field == "yes" or (cfg.label_field == "auto" and has_label_field(lines)):
        lines, labels = strip_label_field(lines)
        if train and (cfg.label_field == "yes" or has_label_field(train)):
            train, _ = strip_label_field(train)
    code, info = client.call("GET", base, None)
    if code == 404:
        if not train:
            raise ScanError(f"no stream {stream!r} on the server: create it (and train it), or give --train FILE... "
                            "to create and train it here")
        settings = {"format": cfg.preset, **({"session_regex": cfg.session_regex} if cfg.session_regex else {}),
                    **({} if cfg.full else {"loggpt_config": dict(QUICK_LOGGPT)})}
        info = call("POST", "/api/v1/streams", {"name": stream, "settings": settings}, ok=(201,))
        say(f"stream {stream!r} created with {settings}")
    elif code != 200:
        raise ScanError(f"GET {base}: {code} {info}")
    in_train_mode = bool(info["settings"].get("train_mode", True))
    if train and not in_train_mode:
        raise ScanError(f"stream {stream!r} is out of train mode: --train would not be learned as normal; leave it "
                        "out, or name a new stream")
    if not train and in_train_mode:
        raise ScanError(f"stream {stream!r} is in train mode: the lines would be stored as normal training data, not "
                        "judged; train it first (or give --train FILE... with a new stream name)")

    def post(batch_lines: list[str], desc: str) -> tuple[list[int], int]:
        ids, rejected = [], 0
        with tqdm(total=len(batch_lines), desc=desc, unit="line", disable=not progress, file=sys.stderr) as bar:
            for start in range(0, len(batch_lines), 1000):
                chunk = batch_lines[start : start + 1000]
                for attempt in range(30):
                    code, out = client.call("POST", f"{base}/logs", {"lines": chunk})
                    if code != 503:
                        break
                    time.sleep(2)  # models still loading
                if code not in (200, 207, 422):
                    raise ScanError(f"POST {base}/logs: {code} {out}")
                ids += [(start + row["index"], row["id"]) for row in out.get("lines", [])]
                rejected += len(out.get("errors", []))
                bar.update(len(chunk))
        return ids, rejected

    def wait_checked() -> None:
        call("POST", f"{base}/flush")
        deadline = time.monotonic() + wait
        while True:
            counts = call("GET", f"{base}/windows?state=pending&limit=1")["counts"]
            if not sum(counts.values()):
                return
            if time.monotonic() > deadline:
                raise ScanError(f"LogGPT checks still pending after {wait:g} s: {counts} (raise --wait)")
            time.sleep(0.5)

    trained = None
    if train:
        post(train, "learn")
        call("POST", f"{base}/flush")
        job = call("POST", f"{base}/train", {"mode": "train"}, ok=(202,))
        say(f"training job {job['job_id']} started")
        deadline = time.monotonic() + wait
        while True:
            state = call("GET", f"/api/v1/jobs/{job['job_id']}")
            if state["state"] in ("done", "failed"):
                break
            if time.monotonic() > deadline:
                raise ScanError(f"training job {job['job_id']} not done after {wait:g} s (raise --wait)")
            time.sleep(1)
        if state["state"] == "failed":
            raise ScanError(f"training failed: {state.get('error') or state.get('message')}")
        trained = state.get("message")
        call("PATCH", base, {"settings": {"train_mode": False}})
        say(f"trained: {trained}; stream out of train mode")

    def groups(after_id: int) -> list[dict]:
        return call("GET", f"/api/v1/anomalies?stream={name}&group=template&status=any&after_id={after_id}&limit=1000")

    before = max((i for g in groups(0) for i in g["ids"]), default=0)
    ids, rejected = post(lines, "scan")
    wait_checked()
    found = groups(before)
    flagged: set[int] = set()
    if ids:
        first, last = min(i for _, i in ids), max(i for _, i in ids)
        for severity in ("watch", "danger"):
            after = first - 1
            while True:
                rows = call("GET", f"{base}/lines?after_id={after}&severity={severity}&limit=10000")
                mine = [r["id"] for r in rows if r["id"] <= last]
                flagged.update(mine)
                if len(rows) < 10000 or len(mine) < len(rows):
                    break
                after = rows[-1]["id"]
    out = []
    for g in sorted(found, key=lambda g: (g["first_seen"], min(g["ids"]))):
        first_line = g.get("example")
        if len(found) <= 200:  # the group's first anomaly's line (the example is its newest)
            one = call("GET", f"/api/v1/anomalies/{min(g['ids'])}")
            first_line = one.get("line") or first_line
        out.append({"template": g["template"], "template_id": g["template_id"], "severity": g["severity"],
                    "first_ts": g["first_seen"], "last_ts": g["last_seen"], "count": g["count"],
                    "first_line": first_line, "kinds": g["kinds"], "incident": g["incident"], "status": g["status"]})
    info = call("GET", base)
    report = {
        "lines": len(lines),
        "anomalies": len(flagged),
        "incidents": out,
        "protocol": (f"protocol: scan against a server ({getattr(client, 'base', 'server')}, stream {stream!r}, "
                     f"state {info.get('state')}: {info.get('state_reason')}): "
                     + (f"{len(train)} --train lines posted in train mode, flush, trained ({trained}), train mode "
                        "off; " if train else "")
                     + f"the lines posted in 1000-line batches ({rejected} rejected), flush, LogGPT checks awaited; "
                     "incidents are the server's queue rows (anomalies of one template in one incident) of these "
                     "lines, times are the server's receive times"),
        "queue_items": sum(g["count"] for g in found),
        "rejected": rejected,
        "format": {"preset": info["settings"].get("format"), "layout": info.get("layout"),
                   "label_field_cut": labels is not None, "header_parse_rate": info.get("header_parse_rate")},
    }
    if labels is not None:  # read only now, for the figures: the label never reached the server
        alerts = {i for index, i in ids if labels[index] != "-"}
        report["labels"] = {"alert_lines": sum(lab != "-" for lab in labels),
                            "alert_lines_flagged": len(flagged & alerts), "normal_lines_flagged": len(flagged - alerts)}
    return report
