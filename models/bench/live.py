"""The live replay: a labeled data set goes through the product's own stream object, as a stream
would deliver it, and is judged the way the server judges it.

Protocol (`logsense bench --protocol live`): the lines in time order, in batches of 1,000. The
first `train_fraction` of them is posted in train mode (`--train dirty`: every line, incidents
included, as an operator who cannot filter would post it; `clean`: the lines of anomalous items
withheld), then the stream is flushed and trained as the README's walkthrough does, leaves train
mode, and gets the rest. Windows and sessions are cut by `models.windowing` with the stream's
default settings (the idle timeout in log time), checked by `StreamModel.judge` as they close,
and severities come from `models.policy`. Labels are read only to withhold anomalies under
`clean`, by the simulated operator under `--feedback`, and for the figures at the end.

What counts, as an operator sees it:
- a line: its final severity (watch or danger = flagged);
- a session (session data): flagged when any of its lines after the switch is, or any of the
  windows it was cut into raised a window anomaly;
- a window (line data): one of the product's own windows with lines after the switch, flagged
  as a session is;
- the queue: every anomaly row the server would store (line anomalies and window anomalies).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from logsense.models.bench.datasets import LogDataset
from logsense.models.bench.evaluation import binary_metrics
from logsense.models.parsing.sessions import canonical_order
from logsense.models.policy import FLAGGED, INCIDENT_GAP_SECONDS, Severity, combine, line_severity
from logsense.models.review import shape_id, training_lines
from logsense.models.settings import StreamSettings
from logsense.models.stream import MAX_CONTEXT_LINES, ClosedWindow, StreamConfig, StreamModel, training_data
from logsense.models.windowing import OpenWindow, LineSlot, WindowSpec, assign, quiet

DEFAULT_IDLE_TIMEOUT = StreamSettings.model_fields["idle_timeout_seconds"].default  # the stream default


@dataclass
class LiveConfig:
    train: str = "dirty"  # "dirty": every train-part line is posted in train mode; "clean": anomalies withheld
    train_fraction: float = 0.6  # share of the lines (in time order) posted in train mode
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT  # seconds of log time without a line that close a session
    batch: int = 1000  # lines per POST
    feedback: bool = False  # the simulated operator works the queue as it fills
    feedback_scope: str = "template"  # "template" or "line": how a "normal" click is scoped
    quick: bool = False  # small LogGPT (smoke runs and tests, not results)
    seed: int = 0
    loggpt: dict | None = None  # overrides of LogGPTConfig (None: the stream default, smaller with quick)
    settings: dict = field(default_factory=dict)  # other stream settings than the defaults (tests)


@dataclass
class _Window:
    key: str
    kind: str
    lines: list[int] = field(default_factory=list)  # line numbers (0-based, in posting order)
    closed: bool = False
    checked: bool = False
    anomalous: bool = False
    training: bool = False  # every line train-mode data: training data, never checked


class LiveStream:
    """One stream of the product, in memory: what the server stores per line and window, kept in
    lists, with the server's order of work (parse, score, store, cut, check closed windows)."""

    def __init__(self, model: StreamModel, spec: WindowSpec):
        self.model, self.spec = model, spec
        self.open: dict[str, OpenWindow] = {}
        self.windows: list[_Window] = []
        self.closed_queue: list[int] = []  # window numbers closed and not yet checked
        self.by_key: dict[str, list[int]] = defaultdict(list)  # a key's windows, oldest first
        # per line, in posting order (the server's log_lines)
        self.source: list[int] = []  # index of the line in the data set
        self.masked: list[str] = []
        self.template: list[int] = []
        self.level: list[str | None] = []
        self.timestamp: list[float | None] = []
        self.rapid_flag: list[bool | None] = []
        self.loggpt_flag: list[bool] = []
        self.severity: list[str] = []
        self.label: list[str | None] = []  # an operator's "normal" or "anomaly"
        self.line_windows: list[list[int]] = []
        self.raised: list[bool] = []  # the line was flagged at some point (what the operator saw)
        self.anomalies: list[dict] = []  # the queue, in order of creation
        self.confirmed_at: dict[int, float] = {}  # template -> log time of its confirmed incident's newest news
        self.train_mode = True
        self.clock = -math.inf

    # ------------------------------------------------------------------ ingest

    def post(self, raw: list[str], source: list[int]) -> None:
        """One batch, as `server.ingest.ingest` handles it."""
        model, first = self.model, len(self.source)
        parsed, verdicts = [], None if self.train_mode else []
        for chunk in model.parse_chunks(raw, None):  # chunk by chunk, as ingest learns and scores
            parsed += chunk
            if self.train_mode:
                model.learn_normal([p.masked for p in chunk])
            else:
                verdicts += model.score(chunk)
        for k, p in enumerate(parsed):
            flag = None if verdicts is None else bool(verdicts[k].flag)
            self.source.append(source[k])
            self.masked.append(p.masked)
            self.template.append(-1 if p.template_id is None else int(p.template_id))
            self.level.append(p.level)
            self.timestamp.append(p.timestamp if p.timestamp is not None and math.isfinite(p.timestamp) else None)
            self.rapid_flag.append(flag)
            self.loggpt_flag.append(False)
            self.severity.append(Severity.TRAIN.value if flag is None else combine(flag, False))
            self.label.append(None)
            self.line_windows.append([])
            self.raised.append(bool(flag))
            if flag:
                self._raise({"kind": "line", "line": first + k, "template": self.template[-1],
                             "severity": self.severity[-1]}, self.timestamp[-1])
        arrival = self.clock if math.isfinite(self.clock) else 0.0
        slots = [LineSlot(t, tuple(p.sessions)) for t, p in zip(self.timestamp[first:], parsed)]
        cut = assign(self.open, slots, self.spec, arrival, [first + k + 1 for k in range(len(parsed))])
        for w in cut.opened:
            w.ref = len(self.windows)
            self.windows.append(_Window(w.key, w.kind))
            self.by_key[w.key].append(w.ref)
        for w, _pos, k in cut.members:
            self.windows[w.ref].lines.append(first + k)
            self.line_windows[first + k].append(w.ref)
        closing = [w.ref for w, _ in cut.closed]
        if cut.clock is not None:
            self.clock = max(self.clock, cut.clock)
            closing += [w.ref for w in quiet(self.open, cut.clock, self.spec)]
        self._close(closing)

    def flush(self) -> None:
        self._close([w.ref for w in self.open.values()])
        self.open.clear()

    def _close(self, refs: list[int]) -> None:
        for ref in refs:
            w = self.windows[ref]
            w.closed = True
            if all(self.severity[i] == Severity.TRAIN.value for i in w.lines):
                w.training = True
            else:
                self.closed_queue.append(ref)

    # ------------------------------------------------------------------ the worker

    def drain(self) -> None:
        """Check every closed window, as the worker does (`server.worker`)."""
        refs, self.closed_queue = self.closed_queue, []
        if not refs:
            return
        windows = [self._closed(ref) for ref in refs]
        verdicts = self.model.judge(windows)
        for ref in refs:
            self.windows[ref].checked = True
        if verdicts is None:  # untrained: the RAPID verdicts stand
            return
        touched = set()
        for ref, v in zip(refs, verdicts):
            w = self.windows[ref]
            lines = self._ordered(ref)
            for pos in v.missed:
                self.loggpt_flag[lines[pos]] = True
            touched.update(lines)
            if v.anomalous:
                w.anomalous = True
                line = lines[v.missed[0]] if v.missed else None
                self._raise({"kind": "window", "window": ref, "line": line,
                             "template": self.template[line] if line is not None else None,
                             "severity": v.severity}, None)
        for i in touched:
            self.severity[i] = line_severity(self.severity[i], self.label[i], self.rapid_flag[i], self.loggpt_flag[i])
            self.raised[i] = self.raised[i] or self.severity[i] in FLAGGED

    def _raise(self, anomaly: dict, ts: float | None) -> None:
        """Store an anomaly as `server.store.route_anomalies` does: one of a template an operator
        confirmed within the incident gap (in log time here) joins that incident, confirmed."""
        now = ts if ts is not None else self.clock
        anomaly["ts"] = now
        t = anomaly["template"]
        ongoing = t is not None and t in self.confirmed_at and now - self.confirmed_at[t] <= INCIDENT_GAP_SECONDS
        anomaly["status"] = "confirmed" if ongoing else "open"
        anomaly["joined"] = ongoing
        if ongoing:
            self.confirmed_at[t] = max(self.confirmed_at[t], now)
        self.anomalies.append(anomaly)

    def _ordered(self, ref: int) -> list[int]:
        """A window's lines as the server reads them back (`server.store.window_lines`): arrival
        order, the lines of one timestamp by template id (`canonical_order`)."""
        lines = self.windows[ref].lines
        order = canonical_order([self.timestamp[i] for i in lines], [None if self.template[i] < 0 else self.template[i] for i in lines])
        return [lines[j] for j in order]

    def _closed(self, ref: int, context: bool = True) -> ClosedWindow:
        """A closed window as the worker reads it (`server.store.window_lines`, `session_context`)."""
        lines = self._ordered(ref)
        before: list[int] = []
        if context:
            for earlier in self.by_key[self.windows[ref].key]:
                if earlier >= ref:
                    break
                before += self._ordered(earlier)
            before = before[-MAX_CONTEXT_LINES:]
        return ClosedWindow(key=self.windows[ref].key, seq=[self.template[i] for i in lines],
                            masked=[self.masked[i] for i in lines], rapid_flags=[self.rapid_flag[i] for i in lines],
                            context_seq=[self.template[i] for i in before], context_masked=[self.masked[i] for i in before],
                            levels=[self.level[i] for i in lines], timestamps=[self.timestamp[i] for i in lines])

    # ------------------------------------------------------------------ training

    def training_windows(self) -> list[ClosedWindow]:
        """Normal data as the server's training job reads it: windows of train-mode lines."""
        return [self._closed(ref, context=False) for ref, w in enumerate(self.windows) if w.training and w.lines]


