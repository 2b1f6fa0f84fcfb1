"""One stream's detectors in one object: parse, instant RAPID verdicts, LogGPT checks, feedback, training.

The server holds one `StreamModel` per stream and shares it between the API, the worker and the
scheduler. It knows nothing about HTTP or SQL: the caller hands it lines, template-id sequences
and training data, and stores what it answers.

- `parse` + `score` give every line its instant verdict (RAPID score, flag, exact-normal).
- `learn_normal` teaches normal lines at once (train mode, refutations): a refuted line comes
  back normal on its next occurrence; with template scope its template id never flags again.
- `check` runs LogGPT's top-K next-key rule on closed windows; `None` per window until trained.
  A window whose content (`content_text`) is a known normal's is not flagged
  (`models.ensemble`: known content comes first): for sessions the training sessions and the
  refuted ones; for count/time windows, which rarely repeat word for word, the refuted ones only
  (so memory does not grow with every window). `session_flags` is RAPID's session-level
  verdict: a closed session whose content no normal session had.
- `fit_candidate` / `fine_tune` build a new detector set without touching the live one;
  `promote` swaps it in. `train` = both.
- `save(dir)` / `StreamModel.load(dir, embedder)`: parser and RAPID core sets, each piece
  written atomically; `save_version(dir, candidate)` / `use_version(dir)`: one LogGPT with its
  K and RAPID threshold (the server keeps one directory per version, for rollback).

Thread safety: Drain3 is not thread-safe, so parsing runs under a lock; RapidScorer has its own
lock; the LogGPT model, its K and the thresholds are swapped as one tuple, so a check sees
either the old or the new model, never half of each.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from logsense.models.parsing.miner import write_json as _write_json
from logsense.models.policy import TARGET_FPR

FORMAT = "logsense.stream"
VERSION = 1
DEFAULT_RAPID_THRESHOLD = 0.15  # before the first calibration: a line this far from every known normal flags
EXPECTED_FALSE_POSITIVES = 10  # validation data must hold this many at the target rate (1,000 windows at 1%):
# the achieved rate is read off them, with a relative error of about a third (with 3, over a half)
FPR_TOLERANCE = 0.005  # a retrain may raise the validation FPR this much and still be "not worse"

Progress = Callable[[float, str], None]


@dataclass
class StreamConfig:
    """What the detectors need from a stream's settings (the server maps its StreamSettings to this)."""

    preset: str = "generic"  # header preset (models.parsing.headers.PRESETS)
    regex: str | None = None  # custom header regex with named groups timestamp, level, message
    mask_rules: list | None = None  # None: the Masker's defaults; preset names or (name, regex, replacement)
    session_regex: str | None = None  # e.g. r"blk_-?\d+"; None: count/time windows (the server cuts them)
    rapid_k: int = 5  # nearest normals compared by MaxSim
    rapid_threshold: float | None = None  # fixed flag threshold; None: calibrated at training
    rapid_target_fpr: float = TARGET_FPR  # false-positive rate on held-back normal lines the threshold is set to
    loggpt_top_k: int | None = None  # fixed top-K; None: calibrated at training
    loggpt_target_fpr: float = TARGET_FPR  # false-positive rate on held-back normal windows K is set to
    loggpt: dict = field(default_factory=dict)  # overrides of models.loggpt.LogGPTConfig (e.g. small for tests)

    def parser_key(self) -> tuple:
        """The settings that shape parsing: when they change, the parser is rebuilt."""
        return (self.preset, self.regex, json.dumps(self.mask_rules, sort_keys=True), self.session_regex)


@dataclass
class LineVerdict:
    """A line's instant verdict."""

    score: float | None  # RAPID anomaly score in [0, 1]; None: pending (a new text, not embedded yet)
    flag: bool | None  # score > threshold, and the template not refuted; None while pending
    exact: bool  # the masked line is a known normal, word for word

    @property
    def pending(self) -> bool:
        return self.score is None


@dataclass
class TrainingData:
    """What training reads; the caller (the server) chooses and splits it, without labels of test data.

    Sequences are template-id lists, one per window or session; texts are masked lines (with
    repeats: calibration counts lines, not distinct texts).
    """

    train_seqs: list[list[int]]
    val_seqs: list[list[int]]  # held-back normal windows: K is calibrated and validated on them
    train_texts: list[str] = field(default_factory=list)  # masked lines of the training windows
    val_texts: list[str] = field(default_factory=list)  # masked lines of the held-back windows
    session_texts: list[str] = field(default_factory=list)  # content_text of every normal window (train and held back)
    anomaly_seqs: list[list[int]] = field(default_factory=list)  # operator-confirmed anomalies (validation)


MAX_CONTEXT_LINES = 1000  # lines of a session's earlier parts a later part is judged with


def content_text(masked_lines: Sequence[str]) -> str:
    """A window's content as the known-content rule compares it: its masked lines sorted, repeats
    kept. Sorted, so the order concurrent lines were logged in does not count (order is LogGPT's
    part); repeats kept, so a session that lost one of its three replicas is not "known"."""
    return " ; ".join(sorted(masked_lines))


