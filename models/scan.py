"""`logsense scan`, offline: files judged by an embedded stream, as a server stream would judge them.

The lines to learn from are posted in train mode (`StreamModel.learn_normal`), the open windows
are flushed, LogGPT is trained on the training windows and adopted by the product's own rule
(`StreamModel.adopt`: a first model is kept back when its K cannot be calibrated, and then the
RAPID verdicts stand alone, as on a server), the stream leaves train mode and the scanned lines
follow in 1,000-line batches: RAPID line verdicts, windows cut with the stream defaults
(`models.windowing`), LogGPT checks of closed windows (`StreamModel.judge`), severities from
`models.policy`. The replay is `models.bench.live.LiveStream`, the benchmark's in-memory copy of
the server's order of work; nothing here imports the server.

The report: lines scanned, anomalies (lines whose final severity is watch or danger), and
incidents: the queue's anomalies (line and window anomalies, as the server stores them) of one
template, split where two follow each other more than `INCIDENT_GAP_SECONDS` apart in log time.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from logsense.models.policy import FLAGGED, INCIDENT_GAP_SECONDS, Severity

# The small LogGPT of the benchmark's --quick runs: seconds on a CPU, not the stream default.
QUICK_LOGGPT = {"max_epochs": 3, "n_layer": 1, "n_embd": 32}
SEVERITY_RANK = {Severity.WATCH.value: 1, Severity.DANGER.value: 2}
# Loghub's BGL layout with its ground-truth label field in front: "- 1117838570 2005.06.03 ..."
_LABELED_BGL = re.compile(r"(\S+) (?=\d{9,10} \d{4}\.\d{2}\.\d{2} )")


@dataclass
class ScanConfig:
    preset: str = "auto"  # the stream's header format (models.settings.FORMAT_PRESETS)
    session_regex: str | None = None  # None: count windows of the stream default size
    full: bool = False  # the stream's default LogGPT instead of the quick one
    label_field: str = "auto"  # "auto" | "yes" | "no": Loghub's leading label field is cut off
    train_fraction: float | None = None  # without training files: this share of the scanned lines is learned
    batch: int = 1000
    seed: int = 0


def read_files(paths: Sequence[str | Path]) -> list[str]:
    """Every non-blank line of the files, in order (`.gz` ok; CRLF or LF)."""
    from logsense.models.bench.datasets import read_lines

    out: list[str] = []
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"no such file: {p}")
        out += read_lines(p)
    return out


def has_label_field(lines: Sequence[str]) -> bool:
    """Whether the lines look like Loghub's BGL with its label field (most of the first 1,000)."""
    head = [line for line in lines[:1000] if line.strip()]
    return bool(head) and sum(bool(_LABELED_BGL.match(line)) for line in head) >= 0.9 * len(head)


def strip_label_field(lines: Sequence[str]) -> tuple[list[str], list[str]]:
    """(lines without their first field, the labels): a detector never sees the label."""
    rest, labels = [], []
    for line in lines:
        label, _, tail = line.partition(" ")
        labels.append(label)
        rest.append(tail)
    return rest, labels