# --------------------------------------------------------------------------- the run


def product_settings(dataset: LogDataset, cfg: LiveConfig) -> tuple[StreamConfig, WindowSpec]:
    """What a stream created as the README shows gets for this data: the format preset and, for
    session data, the session regex and the idle timeout; every other setting at its default
    (`models.settings.StreamSettings`, the schema the server stores)."""
    loggpt = {"max_epochs": 3, "n_layer": 1, "n_embd": 32, "seed": cfg.seed} if cfg.quick else {"seed": cfg.seed}
    if cfg.loggpt is not None:
        loggpt = dict(cfg.loggpt)
    settings = StreamSettings(**{"format": dataset.preset, "session_regex": dataset.session_regex,
                                 "idle_timeout_seconds": cfg.idle_timeout, "loggpt_config": loggpt, **cfg.settings})
    return settings.stream_config(), settings.window_spec()


def line_truth(dataset: LogDataset, parser_sessions: list[list[str]] | None = None) -> np.ndarray:
    """Per data-set line: 1 when it belongs to an anomalous item (its own label, or any of its
    sessions' labels)."""
    if dataset.line_labels is not None:
        return np.asarray(dataset.line_labels, dtype=np.int8)
    from logsense.models.parsing.sessions import SessionKeyer

    keyer = SessionKeyer(dataset.session_regex)
    labels = dataset.session_labels or {}
    return np.array([int(any(labels.get(k, 0) for k in keyer.keys(line))) for line in dataset.lines], dtype=np.int8)