@dataclass
class ClosedWindow:
    """A closed window as training and checking read it: its key and its lines in order, and the
    lines of the earlier closed parts of the same session (`context_*`, oldest first): a session
    cut by the idle timeout or the length cap is judged as what it is so far, not as a fragment."""

    key: str
    seq: list[int]  # template ids (-1: none)
    masked: list[str]  # masked lines
    rapid_flags: list[bool | None] = field(default_factory=list)  # per line (None: train mode)
    context_seq: list[int] = field(default_factory=list)  # earlier parts' template ids
    context_masked: list[str] = field(default_factory=list)  # earlier parts' masked lines
    levels: list[str | None] = field(default_factory=list)  # per line, for the training review
    timestamps: list[float | None] = field(default_factory=list)  # per line, for the training review


@dataclass
class WindowVerdict:
    """LogGPT's and RAPID's verdict on one closed window, as the queue and the lines take it."""

    anomalous: bool  # a window anomaly is raised
    loggpt: bool  # LogGPT flags it (a miss survived the known-content and refuted-template rules)
    new_content: bool | None  # no normal session had its content (None: not judged, count/time windows)
    missed: list[int]  # positions of the lines LogGPT flags (a miss at the end key: the last line)
    misses: list  # models.sequence.Miss
    severity: str | None  # the window anomaly's severity (None: not anomalous)


def with_context(windows: Sequence[ClosedWindow]) -> list[ClosedWindow]:
    """Each window with the earlier windows of its key as context (`MAX_CONTEXT_LINES` at most),
    in order: the parts of a session cut by the idle timeout or the length cap, as the worker
    hands them to `judge`. Count windows have keys of their own and get none."""
    seen: dict[str, ClosedWindow] = {}
    out = []
    for w in windows:
        before = seen.get(w.key)
        ctx_seq = (before.context_seq + before.seq)[-MAX_CONTEXT_LINES:] if before else []
        ctx_masked = (before.context_masked + before.masked)[-MAX_CONTEXT_LINES:] if before else []
        part = ClosedWindow(key=w.key, seq=list(w.seq), masked=list(w.masked), rapid_flags=list(w.rapid_flags),
                            context_seq=ctx_seq, context_masked=ctx_masked)
        seen[w.key] = part
        out.append(part)
    return out


def training_data(windows: Sequence[ClosedWindow], anomalies: Sequence[ClosedWindow] = (),
                  max_val: int = 5000, train_keys: set[str] | None = None,
                  exclude: set[int] | frozenset = frozenset(),
                  exclude_shapes: set[frozenset[int]] | frozenset = frozenset()) -> TrainingData:
    """Normal windows -> TrainingData, each part of a session with the parts before it
    (`with_context`), as `judge` reads them: LogGPT learns where parts of a session end. Held-back
    sessions (`models.windowing.is_held_back`, by key) validate, the others train. `train_keys`:
    only these train (a nightly fine-tune's new ones); windows holding a template of `exclude`
    (`StreamModel.excluded_templates`), and every part of a session whose shape is one of
    `exclude_shapes` (`StreamModel.excluded_shapes`), are left out."""
    from logsense.models.review import session_shapes
    from logsense.models.windowing import is_held_back

    if exclude_shapes:
        shapes = session_shapes(windows)
        windows = [w for w in windows if shapes[w.key] not in exclude_shapes]

    windows = [ClosedWindow(key=w.key, seq=w.context_seq + w.seq, masked=w.context_masked + w.masked)
               for w in with_context(windows)]
    if exclude:  # the training review: what may be an incident trains nothing until an operator says normal
        windows = [w for w in windows if not exclude.intersection(w.seq)]
    held = [w for w in windows if is_held_back(w.key)][-max_val:]
    train = [w for w in windows if not is_held_back(w.key) and (train_keys is None or w.key in train_keys)]
    return TrainingData(
        train_seqs=[list(w.seq) for w in train],
        val_seqs=[list(w.seq) for w in held],
        train_texts=[t for w in train for t in w.masked],
        val_texts=[t for w in held for t in w.masked],
        session_texts=[content_text(w.masked) for w in [*train, *held] if w.masked],
        anomaly_seqs=[list(w.seq) for w in anomalies],
    )


@dataclass
class Candidate:
    """A trained detector set, not yet live."""

    loggpt: Any  # models.loggpt.LogGPT
    k: int
    rapid: Any | None  # a rebuilt RapidScorer, or None to keep the live one
    rapid_threshold: float
    metrics: dict
    session_texts: list[str] = field(default_factory=list)  # join the session-level normal set at promotion


@dataclass
class _Detector:
    """The parts swapped together at promotion or rollback."""

    loggpt: Any | None = None
    k: int | None = None
    rapid_threshold: float | None = None  # calibrated; None: not yet
    version: int | None = None  # the server's version number of this LogGPT


def _check_result(misses: list) -> Any:
    """A CheckResult with only `misses` kept."""
    from logsense.models.sequence import CheckResult

    return CheckResult(anomalous=bool(misses), misses=misses)


