"""One benchmark run on one data set: parse, split, fit, calibrate, score, measure.

Labels enter in exactly three places: dropping anomalous items from the training part (train on
normals), picking the validation *normals* that thresholds are calibrated on, and the final
metrics on the test part. Thresholds and K never see a test label (the `paper` protocol's
oracle, labeled as such, is the one exception the papers made).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from logsense.models.bench.datasets import LogDataset
from logsense.models.bench.detectors import (
    FloorPart,
    IForestPart,
    Items,
    Part,
    RapidLinePart,
    RapidSessionPart,
    SequencePart,
    SeverityPart,
    make_sequence_models,
)
from logsense.models.bench.baselines.floors import UnseenSession, UnseenTemplate
from logsense.models.bench.ensemble import Ensemble, EnsembleConfig, choose_policy
from logsense.models.bench.evaluation import (
    Split,
    auprc,
    binary_metrics,
    chrono_split,
    oracle_threshold,
    pr_curve,
    random_split,
    simulate_operator,
    threshold_at_fpr,
)
from logsense.models.parsing import LogParser
from logsense.models.parsing.sessions import canonical_order, count_windows, time_windows
from logsense.models.rapid import session_text


@dataclass
class RunConfig:
    protocol: str = "chrono"  # "chrono": time split, thresholds from validation normals; "paper": random split, oracle
    fractions: tuple[float, float, float] = (0.6, 0.1, 0.3)  # train / validation / test
    target_fpr: float = 0.01  # false-positive budget on validation normals
    seed: int = 0
    feedback: bool = False  # run the simulated operator too
    quick: bool = False  # small models, few epochs (tests and smoke runs)
    rl_steps: int = 0  # LogGPT's reinforcement step (0 = off)
    window: int = 20  # count windows for line streams (size = step)
    window_seconds: float = 60.0  # time windows for line streams
    rapid_k: int = 5


@dataclass
class Outcome:
    """What one detector did on the test part."""

    name: str
    level: str  # "session", "line", "window"
    threshold: float
    y: np.ndarray
    scores: np.ndarray
    flagged: np.ndarray
    fit_seconds: float
    score_seconds: float
    n_test_lines: int
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        m = binary_metrics(self.y, self.flagged)
        out = {
            "level": self.level,
            "precision": m["precision"],
            "recall": m["recall"],
            "f1": m["f1"],
            "tp": m["tp"],
            "fp": m["fp"],
            "fn": m["fn"],
            "auprc": auprc(self.y, self.scores),
            "threshold": float(self.threshold),
            "fit_seconds": round(self.fit_seconds, 3),
            "score_lines_per_second": round(self.n_test_lines / self.score_seconds, 1) if self.score_seconds > 0 else None,
        }
        out.update(self.extra)
        return out


def parse_lines(dataset: LogDataset, progress: bool = True) -> tuple[LogParser, list]:
    """Parse every line in time order, mining templates online as a server would (no labels)."""
    parser = LogParser(preset=dataset.preset, session_regex=dataset.session_regex)
    lines = list(dataset.extra_normal_lines) + list(dataset.lines)
    parsed = []
    step = 20_000
    with tqdm(total=len(lines), desc="parse", unit="line", disable=not progress) as bar:
        for start in range(0, len(lines), step):
            chunk = parser.parse_many(lines[start : start + step], learn=True)
            parsed.extend(chunk)
            bar.update(len(chunk))
    return parser, parsed


def split_items(order: np.ndarray, cfg: RunConfig) -> Split:
    if cfg.protocol == "paper":
        return random_split(len(order), cfg.fractions, seed=cfg.seed)
    return chrono_split(order, cfg.fractions)


def evaluate_part(part: Part, items: Items, y: np.ndarray, split: Split, cfg: RunConfig, level: str) -> tuple[Outcome, np.ndarray]:
    """Fit on normal training items, calibrate on validation normals, score the test items.

    Returns the outcome and the validation-normal scores (for the joint ensemble calibration).
    """
    train = [i for i in split.train if y[i] == 0]
    val_normal = [i for i in split.val if y[i] == 0]
    part.timed_fit(items.take(train), items.take(val_normal))
    val_scores = part.score(items.take(val_normal))
    test = items.take(split.test)
    start = time.perf_counter()
    test_scores = part.score(test)
    score_seconds = time.perf_counter() - start
    y_test = y[split.test]
    if part.rule:  # a floor is the rule as written: calibrating it to 1% would switch it off (BGL: FATAL is common)
        threshold = 0.0
    elif cfg.protocol == "paper":
        threshold = oracle_threshold(y_test, test_scores)
    else:
        threshold = threshold_at_fpr(val_scores, cfg.target_fpr)
    extra = dict(part.info)
    if isinstance(part, SequencePart):
        extra["top_k"] = int(np.floor(threshold)) + 1
    extra["val_fpr"] = float(np.mean(val_scores > threshold)) if len(val_scores) else None
    outcome = Outcome(part.name, level, threshold, y_test, test_scores, test_scores > threshold, part.fit_seconds, score_seconds, test.n_lines, extra)
    return outcome, val_scores


# --------------------------------------------------------------------------- sessions (HDFS)


def session_items(parsed: list, session_labels: dict[str, int]) -> tuple[Items, np.ndarray, np.ndarray]:
    """Group lines into sessions by their keys; order sessions by their first line."""
    groups: "OrderedDict[str, list[int]]" = OrderedDict()
    for i, p in enumerate(parsed):
        for key in p.sessions:
            groups.setdefault(key, []).append(i)
    keys = [k for k in groups if k in session_labels]
    for k in keys:  # ties of the 1 s clock in template order (canonical_order): not the file's tie-break
        lines = groups[k]
        groups[k] = [lines[j] for j in canonical_order([parsed[i].timestamp for i in lines],
                                                       [parsed[i].template_id for i in lines])]
    items = Items(
        seqs=[[parsed[i].template_id for i in groups[k]] for k in keys],
        masked=[[parsed[i].masked for i in groups[k]] for k in keys],
        levels=[[parsed[i].level for i in groups[k]] for k in keys],
        lines=[groups[k] for k in keys],
    )
    y = np.array([session_labels[k] for k in keys], dtype=np.int8)
    order = np.array([groups[k][0] for k in keys], dtype=np.int64)
    return items, y, order


def run_sessions(dataset: LogDataset, cfg: RunConfig, embedder, progress: bool = True) -> dict:
    """HDFS-style: a session is anomalous when any of its lines or keys is flagged."""
    parser, parsed = parse_lines(dataset, progress)
    items, y, order = session_items(parsed, dataset.session_labels)
    split = split_items(order, cfg)
    loggpt_model, deeplog_model = make_sequence_models(cfg.quick, cfg.seed, cfg.rl_steps)
    parts: list[Part] = [
        FloorPart("unseen_template", UnseenTemplate()),
        FloorPart("unseen_session", UnseenSession()),
        SeverityPart(),
        IForestPart(cfg.seed),
        RapidLinePart(embedder, cfg.rapid_k),
        RapidSessionPart(embedder, cfg.rapid_k),
        SequencePart("deeplog", deeplog_model, sessions=True),
        SequencePart("loggpt", loggpt_model, sessions=True),
    ]
    outcomes: dict[str, Outcome] = {}
    val_scores: dict[str, np.ndarray] = {}
    for part in tqdm(parts, desc="detectors", unit="det", disable=not progress):
        outcomes[part.name], val_scores[part.name] = evaluate_part(part, items, y, split, cfg, "session")
    by_name = {p.name: p for p in parts}
    train_levels = [lvl for i in split.train if y[i] == 0 for lvl in items.levels[i]]
    val_normal = [i for i in split.val if y[i] == 0]
    ens_parts = ["rapid", "rapid_session", "loggpt"]
    known_texts = by_name["rapid_session"].scorer  # training sessions' texts, before any feedback
    known = [np.array([known_texts.is_normal(session_text(items.masked[i])) for i in idx], dtype=bool)
             for idx in (val_normal, split.test)]
    ensemble, outcomes["ensemble"] = evaluate_ensemble(
        ens_parts, outcomes, val_scores, items.take(val_normal).top_levels(), items.take(split.test).top_levels(),
        train_levels, cfg, "session", known,
    )
    _, outcomes["ensemble_or"] = evaluate_ensemble(
        ens_parts, outcomes, val_scores, items.take(val_normal).top_levels(), items.take(split.test).top_levels(),
        train_levels, cfg, "session", name="ensemble_or",
    )
    results = {n: o.summary() for n, o in outcomes.items()}
    if cfg.feedback and cfg.protocol == "chrono":
        feedback_sessions(results, by_name, outcomes, ensemble, items, y, split, embedder, cfg)
    meta = {
        "items": "sessions",
        "split_sizes": split_sizes(split, y),
        "templates": len(parser.miner),
        "ensemble_policy": ensemble.config.policy,
        "ensemble_thresholds": ensemble.thresholds,
        "seen_lines_per_second": measure_seen_rate(parser, by_name["rapid"], dataset.lines, split, items),
    }
    curves = {n: pr_curve(o.y, o.scores) for n, o in outcomes.items()}
    return {"detectors": results, "meta": meta, "curves": curves}


def evaluate_ensemble(names, outcomes, val_scores, val_levels, test_levels, train_levels, cfg, level,
                      known=None, name="ensemble") -> tuple[Ensemble, Outcome]:
    """Calibrate the ensemble as a whole on validation normals, then decide on the test part.

    ``known``: (validation normals, test) masks of sessions whose content is a known normal's,
    which LogGPT does not flag (`models.ensemble`); None: the strict OR of the parts, without that rule.
    """
    policy = choose_policy(train_levels)
    known_val, known_test = known if known is not None else (None, None)
    ensemble = Ensemble(EnsembleConfig(target_fpr=cfg.target_fpr, policy=policy))
    ensemble.calibrate({n: val_scores[n] for n in names}, levels=val_levels)
    test_scores = {n: outcomes[n].scores for n in names}
    y = outcomes[names[0]].y
    severities = ensemble.decide(test_scores, test_levels, known_test)
    flagged = severities != "normal"
    cont = ensemble.score(test_scores, test_levels, known_test)
    val_sev = ensemble.decide({n: val_scores[n] for n in names}, val_levels, known_val)
    if cfg.protocol == "paper":
        t = oracle_threshold(y, cont)
        flagged = cont > t
    danger = severities == "danger"
    dm = binary_metrics(y, danger)
    extra = {
        "policy": policy,
        "known_normal_rule": known is not None,
        "part_thresholds": ensemble.thresholds,
        "val_fpr": float(np.mean(val_sev != "normal")),
        "danger_precision": dm["precision"],
        "danger_recall": dm["recall"],
        "danger": int(danger.sum()),
        "watch": int((severities == "watch").sum()),
    }
    if known is not None:
        extra["known_test_items"] = int(np.sum(known_test))
    outcome = Outcome(
        name, level, float("nan"), y, cont, flagged,
        sum(outcomes[n].fit_seconds for n in names), sum(outcomes[n].score_seconds for n in names),
        outcomes[names[0]].n_test_lines, extra,
    )
    return ensemble, outcome


def feedback_sessions(results, parts, outcomes, ensemble, items, y, split, embedder, cfg) -> None:
    """The simulated operator on test sessions, in time order.

    Each detector's run learns only from its own clicks: the ensemble gets RAPID parts fitted
    afresh on the training normals, not the ones the single-detector runs already taught.
    """
    test = items.take(split.test)
    y_test = y[split.test]
    train = items.take([i for i in split.train if y[i] == 0])
    learners = [RapidLinePart(embedder, cfg.rapid_k), RapidSessionPart(embedder, cfg.rapid_k)]
    for p in learners:
        p.fit(train)
    for name in ("unseen_session", "unseen_template", "rapid_session", "rapid"):
        part, t = parts[name], outcomes[name].threshold
        results[name]["feedback"] = stream_feedback(y_test, lambda i, p=part, t=t: bool(p.score(test.take([i]))[0] > t), lambda i, p=part: p.refute(test.take([i])))
    loggpt_scores = outcomes["loggpt"].scores
    rapid, rapid_session = learners
    sessions = rapid_session.scorer  # training session texts, and the refuted ones as they come

    def ens_flag(i: int) -> bool:
        one = test.take([i])
        # As the server's StreamModel.check: LogGPT does not flag a known (trained or refuted)
        # session text (LogGPT itself only learns at the nightly fine-tune).
        known = np.array([sessions.is_normal(session_text(one.masked[0]))])
        scores = {"rapid": rapid.score(one), "rapid_session": rapid_session.score(one),
                  "loggpt": np.array([loggpt_scores[i]])}
        return ensemble.decide(scores, one.top_levels(), known)[0] != "normal"

    def ens_refute(i: int) -> None:
        for p in learners:
            p.refute(test.take([i]))

    results["ensemble"]["feedback"] = stream_feedback(y_test, ens_flag, ens_refute)


def stream_feedback(y: np.ndarray, is_flagged, refute) -> dict:
    start = time.perf_counter()
    out = simulate_operator(y, is_flagged, refute)
    fb = {k: out[k] for k in ("precision", "recall", "f1", "clicks")}
    fb["seconds"] = round(time.perf_counter() - start, 2)
    return fb


def split_sizes(split: Split, y: np.ndarray) -> dict:
    out = {}
    for name in ("train", "val", "test"):
        idx = np.asarray(getattr(split, name))
        out[name] = {"items": int(len(idx)), "anomalous": int(y[idx].sum()) if len(idx) else 0}
    return out


def measure_seen_rate(parser: LogParser, rapid: RapidLinePart, raw_lines: list[str], split: Split, items: Items, limit: int = 100_000) -> dict:
    """RAPID's instant path on lines whose masked text it has seen: parse + score, lines/s.

    Uses the raw test lines; a first pass makes every masked text known (cached), the timed
    second pass is what a production stream of repeats costs.
    """
    test_lines = sorted({i for i in split.test for i in items.lines[i]})[:limit]
    raw = [raw_lines[i] for i in test_lines] if test_lines and max(test_lines) < len(raw_lines) else list(raw_lines[:limit])
    rapid.scorer.score([p.masked for p in parser.parse_many(raw, learn=False)])  # warm the cache
    start = time.perf_counter()
    parsed = parser.parse_many(raw, learn=False)
    rapid.scorer.score([p.masked for p in parsed])
    seconds = time.perf_counter() - start
    return {"lines": len(raw), "seconds": round(seconds, 3), "lines_per_second": round(len(raw) / seconds, 1), "cores": os.cpu_count()}


# --------------------------------------------------------------------------- lines and windows (BGL)


def line_items(parsed: list, offset: int = 0) -> Items:
    return Items(
        seqs=[[p.template_id] for p in parsed],
        masked=[[p.masked] for p in parsed],
        levels=[[p.level] for p in parsed],
        lines=[[offset + i] for i in range(len(parsed))],
    )


def window_items(parsed: list, idx: list[int], spec: tuple[str, float]) -> list[list[int]]:
    """Windows over the given (time-ordered) line indices: ("count", n) or ("time", seconds)."""
    kind, size = spec
    if kind == "count":
        ranges = count_windows(len(idx), int(size), int(size))
    else:
        ranges = time_windows([parsed[i].timestamp for i in idx], float(size))
    windows = [[idx[j] for j in r] for r in ranges if len(r)]
    return [[w[j] for j in canonical_order([parsed[i].timestamp for i in w], [parsed[i].template_id for i in w])]
            for w in windows]


def run_lines(dataset: LogDataset, cfg: RunConfig, embedder, progress: bool = True) -> dict:
    """BGL-style: line-level verdicts for RAPID and the floors; windows for sequence models."""
    parser, parsed_all = parse_lines(dataset, progress)
    n_extra = len(dataset.extra_normal_lines)
    extra, parsed = parsed_all[:n_extra], parsed_all[n_extra:]
    y = np.asarray(dataset.line_labels, dtype=np.int8)
    items = line_items(parsed)
    split = split_items(np.arange(len(parsed)), cfg)
    results: dict[str, dict] = {}
    curves: dict = {}

    # Line level: the training part is its normal lines (plus the extra normal data, if any).
    train_lines = [i for i in split.train if y[i] == 0]
    extra_items = line_items(extra, offset=-n_extra)
    line_parts: list[Part] = [
        FloorPart("unseen_template", UnseenTemplate()),
        SeverityPart(),
        RapidLinePart(embedder, cfg.rapid_k),
    ]
    outcomes: dict[str, Outcome] = {}
    val_scores: dict[str, np.ndarray] = {}
    all_items, all_y, all_split = with_extra(items, y, split, extra_items)
    for part in tqdm(line_parts, desc="line detectors", unit="det", disable=not progress):
        outcomes[part.name], val_scores[part.name] = evaluate_part(part, all_items, all_y, all_split, cfg, "line")

    # Sequence models train on windows of normal lines; a line's score is its key's rank.
    loggpt_model, deeplog_model = make_sequence_models(cfg.quick, cfg.seed, cfg.rl_steps)
    seq_parts = [SequencePart("loggpt", loggpt_model, sessions=False), SequencePart("deeplog", deeplog_model, sessions=False)]
    spec = ("count", cfg.window)
    train_windows = [w for w in window_items(parsed_all, list(range(n_extra)) + [n_extra + i for i in split.train], spec) if all(j < n_extra or y[j - n_extra] == 0 for j in w)]
    train_seq_items = Items([[parsed_all[j].template_id for j in w] for w in train_windows], [[] for _ in train_windows], [[] for _ in train_windows], train_windows)
    val_windows = [w for w in window_items(parsed, [int(i) for i in split.val], spec) if not any(y[j] for j in w)]
    val_seq_items = Items([[parsed[j].template_id for j in w] for w in val_windows], [[] for _ in val_windows],
                          [[] for _ in val_windows], val_windows)  # early stopping on normal validation windows
    for part in tqdm(seq_parts, desc="sequence models", unit="det", disable=not progress):
        part.timed_fit(train_seq_items, val_seq_items)
        val_rank, val_y = part_line_ranks(part, parsed, split.val, y, spec)
        start = time.perf_counter()
        test_rank, test_y = part_line_ranks(part, parsed, split.test, y, spec)
        seconds = time.perf_counter() - start
        vn = val_rank[val_y == 0]
        t = oracle_threshold(test_y, test_rank) if cfg.protocol == "paper" else threshold_at_fpr(vn, cfg.target_fpr)
        extra_info = dict(part.info, top_k=int(np.floor(t)) + 1, val_fpr=float(np.mean(vn > t)), window=f"{cfg.window} lines")
        outcomes[part.name] = Outcome(part.name, "line", t, test_y, test_rank, test_rank > t, part.fit_seconds, seconds, len(test_y), extra_info)
        val_scores[part.name] = vn

    val_normal = [i for i in split.val if y[i] == 0]
    train_levels = [items.levels[i][0] for i in train_lines]
    # Count windows keep no set of known-normal contents (as in the server: only sessions do, and
    # refuted windows), so the known-normal rule never applies here: the strict OR.
    ensemble, outcomes["ensemble"] = evaluate_ensemble(
        ["rapid", "loggpt"], outcomes, val_scores, [items.levels[i][0] for i in val_normal],
        [items.levels[i][0] for i in split.test], train_levels, cfg, "line",
    )
    for name, o in outcomes.items():
        results[name] = o.summary()
        curves[name] = pr_curve(o.y, o.scores)
    if cfg.feedback and cfg.protocol == "chrono":
        feedback_lines(results, {p.name: p for p in line_parts}, outcomes, ensemble, items, y, split, embedder, cfg,
                       all_items, all_y, all_split)

    windows = window_level(outcomes, parsed, y, split, cfg)
    meta = {
        "items": "lines",
        "split_sizes": split_sizes(split, y),
        "extra_normal_lines": n_extra,
        "templates": len(parser.miner),
        "ensemble_policy": ensemble.config.policy,
        "ensemble_thresholds": ensemble.thresholds,
        "windows": windows,
        "seen_lines_per_second": measure_seen_rate(parser, line_parts[2], dataset.lines, split, items),
    }
    return {"detectors": results, "meta": meta, "curves": curves}


def with_extra(items: Items, y: np.ndarray, split: Split, extra: Items) -> tuple[Items, np.ndarray, Split]:
    """Prepend the extra normal lines to the data and to the training part."""
    if not len(extra):
        return items, y, split
    n = len(extra)
    merged = Items(extra.seqs + items.seqs, extra.masked + items.masked, extra.levels + items.levels, extra.lines + items.lines)
    y2 = np.concatenate([np.zeros(n, dtype=np.int8), y])
    split2 = Split(np.concatenate([np.arange(n), np.asarray(split.train) + n]), np.asarray(split.val) + n, np.asarray(split.test) + n)
    return merged, y2, split2


def part_line_ranks(part: SequencePart, parsed: list, idx, y: np.ndarray, spec) -> tuple[np.ndarray, np.ndarray]:
    """Each line's rank within its window, for the lines of one part of the split (in order)."""
    order = [int(i) for i in idx]
    windows = window_items(parsed, sorted(order), spec)
    seqs = Items([[parsed[j].template_id for j in w] for w in windows], [[] for _ in windows], [[] for _ in windows], windows)
    ranks = part.line_ranks(seqs)
    by_line = {j: r for w, rs in zip(windows, ranks) for j, r in zip(w, rs)}
    return np.array([by_line[j] for j in order], dtype=np.float64), y[order]


