"""Every detector behind one small interface, so the benchmark can run them side by side.

An *item* is what gets a verdict: an HDFS session, a BGL line, or a window of lines. Each
adapter sees only `Items` (template ids, masked lines, levels), never a label.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from logsense.models.bench.baselines.deeplog import DeepLog, DeepLogConfig
from logsense.models.bench.baselines.floors import SeverityRule
from logsense.models.bench.baselines.iforest import IForestDetector
from logsense.models.loggpt import LogGPT, LogGPTConfig
from logsense.models.rapid import RapidScorer, session_text


@dataclass
class Items:
    """What the detectors may see of each item, in time order. No labels here."""

    seqs: list[list[int]]  # template ids, one per line
    masked: list[list[str]]  # masked lines
    levels: list[list[str | None]]  # level of each line
    lines: list[list[int]]  # indices of the item's lines in the data set

    def __len__(self) -> int:
        return len(self.seqs)

    def take(self, idx) -> "Items":
        idx = [int(i) for i in idx]
        return Items([self.seqs[i] for i in idx], [self.masked[i] for i in idx], [self.levels[i] for i in idx], [self.lines[i] for i in idx])

    @property
    def n_lines(self) -> int:
        return sum(len(s) for s in self.seqs)

    def top_levels(self) -> list[str | None]:
        """One level per item: the most severe of its lines (for the ensemble's gate)."""
        from logsense.models.policy import SEVERE_LEVELS

        out = []
        for levels in self.levels:
            severe = [lvl for lvl in levels if (lvl or "").upper() in SEVERE_LEVELS]
            out.append(severe[0] if severe else (levels[0] if levels else None))
        return out


@dataclass
class Part:
    """Base adapter: fit on normal training items, score items (higher = more anomalous)."""

    name: str
    fit_seconds: float = 0.0
    info: dict = field(default_factory=dict)
    rule: bool = False  # a fixed rule (score > 0 flags): its threshold is never calibrated nor oracle-picked

    def fit(self, train: Items, val: Items | None = None) -> None:  # pragma: no cover - interface
        """`val`: validation normals, for parts that stop training early on them (never test items)."""
        raise NotImplementedError

    def score(self, items: Items) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def refute(self, items: Items) -> None:
        """Operator feedback: these items are normal. Parts that cannot learn at once ignore it."""

    def timed_fit(self, train: Items, val: Items | None = None) -> None:
        start = time.perf_counter()
        self.fit(train, val)
        self.fit_seconds = time.perf_counter() - start


class FloorPart(Part):
    """UnseenTemplate / UnseenSession over template ids: rules, flagged when the score is above 0."""

    def __init__(self, name: str, detector):
        super().__init__(name, rule=True)
        self.detector = detector

    def fit(self, train: Items, val: Items | None = None) -> None:
        self.detector.fit(train.seqs)

    def score(self, items: Items) -> np.ndarray:
        return np.asarray(self.detector.score(items.seqs), dtype=np.float64)

    def refute(self, items: Items) -> None:
        for seq in items.seqs:
            self.detector.add_normal(seq)


class SeverityPart(Part):
    """The grep for severe levels, as a rule: every severe line flags, whatever validation says."""

    def __init__(self):
        super().__init__("severity_rule", rule=True)
        self.detector = SeverityRule()

    def fit(self, train: Items, val: Items | None = None) -> None:
        self.detector.fit(train.levels)

    def score(self, items: Items) -> np.ndarray:
        return np.asarray(self.detector.score(items.levels), dtype=np.float64)


class IForestPart(Part):
    def __init__(self, seed: int = 0):
        super().__init__("iforest")
        self.detector = IForestDetector(seed=seed)

    def fit(self, train: Items, val: Items | None = None) -> None:
        self.detector.fit(train.seqs)

    def score(self, items: Items) -> np.ndarray:
        return np.asarray(self.detector.score(items.seqs), dtype=np.float64)


class SequencePart(Part):
    """LogGPT or DeepLog: the item's score is the worst rank of an actual next key.

    A threshold t on that score is the top-K rule with K = t + 1 (a key ranked K or lower is
    outside the top-K).
    """

    def __init__(self, name: str, model, sessions: bool):
        super().__init__(name)
        self.model = model
        self.sessions = sessions

    def fit(self, train: Items, val: Items | None = None) -> None:
        self.model.fit(train.seqs, val.seqs if val is not None and len(val) else None, sessions=self.sessions)
        self.info["vocab"] = len(self.model.vocab)

    def score(self, items: Items) -> np.ndarray:
        return np.asarray(self.model.scores(items.seqs), dtype=np.float64)

    def line_ranks(self, items: Items) -> list[np.ndarray]:
        """Rank of each line's key within its item (the end key, if any, dropped)."""
        ranks = self.model.ranks(items.seqs)
        return [np.asarray(r[: len(s)], dtype=np.float64) for r, s in zip(ranks, items.seqs)]


class RapidLinePart(Part):
    """RAPID per line; an item's score is its worst line."""

    def __init__(self, embedder, k: int = 5, name: str = "rapid", index_feedback: bool = True):
        super().__init__(name)
        from logsense.models.rapid import RapidConfig

        self.scorer = RapidScorer(embedder, RapidConfig(k=k))
        self.index_feedback = index_feedback

    def fit(self, train: Items, val: Items | None = None) -> None:
        self.scorer.fit(sorted({m for lines in train.masked for m in lines}))
        self.info["core_set"] = len(self.scorer)

    def line_scores(self, items: Items) -> list[np.ndarray]:
        unique = sorted({m for lines in items.masked for m in lines})
        by_text = dict(zip(unique, self.scorer.score(unique))) if unique else {}
        return [np.array([by_text[m] for m in lines], dtype=np.float64) for lines in items.masked]

    def score(self, items: Items) -> np.ndarray:
        return np.array([s.max() if len(s) else 0.0 for s in self.line_scores(items)])

    def refute(self, items: Items) -> None:
        self.scorer.add_normal(sorted({m for lines in items.masked for m in lines}), index=self.index_feedback)


class RapidSessionPart(Part):
    """RAPID over a whole session as one text (its unique masked lines), as RAPID does for HDFS."""

    def __init__(self, embedder, k: int = 5, index_feedback: bool = True):
        super().__init__("rapid_session")
        from logsense.models.rapid import RapidConfig

        self.scorer = RapidScorer(embedder, RapidConfig(k=k))
        self.index_feedback = index_feedback

    def fit(self, train: Items, val: Items | None = None) -> None:
        self.scorer.fit(sorted({session_text(lines) for lines in train.masked}))
        self.info["core_set"] = len(self.scorer)

    def score(self, items: Items) -> np.ndarray:
        return np.asarray(self.scorer.score([session_text(lines) for lines in items.masked]), dtype=np.float64)

    def refute(self, items: Items) -> None:
        self.scorer.add_normal([session_text(lines) for lines in items.masked], index=self.index_feedback)


def make_sequence_models(quick: bool, seed: int, rl_steps: int = 0) -> tuple[LogGPT, DeepLog]:
    """LogGPT and DeepLog with the benchmark's configs (smaller and shorter with `quick`)."""
    gpt = LogGPTConfig(seed=seed, rl_steps=rl_steps)
    lstm = DeepLogConfig(seed=seed) if "seed" in DeepLogConfig.__dataclass_fields__ else DeepLogConfig()
    if quick:
        gpt.max_epochs, gpt.n_layer, gpt.n_embd = 3, 1, 32
        lstm.max_epochs = 3
    return LogGPT(gpt), DeepLog(lstm)