def _report(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(float(fraction), message)


def threshold_at_rate(scores: Sequence[float], target_fpr: float) -> float:
    """The smallest threshold t with mean(scores > t) <= target_fpr; the default with no scores."""
    from logsense.models.policy import threshold_at_fpr

    if len(scores) == 0:
        return DEFAULT_RAPID_THRESHOLD
    return float(threshold_at_fpr(np.asarray(scores, dtype=np.float64), target_fpr))


class _Contents:
    """Known normal session contents as sets of masked lines, to ask "does this set fit inside a
    known one?" by the rarest of its lines (a walk over the contents that hold it)."""

    SEPARATOR = " ; "  # content_text

    def __init__(self) -> None:
        self.sets: list[frozenset] = []
        self.by_line: dict[str, list[int]] = {}
        self.texts: set[str] = set()

    def add(self, text: str) -> None:
        if text in self.texts:
            return
        self.texts.add(text)
        lines = frozenset(text.split(self.SEPARATOR)) if text else frozenset()
        self.sets.append(lines)
        for line in lines:
            self.by_line.setdefault(line, []).append(len(self.sets) - 1)

    def covers(self, lines: set[str]) -> bool:
        if not lines:
            return True
        rarest = min(lines, key=lambda line: len(self.by_line.get(line, ())))
        return any(lines <= self.sets[i] for i in self.by_line.get(rarest, ()))


class StreamModel:
    """Parser, RAPID scorers, LogGPT and thresholds of one stream."""

    def __init__(self, config: StreamConfig | None, embedder: Any):
        from logsense.models.rapid import RapidConfig, RapidScorer

        self.config = config or StreamConfig()
        self.embedder = embedder
        self.parser = self._new_parser(self.config)
        self._parser_key = self.config.parser_key()
        self.rapid = RapidScorer(embedder, RapidConfig(k=self.config.rapid_k))  # normal masked lines
        self.rapid_session = RapidScorer(embedder, RapidConfig(k=self.config.rapid_k))  # normal window texts, exact
        self.refuted_templates: set[int] = set()
        self.has_trained_sessions = False  # rapid_session holds the training sessions' texts (set at promote)
        self._det = _Detector()
        self._parse_lock = threading.RLock()  # held across parse_chunks, which may save the parser
        self._contents: _Contents | None = None  # the normal session contents as sets, built on first use
        self.calibration_note: str | None = None  # why the last first model was kept back (state "calibrating")
        self.reviews: dict[int, str] = {}  # template id (negative: a shape) -> models.review.Review value
        self.review_shapes: dict[int, tuple[int, ...]] = {}  # a shape's review id -> its template ids

    # ------------------------------------------------------------------ settings

    @staticmethod
    def _new_parser(config: StreamConfig):
        from logsense.models.parsing import LogParser

        return LogParser(
            preset=config.preset, regex=config.regex, mask_rules=config.mask_rules, session_regex=config.session_regex
        )

    def configure(self, config: StreamConfig) -> None:
        """Apply changed settings. Fixed thresholds act at once; parsing changes rebuild the
        header/mask/session parts but keep the learned templates (ids stay stable)."""
        if config.parser_key() != self._parser_key:
            with self._parse_lock:
                fresh = self._new_parser(config)
                fresh.miner = self.parser.miner  # the learned templates (and their ids) carry over
                self.parser = fresh
                self._parser_key = config.parser_key()
        if config.rapid_k != self.rapid.config.k:
            self.rapid.config.k = config.rapid_k
        self.config = config

    # ------------------------------------------------------------------ state

    @property
    def trained(self) -> bool:
        """LogGPT is trained: windows can be checked."""
        return self._det.loggpt is not None

    @property
    def version(self) -> int | None:
        """The server's version number of the live LogGPT (None: not trained)."""
        return self._det.version

    @property
    def k(self) -> int | None:
        return self.config.loggpt_top_k or self._det.k

    @property
    def rapid_threshold(self) -> float:
        """Fixed threshold if set, else the calibrated one, else the uncalibrated default."""
        if self.config.rapid_threshold is not None:
            return float(self.config.rapid_threshold)
        if self._det.rapid_threshold is not None:
            return float(self._det.rapid_threshold)
        return DEFAULT_RAPID_THRESHOLD

    def n_templates(self) -> int:
        """Templates learned so far (a change means new ids: the parser is saved before they are stored)."""
        return len(self.parser.miner)

    def templates_state(self) -> dict:
        """The template miner's state, JSON-ready: what `use_templates` takes on another replica or
        a new owner, so every one of them names a template by the same id."""
        with self._parse_lock:
            return self.parser.miner.to_dict()

    def use_templates(self, state: dict) -> None:
        """Continue from a `templates_state` saved elsewhere (header, mask and session parts stay)."""
        from logsense.models.parsing.miner import TemplateMiner

        miner = TemplateMiner.from_dict(state)
        with self._parse_lock:
            self.parser.miner = miner

    def template(self, template_id: int | None) -> str | None:
        """The template's current text (Drain3 may generalize it as more lines arrive)."""
        if template_id is None:
            return None
        try:
            return self.parser.miner.template(int(template_id))
        except (KeyError, IndexError, ValueError, AttributeError):
            return None

    # ------------------------------------------------------------------ instant path

    def parse(self, lines: Sequence[str], learn: bool = True) -> list:
        """ParsedLine per raw line (header, masked text, template id, session keys). Learns new templates."""
        with self._parse_lock:
            return self.parser.parse_many(lines, learn=learn)

    def parse_chunks(self, lines: Sequence[str], helper: Any = None, chunk: int = 300) -> Iterator[list]:
        """`parse` chunk by chunk. With a `models.parsing.helper.PrepareHelper`, the header, masking
        and session keys of later chunks run in the helper process while the caller works on
        the chunk it got. Holds the parse lock until exhausted or closed (use `closing`)."""
        with self._parse_lock:
            parser = self.parser
            if helper is None:
                for start in range(0, len(lines), chunk):
                    yield parser.parse_many(lines[start : start + chunk])
                return
            for part, prepared in helper.prepare(parser, lines, chunk):
                yield parser.finish_many(part, prepared)

    def score(self, parsed: Sequence, embed: bool = True) -> list[LineVerdict]:
        """RAPID verdict per parsed line (anything with `.masked` and `.template_id`): score, flag
        (score > threshold, template not refuted), exact. embed=False: a line whose text is new
        gets a pending verdict (score and flag None) instead of waiting for the embedder; score
        it again later with embed=True. Lines with the same masked text and template share one
        (read-only) verdict object."""
        texts = [p.masked for p in parsed]
        if not texts:
            return []
        unique = list(dict.fromkeys(texts))
        by_text = dict(zip(unique, self.rapid.score(unique, embed=embed).tolist()))
        threshold, refuted, excluded = self.rapid_threshold, self.refuted_templates, self.excluded_templates()
        verdicts: dict[tuple[str, int | None], LineVerdict] = {}  # a batch repeats a few hundred texts
        out = []
        for p, text in zip(parsed, texts):
            v = verdicts.get((text, p.template_id))
            if v is None:
                s = float(by_text[text])
                if s != s:  # NaN: not embedded yet
                    v = verdicts[text, p.template_id] = LineVerdict(score=None, flag=None, exact=False)
                    out.append(v)
                    continue
                exact = s == 0.0 and self.rapid.is_normal(text)
                held = p.template_id in excluded  # unconfirmed by the training review, or confirmed anomalous
                flag = (s > threshold and not exact or held) and p.template_id not in refuted
                v = verdicts[text, p.template_id] = LineVerdict(score=s, flag=bool(flag), exact=bool(exact))
            out.append(v)
        return out

    def learn_normal(self, masked_texts: Sequence[str], templates: Sequence[int] = (), index: bool = True,
                     defer: bool = False) -> None:
        """Normal lines, effective at once: they score 0 from now on. `templates`: never flag these ids.

        index=True also puts them in the similarity core set (train mode, refutations), so lines
        *like* them score lower too; with defer=True that waits for `index_pending` (the
        background encoder), and the caller never waits for the embedder.
        """
        texts = [t for t in dict.fromkeys(masked_texts) if t is not None]
        if texts:
            self.rapid.add_normal(texts, index=index, defer=defer)
        self.refuted_templates.update(int(t) for t in templates if t is not None)

    def new_texts(self, masked_texts: Sequence[str]) -> list[str]:
        """The distinct masked texts RAPID has neither as normal nor scored: what `score` or
        `learn_normal` would embed."""
        return self.rapid.unknown(list(masked_texts))

    def index_pending(self, limit: int | None = None) -> int:
        """Embed some deferred normal lines into RAPID's core set; how many (0: none left)."""
        return self.rapid.index_pending(limit)

    @property
    def n_unindexed(self) -> int:
        """Deferred normal lines not embedded yet (they score 0 already)."""
        return self.rapid.n_unindexed

    def memory_bytes(self) -> int:
        """About what the stream's model holds in memory: RAPID's core sets and caches, LogGPT's weights."""
        det = self._det
        weights = 0
        if det.loggpt is not None:
            weights = sum(p.numel() * p.element_size() for p in det.loggpt.net.parameters())
        return int(self.rapid.memory_bytes() + self.rapid_session.memory_bytes() + weights)

    def learn_normal_sessions(self, session_texts: Sequence[str]) -> None:
        """Normal windows/sessions (as `content_text`: trained or refuted): a window
        with the same content never flags again. Remembered word for word, not embedded."""
        texts = list(dict.fromkeys(session_texts))  # add_normal skips the ones it knows
        if texts:
            self.rapid_session.add_normal(texts, index=False)
            if self._contents is not None:
                for t in texts:
                    self._contents.add(t)

    def refute(self, line: str | None = None, template: int | None = None, scope: str = "line",
               windows: Sequence[Sequence[str]] = (), window_templates: Sequence[int] = ()) -> list[int]:
        """The feedback effect of an operator's "normal", at once: the masked `line` scores 0 from
        now on; with scope "template", its `template` never flags again; each refuted window
        (its masked lines) joins the normal session set, so the same content never flags again,
        and its lines join the normal lines: a session called normal holds normal lines.
        Templates the training review holds as unconfirmed answer "normal" too, when the refuted
        line or window holds them: the operator looked and said so. Returns those template ids.
        (Confirming an anomaly changes no detector: it becomes validation data for promotions.)"""
        from logsense.models.review import Review

        if windows:
            self.learn_normal_sessions([content_text(list(w)) for w in windows if len(w)])
        lines = list(dict.fromkeys([*([line] if line is not None else []), *(t for w in windows for t in w)]))
        if lines:
            self.learn_normal(lines)
        if scope == "template" and template is not None:
            self.learn_normal([], templates=[template])
        seen = [*([template] if template is not None and (line is not None or scope == "template") else []),
                *window_templates]
        confirmed = sorted({int(t) for t in seen if self.reviews.get(int(t)) == Review.UNCONFIRMED.value})
        for t in confirmed:
            self.reviews[t] = Review.NORMAL.value
        return confirmed

    def session_flags(self, contents: Sequence[set[str]]) -> list[bool] | None:
        """RAPID's verdict on sessions: flagged when the distinct masked lines so far fit inside
        no normal session's (a prefix of a normal session is not new). None while LogGPT is
        untrained (no normal set yet) or when the stream cuts count/time windows, whose content
        rarely repeats (their lines are judged one by one)."""
        if self._det.loggpt is None or self.config.session_regex is None:
            return None
        known = self._known_contents()
        return [not known.covers(c) for c in contents]

    def _known_contents(self) -> "_Contents":
        if self._contents is None:
            self._contents = _Contents()
            for text in [*self.rapid_session.normal_texts, *self.rapid_session.exact_texts]:
                self._contents.add(text)
        return self._contents

    def check(self, seqs: Sequence[Sequence[int]], sessions: Sequence[str] | None = None) -> list | None:
        """LogGPT top-K check per window: a list of `CheckResult`, or None while LogGPT is untrained.

        Misses on refuted templates are dropped; a window whose content is a known normal
        window's (trained or refuted) is normal.
        """
        det = self._det  # one consistent snapshot
        if det.loggpt is None:
            return None
        if not seqs:
            return []
        k = self.config.loggpt_top_k or det.k
        results = det.loggpt.check([list(s) for s in seqs], k=k)
        out = []
        for i, r in enumerate(results):
            misses = [m for m in r.misses if m.actual not in self.refuted_templates]
            if sessions is not None and self.rapid_session.is_normal(sessions[i]):
                misses = []
            out.append(_check_result(misses))
        return out

    def judge(self, windows: Sequence[ClosedWindow]) -> list[WindowVerdict] | None:
        """Closed windows -> verdicts, or None while LogGPT is untrained (the lines' RAPID verdicts
        are final then).

        A part of a session is judged with the session's earlier parts before it (`context_*`):
        LogGPT reads the whole session so far and only misses in this part count, its end key
        included (training saw each part with its context too, so a part that ends where parts
        of normal sessions end is no miss). Its content (the distinct masked lines so far) is new
        when it fits inside no normal session's content (a prefix of a normal session is not
        new). A window is anomalous when LogGPT misses a key or the content is new; its severity:
        danger when RAPID (the content, or a flagged line LogGPT missed) and LogGPT both flag,
        else watch."""
        from dataclasses import replace

        from logsense.models.policy import combine

        full = [list(w.context_seq) + list(w.seq) for w in windows]
        texts = [content_text(list(w.context_masked) + list(w.masked)) for w in windows]
        results = self.check(full, sessions=texts)
        if results is None:
            return None
        novel = self.session_flags([set(w.context_masked) | set(w.masked) for w in windows])
        out = []
        for i, (w, r) in enumerate(zip(windows, results)):
            offset, n = len(w.context_seq), len(w.seq)
            misses = [replace(m, position=m.position - offset) for m in r.misses if offset <= m.position <= offset + n]
            missed = list(dict.fromkeys(min(m.position, n - 1) for m in misses))  # the end key: the part's last line
            loggpt = bool(misses)
            new_content = bool(novel[i]) if novel is not None else None
            anomalous = loggpt or bool(new_content)
            severity = None
            if anomalous:
                flags = w.rapid_flags or [None] * n
                rapid = bool(new_content) or any(flags[p] for p in missed)
                severity = combine(rapid, loggpt)
            out.append(WindowVerdict(anomalous=anomalous, loggpt=loggpt, new_content=new_content,
                                     missed=missed, misses=misses, severity=severity))
        return out

    # ------------------------------------------------------------------ training

    def _loggpt_config(self):
        from logsense.models.loggpt import LogGPTConfig

        known = set(LogGPTConfig.__dataclass_fields__)
        unknown = sorted(set(self.config.loggpt) - known)
        if unknown:
            raise ValueError(f"unknown LogGPT settings {unknown}; known: {sorted(known)}")
        return LogGPTConfig(**self.config.loggpt)

    def evaluate(self, loggpt: Any, k: int, val_seqs: Sequence, anomaly_seqs: Sequence = ()) -> dict:
        """Validation metrics of a LogGPT at top-K: false-positive rate on normal windows,
        recall on confirmed anomalies (None when there are none)."""
        fpr = float(np.mean([r.anomalous for r in loggpt.check(list(val_seqs), k=k)])) if val_seqs else None
        recall = (
            float(np.mean([r.anomalous for r in loggpt.check(list(anomaly_seqs), k=k)])) if anomaly_seqs else None
        )
        return {"val_fpr": fpr, "anomaly_recall": recall, "k": int(k), "n_val": len(val_seqs),
                "n_anomalies": len(anomaly_seqs)}

    def _calibrated_k(self, loggpt: Any, val_seqs: Sequence) -> int:
        if self.config.loggpt_top_k:
            return int(self.config.loggpt_top_k)
        if not val_seqs:  # nothing to calibrate on: the most conservative K (only unseen templates miss)
            return int(loggpt.max_k())
        return int(loggpt.calibrate_k(list(val_seqs), target_fpr=self.config.loggpt_target_fpr))

    def _rebuild_rapid(self, data: TrainingData, progress: Progress | None) -> tuple[Any, float, dict]:
        """A new line core set from the training lines, its threshold calibrated on the held-back lines."""
        from logsense.models.rapid import RapidConfig, RapidScorer

        rapid = RapidScorer(self.embedder, RapidConfig(k=self.config.rapid_k))
        _report(progress, 0.05, "embedding normal lines for RAPID")
        while self.rapid.index_pending():  # ingest's deferred normals first: then nothing is embedded twice
            pass
        rapid.fit(list(dict.fromkeys(data.train_texts)), known=self.rapid)
        if data.val_texts:
            unique = list(dict.fromkeys(data.val_texts))
            by_text = dict(zip(unique, rapid.score(unique, reuse=self.rapid).tolist()))
            scores = np.array([by_text[t] for t in data.val_texts])
            threshold = threshold_at_rate(scores, self.config.rapid_target_fpr)
            fpr = float(np.mean(scores > threshold))
            rapid.absorb(self.rapid)  # the held-back lines are normal too: in the core set from now on
            rapid.add_normal(unique)  # (calibrated without them); any the live set lacks is embedded here
        else:
            threshold, fpr = self.rapid_threshold, None
        return rapid, threshold, {"rapid_threshold": threshold, "rapid_val_fpr": fpr,
                                  "rapid_core_set": len(rapid), "n_val_lines": len(data.val_texts)}

    def review(self, lines: Sequence) -> list:
        """The training review of these train-mode lines (`models.review.suspicious`): every
        suspicious template not answered yet becomes unconfirmed. Returns the items."""
        from logsense.models.review import Review, suspicious

        items = suspicious(lines, sessions=self.config.session_regex is not None)
        for item in items:
            self.reviews.setdefault(item.template_id, Review.UNCONFIRMED.value)
            if item.shape is not None:
                self.review_shapes[item.template_id] = tuple(item.shape)
        return items

    def answer_review(self, template_id: int, label: str) -> None:
        """An operator's answer: "normal" (learned like any template from the next training on,
        no longer flagged) or "anomaly" (flagged, trains nothing)."""
        from logsense.models.review import Review

        if label not in (Review.NORMAL.value, Review.ANOMALY.value):
            raise ValueError(f"label must be 'normal' or 'anomaly', not {label!r}")
        self.reviews[int(template_id)] = label

    def excluded_templates(self) -> set[int]:
        """Templates the training review holds back: unconfirmed or confirmed anomalous."""
        from logsense.models.review import Review

        return {t for t, status in self.reviews.items() if status != Review.NORMAL.value and t >= 0}

    def excluded_shapes(self) -> set[frozenset[int]]:
        """Session shapes the training review holds back: sessions of exactly these templates train nothing."""
        from logsense.models.review import Review

        return {frozenset(self.review_shapes[t]) for t, status in self.reviews.items()
                if t < 0 and status != Review.NORMAL.value and t in self.review_shapes}

    def calibration(self, n_val: int, val_fpr: float | None) -> dict:
        """Whether K could be set from this much validation data: it must hold
        `EXPECTED_FALSE_POSITIVES` false positives at the target rate, and the rate reached must
        be within one window of the target."""
        target = self.config.loggpt_target_fpr
        needed = math.ceil(EXPECTED_FALSE_POSITIVES / target)
        if self.config.loggpt_top_k:
            return {"holds": True, "needed": needed, "n_val": n_val, "note": "K fixed by the settings"}
        if n_val < needed:
            return {"holds": False, "needed": needed, "n_val": n_val,
                    "note": f"too little validation data: {n_val} held-back windows, {needed} needed to calibrate "
                            f"K at a {target:.1%} false-positive rate; post more lines in train mode"}
        if val_fpr is not None and val_fpr > target + 1.0 / n_val:
            return {"holds": False, "needed": needed, "n_val": n_val,
                    "note": f"no K reaches the target: validation FPR {val_fpr:.3f} against {target:.3f} "
                            f"(templates the training data never had)"}
        return {"holds": True, "needed": needed, "n_val": n_val, "note": f"validation FPR {val_fpr:.4f} at K"}

    def should_promote(self, candidate: Candidate) -> tuple[bool, str]:
        """The promotion rule: a first model only when its calibration holds; a retrain only when it
        validates no worse than the live model on the same validation data."""
        m = candidate.metrics
        cal = m.get("calibration") or {"holds": True, "note": ""}
        if not self.trained:
            return (True, "first model") if cal["holds"] else (False, cal["note"])
        fpr, live_fpr = m.get("val_fpr"), m.get("live_val_fpr")
        recall, live_recall = m.get("anomaly_recall"), m.get("live_anomaly_recall")
        if fpr is not None and live_fpr is not None and fpr > live_fpr + FPR_TOLERANCE:
            return False, f"validation FPR {fpr:.4f} worse than the live model's {live_fpr:.4f} on the same windows"
        if recall is not None and live_recall is not None and recall < live_recall:
            return False, f"recall on confirmed anomalies {recall:.3f} below the live model's {live_recall:.3f}"
        return True, "not worse than the live model on the same held-back normals and confirmed anomalies"

    def state(self, train_mode: bool) -> tuple[str, str]:
        """(learning | calibrating | detecting, why) for the API, the overview and /metrics."""
        if train_mode:
            return "learning", "train mode: lines are stored as normal training data, not scored"
        if self.trained:
            return "detecting", f"LogGPT version {self.version} at K={self.k}, RAPID threshold {self.rapid_threshold:.3f}"
        if self.calibration_note:
            return "calibrating", self.calibration_note
        return "learning", "no trained model yet: lines get RAPID's verdict against the normal lines seen so far"

    def fit_candidate(self, data: TrainingData, progress: Progress | None = None) -> Candidate:
        """Train LogGPT from scratch and rebuild RAPID; the live detectors are untouched."""
        from logsense.models.loggpt import LogGPT

        if not data.train_seqs:
            raise ValueError("no normal training windows: post lines in train mode first")
        start = time.perf_counter()
        rapid, threshold, rapid_metrics = self._rebuild_rapid(data, progress)
        _report(progress, 0.2, f"training LogGPT on {len(data.train_seqs)} windows")
        loggpt = LogGPT(self._loggpt_config())
        loggpt.fit([list(s) for s in data.train_seqs], [list(s) for s in data.val_seqs] or None,
                   sessions=self.config.session_regex is not None)
        _report(progress, 0.85, "calibrating top-K")
        k = self._calibrated_k(loggpt, data.val_seqs)
        metrics = {**self.evaluate(loggpt, k, data.val_seqs, data.anomaly_seqs), **rapid_metrics,
                   "n_train": len(data.train_seqs), "fit_seconds": round(time.perf_counter() - start, 2),
                   "mode": "train"}
        metrics["calibration"] = self.calibration(len(data.val_seqs), metrics["val_fpr"])
        metrics["target_fpr"] = self.config.loggpt_target_fpr
        if self._det.loggpt is not None:  # a retrain: the live model on the same validation data, beside it
            live = self.evaluate(self._det.loggpt, self.k or k, data.val_seqs, data.anomaly_seqs)
            metrics.update({f"live_{name}": value for name, value in live.items()})
        _report(progress, 0.95, "trained")
        return Candidate(loggpt=loggpt, k=k, rapid=rapid, rapid_threshold=threshold, metrics=metrics,
                         session_texts=list(data.session_texts))

    def fine_tune(self, data: TrainingData, progress: Progress | None = None) -> Candidate:
        """A copy of the live LogGPT fine-tuned on `data.train_seqs`, K re-calibrated; RAPID is kept.

        Its metrics sit beside the live model's on the same validation windows (`live_*`), so the
        caller can promote only a candidate that is not worse.
        """
        det = self._det
        if det.loggpt is None:
            raise ValueError("nothing to fine-tune: the stream has no trained LogGPT")
        start = time.perf_counter()
        _report(progress, 0.1, f"fine-tuning on {len(data.train_seqs)} windows")
        loggpt = det.loggpt.copy()
        loggpt.fine_tune([list(s) for s in data.train_seqs], [list(s) for s in data.val_seqs] or None)
        _report(progress, 0.8, "calibrating top-K")
        k = self._calibrated_k(loggpt, data.val_seqs)
        metrics = {**self.evaluate(loggpt, k, data.val_seqs, data.anomaly_seqs),
                   "n_train": len(data.train_seqs), "fit_seconds": round(time.perf_counter() - start, 2),
                   "mode": "fine_tune", "rapid_threshold": self.rapid_threshold}
        metrics["calibration"] = self.calibration(len(data.val_seqs), metrics["val_fpr"])
        metrics["target_fpr"] = self.config.loggpt_target_fpr
        live = self.evaluate(det.loggpt, self.k or k, data.val_seqs, data.anomaly_seqs)
        metrics.update({f"live_{name}": value for name, value in live.items()})
        return Candidate(loggpt=loggpt, k=k, rapid=None, rapid_threshold=self.rapid_threshold, metrics=metrics,
                         session_texts=list(data.session_texts))

    def promote(self, candidate: Candidate, version: int | None = None) -> None:
        """Make a candidate live. A rebuilt RAPID keeps every normal the live one learned meanwhile."""
        if candidate.rapid is not None:
            live = self.rapid
            candidate.rapid.absorb(live)
            self.rapid = candidate.rapid
        if self.config.session_regex is not None:  # count/time windows rarely repeat: only refuted ones are kept
            self.learn_normal_sessions(candidate.session_texts)
            self.has_trained_sessions = True
        self._det = _Detector(loggpt=candidate.loggpt, k=int(candidate.k),
                              rapid_threshold=float(candidate.rapid_threshold), version=version)
        self.calibration_note = None

    def adopt(self, candidate: Candidate, version: int | None = None) -> tuple[bool, str]:
        """Promote a candidate if `should_promote` says so; a first model kept back leaves its reason
        as the stream's state (`calibrating`). Its metrics get `promoted` and `reason`."""
        promote, reason = self.should_promote(candidate)
        if promote:
            self.promote(candidate, version)
        elif not self.trained:
            self.calibration_note = reason
        candidate.metrics.update({"promoted": promote, "reason": reason})
        return promote, reason

    def train(self, data: TrainingData, progress: Progress | None = None, version: int | None = None) -> dict:
        """Fit and `adopt`; returns the validation metrics with `promoted` and `reason`."""
        candidate = self.fit_candidate(data, progress)
        self.adopt(candidate, version)
        return candidate.metrics

    # ------------------------------------------------------------------ disk

    def _meta(self) -> dict:
        det = self._det
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": asdict(self.config),
            "k": det.k,
            "rapid_threshold": det.rapid_threshold,
            "model_version": det.version,
            "refuted_templates": sorted(self.refuted_templates),
            "has_trained_sessions": self.has_trained_sessions,
            "calibration_note": self.calibration_note,
            "reviews": {str(t): v for t, v in sorted(self.reviews.items())},
            "review_shapes": {str(t): list(v) for t, v in sorted(self.review_shapes.items())},
        }

    def save_parser(self, path: str | os.PathLike) -> None:
        """Only the parser (Drain3 templates): cheap, done whenever new templates appear."""
        with self._parse_lock:
            self.parser.save(Path(path))

    def save(self, path: str | os.PathLike, parts: Sequence[str] = ("parser", "rapid")) -> None:
        """Write the stream's live state to directory `path`: parser/, rapid/, rapid_session/ and
        stream.json (written last). Every piece is replaced atomically on its own. The LogGPT
        lives in version directories (`save_version`)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if "parser" in parts:
            self.save_parser(path / "parser")
        if "rapid" in parts:
            self.rapid.save(path / "rapid")
            self.rapid_session.save(path / "rapid_session")
        _write_json(path / "stream.json", self._meta())

    def save_version(self, path: str | os.PathLike, candidate: Candidate, version: int) -> None:
        """Write one trained LogGPT with its K, RAPID threshold and metrics to directory `path`
        (loggpt.pt, then version.json last: a directory with version.json is complete)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        candidate.loggpt.save(path / "loggpt.pt")  # written to a temporary name and renamed
        _write_json(path / "version.json", {
            "format": FORMAT + ".version", "version": VERSION, "model_version": int(version),
            "k": int(candidate.k), "rapid_threshold": float(candidate.rapid_threshold),
            "metrics": candidate.metrics,
        })

    @classmethod
    def load(cls, path: str | os.PathLike, embedder: Any, config: StreamConfig | None = None) -> "StreamModel":
        """Read what `save` wrote (missing pieces start empty). `config` overrides the saved one.
        The LogGPT is not loaded here: call `use_version` with the live version's directory."""
        from logsense.models.parsing import LogParser
        from logsense.models.rapid import RapidScorer

        path = Path(path)
        meta = json.loads((path / "stream.json").read_text())
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"{path}: not a {FORMAT} v{VERSION} directory")
        model = cls(config or StreamConfig(**meta["config"]), embedder)
        if (path / "parser").exists():
            loaded = LogParser.load(path / "parser")
            if model._parser_key == StreamConfig(**meta["config"]).parser_key():
                model.parser = loaded
            else:  # settings changed since: new header/mask/session parts, the same templates
                model.parser.miner = loaded.miner
        if (path / "rapid" / "config.json").exists():
            model.rapid = RapidScorer.load(path / "rapid", embedder)
            model.rapid.config.k = model.config.rapid_k
        if (path / "rapid_session" / "config.json").exists():
            model.rapid_session = RapidScorer.load(path / "rapid_session", embedder)
        model.refuted_templates = set(meta.get("refuted_templates", []))
        model.has_trained_sessions = bool(meta.get("has_trained_sessions", False))
        model.calibration_note = meta.get("calibration_note")
        model.reviews = {int(t): v for t, v in (meta.get("reviews") or {}).items()}
        model.review_shapes = {int(t): tuple(v) for t, v in (meta.get("review_shapes") or {}).items()}
        model._det = _Detector(rapid_threshold=meta.get("rapid_threshold"))
        return model

    def use_version(self, path: str | os.PathLike) -> None:
        """Make the LogGPT, K and RAPID threshold saved in `path` (by `save_version`) live: rollback,
        restart. The parser and the RAPID core sets stay: what was learned since is kept."""
        from logsense.models.loggpt import LogGPT

        path = Path(path)
        meta = json.loads((path / "version.json").read_text())
        if meta.get("format") != FORMAT + ".version":
            raise ValueError(f"{path}: not a {FORMAT}.version directory")
        loggpt = LogGPT.load(path / "loggpt.pt")
        self._det = _Detector(loggpt=loggpt, k=meta.get("k"), rapid_threshold=meta.get("rapid_threshold"),
                              version=meta.get("model_version"))