def replay(dataset: LogDataset, cfg: LiveConfig, embedder, progress: bool = True) -> dict:
    """Run the product over the data set; returns the stream, the truth and the phases' facts."""
    config, spec = product_settings(dataset, cfg)
    model = StreamModel(config, embedder)
    stream = LiveStream(model, spec)
    y_line = line_truth(dataset)
    n = len(dataset.lines)
    cut = int(round(n * cfg.train_fraction))
    train_idx = [i for i in range(cut) if cfg.train == "dirty" or not y_line[i]]
    test_idx = list(range(cut, n))
    operator = _Operator(stream, y_line, cfg.feedback_scope) if cfg.feedback else None
    with tqdm(total=len(train_idx) + len(test_idx), desc="replay", unit="line", disable=not progress) as bar:
        for start in range(0, len(train_idx), cfg.batch):
            idx = train_idx[start : start + cfg.batch]
            stream.post([dataset.lines[i] for i in idx], idx)
            stream.drain()
            bar.update(len(idx))
        stream.flush()  # as the README's walkthrough: close the open sessions, then train
        stream.drain()
        windows = stream.training_windows()
        items = model.review(training_lines(windows))  # the training review, before training
        review = operator.review_training(items) if operator else 0
        data = training_data(windows, exclude=model.excluded_templates(), exclude_shapes=model.excluded_shapes())
        candidate = model.fit_candidate(data)  # kept: the baselines' "loggpt" row reads it, promoted or not
        model.adopt(candidate, 1)
        metrics = dict(candidate.metrics)
        state = model.state(False)  # what the stream reports once out of train mode
        stream.train_mode = False
        n_train_lines = len(stream.source)
        for start in range(0, len(test_idx), cfg.batch):
            idx = test_idx[start : start + cfg.batch]
            stream.post([dataset.lines[i] for i in idx], idx)
            stream.drain()
            if operator:
                operator.work()
            bar.update(len(idx))
        stream.flush()
        stream.drain()
        if operator:
            operator.work()
    return {"stream": stream, "y_line": y_line, "n_train_lines": n_train_lines, "train_metrics": metrics,
            "candidate": candidate, "state": {"state": state[0], "reason": state[1]},
            "training_data": data, "spec": spec, "config": config, "training_review_clicks": review,
            "training_review": [{"template_id": it.template_id, "shape": list(it.shape) if it.shape else None,
                                 "reasons": it.reasons, "lines": it.n_lines,
                                 "windows": it.n_windows, "answer": model.reviews.get(it.template_id)} for it in items],
            "operator": operator, "cut": cut}