def window_level(outcomes, parsed, y, split, cfg) -> dict:
    """Window verdicts: a window is anomalous when any of its lines is flagged (line detectors),
    count and time windows over the test lines. Sequence models score lines by their rank within
    the benchmark's count windows, so their window verdict is "any line flagged" as well."""
    out = {}
    test_idx = sorted(int(i) for i in split.test)
    pos = {int(j): k for k, j in enumerate(split.test)}  # outcomes are in split.test order
    for spec in (("count", cfg.window), ("time", cfg.window_seconds)):
        windows = window_items(parsed, test_idx, spec)
        wy = np.array([int(any(y[j] for j in w)) for w in windows], dtype=np.int8)
        table = {}
        for name, o in outcomes.items():
            wf = np.array([any(o.flagged[pos[j]] for j in w) for w in windows])
            m = binary_metrics(wy, wf)
            table[name] = {"precision": m["precision"], "recall": m["recall"], "f1": m["f1"]}
        out[f"{spec[0]}:{spec[1]:g}"] = {"windows": len(windows), "anomalous": int(wy.sum()), "detectors": table}
    return out


def feedback_lines(results, parts, outcomes, ensemble, items, y, split, embedder, cfg, all_items, all_y, all_split) -> None:
    """The simulated operator on test lines, in time order, for the detectors that learn at once.

    Two ways for RAPID to learn a refutation are compared: exact (the masked text is remembered,
    nothing else changes) and similarity (it also joins the core set, which can pull a similar
    alert under the threshold).
    """
    test = items.take(split.test)
    y_test = y[split.test]
    levels = [lv[0] for lv in test.levels]
    for name in ("unseen_template", "rapid"):
        part, t = parts[name], outcomes[name].threshold
        results[name]["feedback"] = stream_feedback(y_test, lambda i, p=part, t=t: bool(p.score(test.take([i]))[0] > t), lambda i, p=part: p.refute(test.take([i])))

    def run_ensemble(index: bool, scope: str) -> dict:
        rapid = RapidLinePart(embedder, cfg.rapid_k, index_feedback=index)
        rapid.fit(all_items.take([i for i in all_split.train if all_y[i] == 0]))
        refuted_templates: set[int] = set()

        def flag(i: int) -> bool:
            one = test.take([i])
            if scope == "template" and one.seqs[0][0] in refuted_templates:
                return False
            scores = {"rapid": rapid.score(one), "loggpt": np.array([outcomes["loggpt"].scores[i]])}
            return ensemble.decide(scores, [levels[i]])[0] != "normal"

        def refute(i: int) -> None:
            rapid.refute(test.take([i]))
            refuted_templates.add(test.seqs[i][0])

        return stream_feedback(y_test, flag, refute)

    results["ensemble"]["feedback"] = run_ensemble(index=False, scope="line")
    results["ensemble"]["feedback_template_scope"] = run_ensemble(index=False, scope="template")
    results["ensemble"]["feedback_similarity"] = run_ensemble(index=True, scope="line")