def _iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def incidents(anomalies: Sequence[dict], gap_seconds: float = INCIDENT_GAP_SECONDS) -> list[list[dict]]:
    """Anomalies (dicts with "template", "ts", "order") grouped by template, each template's run
    split where two anomalies lie more than `gap_seconds` apart in log time; oldest first. An
    anomaly without a time (None) joins the run before it."""
    by_template: dict[Any, list[dict]] = {}
    for a in anomalies:
        key = a["template"] if a["template"] is not None else f"{a.get('kind', 'line')}-none"
        by_template.setdefault(key, []).append(a)
    runs: list[list[dict]] = []
    for members in by_template.values():
        members = sorted(members, key=lambda a: (a["ts"] if a["ts"] is not None else -math.inf, a["order"]))
        current: list[dict] = []
        last: float | None = None
        for a in members:
            ts = a["ts"]
            if current and ts is not None and last is not None and ts - last > gap_seconds:
                runs.append(current)
                current = []
            current.append(a)
            last = ts if ts is not None else last
        runs.append(current)
    runs.sort(key=lambda r: (min((a["ts"] for a in r if a["ts"] is not None), default=math.inf),
                             min(a["order"] for a in r)))
    return runs


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def scan(lines: Sequence[str], train: Sequence[str] | None, cfg: ScanConfig, embedder: Any,
         progress: bool = True, say: Callable[[str], None] = _say) -> dict:
    """Judge `lines` with a stream that learned `train` as normal (or the first
    `cfg.train_fraction` of `lines` when `train` is None). Returns the report (see the module)."""
    from tqdm.auto import tqdm

    from logsense.models.bench.live import LiveStream
    from logsense.models.review import training_lines
    from logsense.models.settings import StreamSettings
    from logsense.models.stream import StreamModel, training_data

    lines, train = list(lines), list(train or [])
    labels: list[str] | None = None
    strip = cfg.label_field == "yes" or (cfg.label_field == "auto" and has_label_field(lines))
    if strip:
        lines, labels = strip_label_field(lines)
        if train and (cfg.label_field == "yes" or has_label_field(train)):
            train, _ = strip_label_field(train)
    split = None
    if not train:
        if not cfg.train_fraction or not 0 < cfg.train_fraction < 1:
            raise ValueError("a normal baseline is needed: give --train FILE... (normal logs of the same system) "
                             "or --train-fraction F (the first F of the scanned lines are learned as normal)")
        split = int(round(len(lines) * cfg.train_fraction))
        train, lines = lines[:split], lines[split:]
        labels = labels[split:] if labels is not None else None
    if not lines:
        raise ValueError("no lines to scan")

    loggpt = {"seed": cfg.seed} if cfg.full else {**QUICK_LOGGPT, "seed": cfg.seed}
    settings = StreamSettings(format=cfg.preset, session_regex=cfg.session_regex, loggpt_config=loggpt)
    model = StreamModel(settings.stream_config(), embedder)
    spec = settings.window_spec()
    stream = LiveStream(model, spec)

    def post_all(batch_lines: list[str], first: int, desc: str) -> None:
        with tqdm(total=len(batch_lines), desc=desc, unit="line", disable=not progress, file=sys.stderr) as bar:
            for start in range(0, len(batch_lines), cfg.batch):
                chunk = batch_lines[start : start + cfg.batch]
                stream.post(chunk, list(range(first + start, first + start + len(chunk))))
                stream.drain()
                bar.update(len(chunk))

    # train mode, flush, train: the README's walkthrough
    post_all(train, 0, "learn")
    stream.flush()
    stream.drain()
    windows = stream.training_windows()
    model.review(training_lines(windows))  # the training review holds back templates that look like incidents
    data = training_data(windows, exclude=model.excluded_templates(), exclude_shapes=model.excluded_shapes())
    trained: dict[str, Any] = {"train_lines": len(train), "training_windows": len(data.train_seqs),
                               "held_back_windows": len(data.val_seqs)}
    if data.train_seqs:
        say(f"training LogGPT on {len(data.train_seqs)} windows ({'stream default' if cfg.full else 'quick'} config)")
        candidate = model.fit_candidate(data, progress=None)
        promoted, reason = model.adopt(candidate, 1)
        trained.update({"loggpt_promoted": promoted, "reason": reason, "k": candidate.k,
                        "rapid_threshold": model.rapid_threshold})
    else:
        trained.update({"loggpt_promoted": False, "reason": "no training windows", "k": None,
                        "rapid_threshold": model.rapid_threshold})
    state = model.state(False)
    trained["state"], trained["state_reason"] = state
    stream.train_mode = False

    n0 = len(stream.source)
    post_all(lines, n0, "scan")
    stream.flush()
    stream.drain()

    # the report
    severities = stream.severity[n0:]
    flagged = [i for i in range(n0, len(stream.source)) if stream.severity[i] in FLAGGED]
    rows = []
    for order, a in enumerate(stream.anomalies):
        line = a.get("line")
        if line is None and a["kind"] == "window":  # a window anomaly with no missed line: its first line
            w = stream.windows[a["window"]].lines
            line = w[0] if w else None
        ts = stream.timestamp[line] if line is not None and stream.timestamp[line] is not None else a["ts"]
        rows.append({**a, "ts": ts if ts is not None and math.isfinite(ts) else None, "order": order, "at": line})
    found = []
    for run in incidents(rows):
        first = run[0]
        times = [a["ts"] for a in run if a["ts"] is not None]
        tid = first["template"]
        found.append({
            "template": model.template(tid) if tid is not None and tid >= 0 else None,
            "template_id": tid if tid is not None and tid >= 0 else None,
            "severity": max((a["severity"] for a in run), key=lambda s: SEVERITY_RANK.get(s, 0)),
            "first_ts": _iso(min(times)) if times else None,
            "last_ts": _iso(max(times)) if times else None,
            "count": len(run),
            "kinds": {k: sum(a["kind"] == k for a in run) for k in ("line", "window") if any(a["kind"] == k for a in run)},
            "first_line": lines[stream.source[first["at"]] - n0] if first["at"] is not None and first["at"] >= n0 else None,
        })
    report: dict[str, Any] = {
        "lines": len(lines),
        "anomalies": len(flagged),
        "incidents": found,
        "protocol": protocol_text(cfg, spec, trained, split, strip),
        "severities": {s: severities.count(s) for s in (Severity.NORMAL.value, *FLAGGED)},
        "queue_items": len(rows),
        "model": trained,
        "format": {"preset": cfg.preset, "layout": model.parser.layout, "label_field_cut": strip,
                   "header_parse_rate": model.parser.header_parse_rate},
    }
    if labels is not None:  # read only now, for the figures: the label never reached the stream
        alerts = [k for k, lab in enumerate(labels) if lab != "-"]
        hit = {i - n0 for i in flagged}
        report["labels"] = {"alert_lines": len(alerts), "alert_lines_flagged": len(hit.intersection(alerts)),
                            "normal_lines_flagged": len(hit) - len(hit.intersection(alerts))}
    return report