class _Operator:
    """The simulated operator: works the open queue oldest first, one click per queue row (the open
    anomalies of one template, as the UI groups them), answering with the truth of the row's first
    anomaly. "Normal" goes through the product's feedback effect (`StreamModel.refute`) and
    closes what `server.feedback` closes with it; "anomaly" confirms an incident that later
    anomalies of the template join while it goes on (`LiveStream._raise`)."""

    def __init__(self, stream: LiveStream, y_line: np.ndarray, scope: str):
        self.stream, self.y_line, self.scope = stream, y_line, scope
        self.clicks = 0
        self.cursor = 0

    def review_training(self, items: list) -> int:
        """Answer the training review with the truth: a template (a session shape) is an anomaly
        when most of its train-mode lines (of the sessions of that shape) belong to anomalous
        items. One click per item."""
        from logsense.models.review import session_shapes

        s = self.stream
        lines_of: dict[int, list[int]] = defaultdict(list)
        for i in range(len(s.source)):
            lines_of[s.template[i]].append(s.source[i])
        shapes = session_shapes(s.training_windows())
        for w in s.windows:
            if w.training and w.key in shapes:
                lines_of[shape_id(shapes[w.key])] += [s.source[i] for i in w.lines]
        for item in items:
            truth = np.mean([self.y_line[j] for j in lines_of[item.template_id]]) > 0.5
            s.model.answer_review(item.template_id, "anomaly" if truth else "normal")
        self.clicks_review = len(items)
        return len(items)

    def _truth(self, a: dict) -> int:
        s = self.stream
        if a["kind"] == "line":
            return int(self.y_line[s.source[a["line"]]])
        return int(any(self.y_line[s.source[i]] for i in s.windows[a["window"]].lines))

    def work(self) -> None:
        """Work the queue as the UI shows it: one row per template (of line or window anomalies),
        oldest first. The operator reads the row's first anomaly and answers the whole row with its
        truth, one click; "normal" acts on each member as `server.feedback` does."""
        s = self.stream
        while self.cursor < len(s.anomalies):
            a = s.anomalies[self.cursor]
            if a["status"] != "open":
                self.cursor += 1
                continue
            self.clicks += 1
            truth = self._truth(a)
            row = [b for b in s.anomalies[self.cursor:] if b["status"] == "open" and b["template"] == a["template"]
                   and (a["template"] is not None or b["kind"] == a["kind"])]
            for b in row:
                self._answer(b, truth)

    def _answer(self, a: dict, truth: int) -> None:
        s = self.stream
        if a["status"] != "open":
            return
        if truth:
            a["status"] = "confirmed"
            if a["template"] is not None:
                s.confirmed_at[a["template"]] = max(s.confirmed_at.get(a["template"], -math.inf), s.clock)
            return
        a["status"] = "refuted"
        if a["kind"] == "window":
            windows = [a["window"]]
        else:
            i = a["line"]
            s.label[i] = "normal"
            s.severity[i] = Severity.NORMAL.value
            windows = [r for r in s.line_windows[i] if s.windows[r].anomalous] if s.loggpt_flag[i] else []
        for r in windows:  # a refuted window: its lines lose their LogGPT flags, its window anomalies close
            for j in s.windows[r].lines:
                s.loggpt_flag[j] = False
                if s.rapid_flag[j] and s.label[j] is None:
                    s.severity[j] = Severity.WATCH.value
                elif s.severity[j] != Severity.TRAIN.value:
                    s.severity[j] = Severity.NORMAL.value
            for b in s.anomalies[self.cursor:]:
                if b["status"] == "open" and b["kind"] == "window" and b["window"] == r:
                    b["status"] = "refuted"
        if a["kind"] == "line" and self.scope == "template":
            for b in s.anomalies[self.cursor:]:
                if b["status"] == "open" and b["kind"] == "line" and b["template"] == a["template"]:
                    b["status"] = "refuted"
        closed = [s._closed(r) for r in windows]  # each with its session's earlier parts, as judged
        s.model.refute(line=s.masked[a["line"]] if a["kind"] == "line" else None, template=a["template"],
                       scope=self.scope, windows=[w.context_masked + w.masked for w in closed],
                       window_templates=[t for w in closed for t in w.seq if t >= 0])


# --------------------------------------------------------------------------- figures


def _prf(y: np.ndarray, flagged: np.ndarray) -> dict:
    m = binary_metrics(y, flagged)
    return {k: m[k] for k in ("precision", "recall", "f1", "tp", "fp", "fn")}


def judge_items(run: dict, dataset: LogDataset, line_flags: np.ndarray, window_flags: np.ndarray | None = None) -> dict:
    """Figures of one set of verdicts on the live items: `line_flags` per posted line (posting
    order), `window_flags` per product window (None: no window raises anything of its own)."""
    s: LiveStream = run["stream"]
    y_line = run["y_line"]
    after = np.arange(run["n_train_lines"], len(s.source))
    src = np.asarray(s.source, dtype=np.int64)
    out = {"line": _prf(y_line[src[after]], line_flags[after])}
    wflag = window_flags if window_flags is not None else np.zeros(len(s.windows), dtype=bool)
    live_windows = [r for r, w in enumerate(s.windows) if w.lines and w.lines[-1] >= run["n_train_lines"]]
    if dataset.session_labels is not None:
        labels = dataset.session_labels
        flagged: dict[str, bool] = defaultdict(bool)
        for r in live_windows:
            w = s.windows[r]
            f = bool(wflag[r]) or any(line_flags[i] for i in w.lines if i >= run["n_train_lines"])
            flagged[w.key] = flagged[w.key] or f
        keys = [k for k in flagged if k in labels]
        y = np.array([labels[k] for k in keys], dtype=np.int8)
        f = np.array([flagged[k] for k in keys], dtype=bool)
        out["session"] = _prf(y, f)
        out["items"] = "sessions"
        head, yh, fh = out["session"], y, f
    else:
        out["items"] = "lines"
        head, yh, fh = out["line"], y_line[src[after]], line_flags[after]
    y_w = np.array([int(any(y_line[s.source[i]] for i in s.windows[r].lines)) for r in live_windows], dtype=np.int8)
    f_w = np.array([bool(wflag[r]) or any(line_flags[i] for i in s.windows[r].lines if i >= run["n_train_lines"])
                    for r in live_windows], dtype=bool)
    out["window"] = _prf(y_w, f_w)
    out.update({k: head[k] for k in ("precision", "recall", "f1")})
    normal = yh == 0
    out["normal_flagged_rate"] = float(fh[normal].mean()) if normal.any() else None
    out["n_items"], out["n_anomalous"] = int(len(yh)), int(yh.sum())
    return out