def protocol_text(cfg: ScanConfig, spec: Any, trained: dict, split: int | None, stripped: bool) -> str:
    source = (f"the first {cfg.train_fraction:.0%} of the scanned lines ({trained['train_lines']} lines)" if split is not None
              else f"{trained['train_lines']} lines of --train")
    cutting = (f"sessions by {cfg.session_regex}, closed after {spec.idle_timeout_seconds:g} s of log time without a line"
               if spec.sessions else f"count windows of {spec.window_size} lines (closed after "
                                     f"{spec.idle_timeout_seconds:g} s of log time without a line)")
    loggpt = ("the stream's default LogGPT (--full)" if cfg.full else
              f"a quick LogGPT ({QUICK_LOGGPT['n_layer']} layer, {QUICK_LOGGPT['n_embd']}-dim, "
              f"{QUICK_LOGGPT['max_epochs']} epochs; --full: the stream default)")
    if trained.get("loggpt_promoted"):
        checks = f"LogGPT adopted at K={trained['k']}: closed windows checked"
    else:
        checks = f"LogGPT kept back ({trained.get('reason')}): RAPID's line verdicts alone, as a server stream would"
    return (f"protocol: scan (offline, embedded model): {source} posted in train mode, flush, {loggpt} trained on "
            f"the training windows ({trained['training_windows']} train, {trained['held_back_windows']} held back); "
            f"{checks}; RAPID threshold {trained['rapid_threshold']:.3f}; the scanned lines in {cfg.batch}-line "
            f"batches, {cutting}; stream defaults otherwise (format {cfg.preset}"
            + (", Loghub label field cut off" if stripped else "") + "); severities from models.policy; "
            f"incidents: the queue's anomalies of one template within {INCIDENT_GAP_SECONDS:g} s of log time")


def _short(text: str | None, width: int = 160) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def format_report(report: dict, limit: int = 50) -> str:
    """The report as text, for a terminal: the `limit` worst incidents (danger first, then the
    largest), each with its first line; the JSON report lists them all, oldest first."""
    sev = report.get("severities") or {}
    counts = f" ({sev.get('watch', 0)} watch, {sev.get('danger', 0)} danger)" if sev else ""
    out = [f"{report['lines']} lines scanned, {report['anomalies']} anomalies{counts}, "
           f"{len(report['incidents'])} incidents ({report.get('queue_items', 0)} queue items)"]
    fmt = report.get("format") or {}
    if fmt:
        rate = fmt.get("header_parse_rate")
        out.append(f"format: {fmt.get('preset')} (layout {fmt.get('layout')}"
                   + (f", headers read on {rate:.0%} of the lines" if rate is not None else "") + ")"
                   + ("; Loghub label field cut off" if fmt.get("label_field_cut") else ""))
    if report.get("labels"):
        lab = report["labels"]
        out.append(f"labels in the file (read for this line only): {lab['alert_lines']} alert lines, "
                   f"{lab.get('alert_lines_flagged', '?')} of them flagged; {lab.get('normal_lines_flagged', '?')} "
                   "normal lines flagged")
    model = report.get("model")
    if model:
        out.append(f"model: learned from {model['train_lines']} lines; " + (
            f"LogGPT checks closed windows at K={model['k']}" if model.get("loggpt_promoted") else
            f"LogGPT kept back ({model.get('reason')}): RAPID's line verdicts alone"))
    ranked = sorted(report["incidents"], key=lambda i: (-SEVERITY_RANK.get(i["severity"], 0), -i["count"]))[:limit]
    if ranked:
        out.append("")
        shown = f"the {len(ranked)} worst of {len(report['incidents'])}" if len(ranked) < len(report["incidents"]) else "all"
        out.append(f"incidents, {shown} (danger first, then the largest; --format json lists every one):")
        out.append(f"{'severity':<8} {'first':<19}  {'last':<19}  {'count':>5}  template")
        for inc in ranked:
            first, last = (str(inc.get(k) or "-").replace("T", " ")[:19] for k in ("first_ts", "last_ts"))
            tid = inc.get("template_id")
            out.append(f"{inc['severity']:<8} {first:<19}  {last:<19}  {inc['count']:>5}  "
                       f"[{tid if tid is not None else '-'}] {_short(inc.get('template'), 100)}")
            if inc.get("first_line"):
                out.append(f"{'':<8} first: {_short(inc['first_line'])}")
    out.append("")
    out.append(report["protocol"])
    return "\n".join(out)