def queue_groups(anomalies: list[dict], gap: float = INCIDENT_GAP_SECONDS) -> int:
    """Rows the queue shows for these anomalies, as `server.incidents` groups them: incidents (runs
    with gaps of at most `gap` s, log time here) times the templates in each."""
    rows, last, seen = 0, -math.inf, set()
    for a in sorted(anomalies, key=lambda a: a["ts"] if a["ts"] is not None and math.isfinite(a["ts"]) else -math.inf):
        ts = a["ts"] if a["ts"] is not None and math.isfinite(a["ts"]) else last
        if ts - last > gap:
            seen = set()
        last = max(last, ts)
        key = a["template"] if a["template"] is not None else a["kind"]
        if key not in seen:
            seen.add(key)
            rows += 1
    return rows


def product_figures(run: dict, dataset: LogDataset) -> dict:
    s: LiveStream = run["stream"]
    flags = np.array(s.raised, dtype=bool)  # raised, even if an operator refuted it later
    wflags = np.array([w.anomalous for w in s.windows], dtype=bool)
    out = judge_items(run, dataset, flags, wflags)
    n_live = len(s.source) - run["n_train_lines"]
    queued = [a for a in s.anomalies if a["status"] != "muted" and not a["joined"]]
    out["queue_items"] = len(queued)
    out["queue_items_per_1k_lines"] = round(1000 * len(queued) / max(n_live, 1), 2)
    out["queue_groups"] = queue_groups(queued)
    out["queue_groups_per_1k_lines"] = round(1000 * out["queue_groups"] / max(n_live, 1), 2)
    out["lines_after_switch"] = n_live
    return out


# --------------------------------------------------------------------------- the other detectors


def detector_figures(run: dict, dataset: LogDataset, cfg: LiveConfig, progress: bool = True) -> dict:
    """Every baseline on the same live items: trained on the windows the product trained on (the
    held-back ones calibrate each threshold at 1% of their windows, as the product's K), judged on
    the product's own live windows and lines; a window's flag flags its lines and its session."""
    import time

    from logsense.models.bench.baselines.deeplog import DeepLog, DeepLogConfig
    from logsense.models.bench.baselines.floors import SeverityRule, UnseenSession, UnseenTemplate
    from logsense.models.bench.baselines.iforest import IForestDetector
    from logsense.models.bench.baselines.logbert import LogBERT, LogBERTConfig
    from logsense.models.bench.baselines.lstm_ae import LSTMAEConfig, LSTMAutoencoder
    from logsense.models.policy import threshold_at_fpr
    from logsense.models.sequence import NextKeyModel

    s: LiveStream = run["stream"]
    data = run["training_data"]
    model = s.model
    n0 = run["n_train_lines"]
    live = [r for r, w in enumerate(s.windows) if w.lines and w.lines[-1] >= n0]
    closed = [s._closed(r) for r in live]
    live_seqs = [w.context_seq + w.seq for w in closed]  # the session so far, as the product reads it
    sessions = dataset.session_labels is not None
    target = model.config.loggpt_target_fpr
    out: dict[str, dict] = {}

    def windows_to_lines(wflags: np.ndarray) -> np.ndarray:
        lines = np.zeros(len(s.source), dtype=bool)
        for r, f in zip(live, wflags):
            if f:
                lines[[i for i in s.windows[r].lines if i >= n0]] = True
        return lines

    def record(name: str, line_flags: np.ndarray, wflags: np.ndarray | None, info: dict) -> None:
        full = np.zeros(len(s.windows), dtype=bool)
        if wflags is not None:
            full[live] = wflags
        figures = judge_items(run, dataset, line_flags, full if wflags is not None else None)
        out[name] = {**{k: figures[k] for k in ("precision", "recall", "f1", "normal_flagged_rate")},
                     "line": figures["line"], "window": figures["window"], **info}
        if "session" in figures:
            out[name]["session"] = figures["session"]

    def sequence(name: str, detector, rule: bool = False) -> None:
        start = time.perf_counter()
        if rule:
            detector.fit(data.train_seqs)
        elif isinstance(detector, NextKeyModel):
            detector.fit(data.train_seqs, data.val_seqs or None, sessions=sessions)
        else:
            detector.fit(data.train_seqs, data.val_seqs or None)
        fit = time.perf_counter() - start
        score = detector.scores if hasattr(detector, "scores") else detector.score
        if rule:
            t = 0.0
        else:
            t = threshold_at_fpr(score(data.val_seqs), target) if data.val_seqs else 0.0
        wflags = np.asarray(score(live_seqs)) > t
        record(name, windows_to_lines(wflags), wflags, {"threshold": float(t), "fit_seconds": round(fit, 1)})

    # line detectors
    record("rapid", np.array([bool(f) for f in s.rapid_flag], dtype=bool), None,
           {"threshold": model.rapid_threshold, "note": "the product's RAPID line verdicts alone"})
    unseen = UnseenTemplate().fit(data.train_seqs + data.val_seqs)
    record("unseen_template", unseen.score([[t] for t in s.template]) > 0, None, {"note": "fixed rule"})
    levels_live = SeverityRule().score([[lv] for lv in s.level]) > 0
    record("severity_rule", levels_live, None, {"note": "fixed rule: a severe level"})
    # window detectors
    candidate = run["candidate"]  # LogGPT as trained, promoted or not
    checks = candidate.loggpt.check(live_seqs, k=candidate.k)
    wflags = np.array([any(len(w.context_seq) <= m.position <= len(w.context_seq) + len(w.seq) for m in c.misses)
                       for w, c in zip(closed, checks)], dtype=bool)  # misses in this part, its end key included
    record("loggpt", windows_to_lines(wflags), wflags,
           {"top_k": candidate.k, "note": "the product's LogGPT alone, without the known-content rule"
            + ("" if run["train_metrics"]["promoted"] else "; the product kept it back: " + run["train_metrics"]["reason"])})
    q = cfg.quick
    bar = tqdm(total=5 if sessions else 4, desc="baselines", unit="det", disable=not progress)
    sequence("deeplog", DeepLog(DeepLogConfig(seed=cfg.seed, max_epochs=3 if q else 10)))
    bar.update()
    sequence("logbert", LogBERT(LogBERTConfig(seed=cfg.seed, **({"max_epochs": 2} if q else {}))))
    bar.update()
    sequence("lstm_ae", LSTMAutoencoder(LSTMAEConfig(seed=cfg.seed, **({"max_epochs": 2} if q else {}))))
    bar.update()
    iforest = IForestDetector(seed=cfg.seed)
    start = time.perf_counter()
    iforest.fit(data.train_seqs)
    fit = time.perf_counter() - start
    t = threshold_at_fpr(iforest.score(data.val_seqs), target) if data.val_seqs else 0.0
    wflags = iforest.score(live_seqs) > t
    record("iforest", windows_to_lines(wflags), wflags, {"threshold": float(t), "fit_seconds": round(fit, 1)})
    bar.update()
    if sessions:
        sequence("unseen_session", UnseenSession(), rule=True)
        out["unseen_session"]["note"] = "fixed rule: a set of keys no training window had"
        bar.update()
    bar.close()
    return out


def protocol_text(cfg: LiveConfig, dataset: LogDataset, spec: WindowSpec) -> str:
    cutting = (f"sessions by {dataset.session_regex}, closed after {cfg.idle_timeout:g} s of log time without a line "
               f"or at {spec.max_session_lines} lines" if spec.sessions else
               f"count windows of {spec.window_size} lines (closed after {cfg.idle_timeout:g} s of log time without a line)")
    train = ("every line of the train part, anomalies included (dirty)" if cfg.train == "dirty" else
             "the train part without the lines of anomalous items (clean)")
    return (f"protocol: live: the product's stream object fed the data in time order, {cfg.batch}-line batches; "
            f"the first {cfg.train_fraction:.0%} of the lines in train mode ({train}), flush, train "
            f"(K and the RAPID threshold at <= 1% on held-back windows of that data, no labels), leave train mode, "
            f"the rest; {cutting}; stream defaults otherwise. Items judged as the server judges them; "
            f"baselines trained and calibrated on the same windows, judged on the same live windows and lines")


def run_live(dataset: LogDataset, cfg: LiveConfig, embedder, progress: bool = True) -> dict:
    """The whole live protocol: the product's figures, the training job's metrics, every baseline."""
    import time

    start = time.perf_counter()
    from dataclasses import replace

    run = replay(dataset, replace(cfg, feedback=False), embedder, progress)
    replay_seconds = time.perf_counter() - start
    product = product_figures(run, dataset)
    if cfg.feedback:  # a second replay, the simulated operator working the queue as it fills
        fb_run = replay(dataset, cfg, embedder, progress)
        fb = product_figures(fb_run, dataset)
        product["feedback"] = {"clicks": fb_run["operator"].clicks + fb_run["training_review_clicks"],
                               "training_review_clicks": fb_run["training_review_clicks"], "scope": cfg.feedback_scope,
                               **{k: fb[k] for k in ("precision", "recall", "f1", "normal_flagged_rate",
                                                     "queue_items_per_1k_lines", "queue_groups")}}
    product["train_metrics"] = run["train_metrics"]
    product["training_review"] = run["training_review"]
    product["state"] = run["state"]
    product["replay_seconds"] = round(replay_seconds, 1)
    detectors = detector_figures(run, dataset, cfg, progress)
    s: LiveStream = run["stream"]
    return {
        "protocol_text": protocol_text(cfg, dataset, run["spec"]),
        "train": cfg.train,
        "idle_timeout": cfg.idle_timeout,
        "train_fraction": cfg.train_fraction,
        "lines": len(dataset.lines),
        "lines_posted_in_train_mode": run["n_train_lines"],
        "windows": len(s.windows),
        "training_windows": {"train": len(run["training_data"].train_seqs), "held_back": len(run["training_data"].val_seqs)},
        "templates": s.model.n_templates(),
        "product": product,
        "detectors": detectors,
    }
