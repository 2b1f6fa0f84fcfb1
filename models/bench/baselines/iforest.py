"""Isolation Forest on template-count vectors: the classic unsupervised baseline (Loglizer style).

An item becomes a vector of how often each training template occurs in it, plus one column for
lines whose template was never seen in training (or matched none). Order is ignored, so this
cannot catch an anomaly that only reorders normal lines; it does catch odd mixes and counts.

A forest splits only along features that vary in its training data. The other/unseen column is
zero for every training item, so an unseen template alone does not raise the score (nor does
a count of a template that was constant in training): that is UnseenTemplate's job, a floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from sklearn.ensemble import IsolationForest


@dataclass
class IForestConfig:
    seed: int = 0  # random_state of the forest: same seed, same scores
    n_estimators: int = 100  # trees; sklearn's default
    max_samples: int | float | str = "auto"  # rows per tree: "auto" = min(256, n_items)
    max_features: float = 1.0  # fraction of columns per tree
    n_jobs: int | None = 1  # 1 keeps CI on 2 cores predictable


class IForestDetector:
    """`fit(train_seqs)` on normal items, `score(seqs)`: higher = more anomalous."""

    def __init__(self, seed: int = 0, n_estimators: int = 100, max_samples: int | float | str = "auto",
                 max_features: float = 1.0, n_jobs: int | None = 1) -> None:
        self.config = IForestConfig(seed, n_estimators, max_samples, max_features, n_jobs)
        self.columns: dict[int, int] = {}  # template id -> column; column len(columns) = other/unseen
        self.forest: IsolationForest | None = None

    @property
    def n_features(self) -> int:
        return len(self.columns) + 1

    def vectorize(self, seqs: Sequence[Sequence[int | None]]) -> np.ndarray:
        """(n_items, n_features) float64 counts; ids outside the training vocabulary go to the last column."""
        other = len(self.columns)
        rows: list[int] = []
        cols: list[int] = []
        for r, seq in enumerate(seqs):
            rows.extend([r] * len(seq))
            cols.extend(self.columns.get(t, other) if t is not None else other for t in seq)
        n, width = len(seqs), self.n_features
        flat = np.asarray(rows, dtype=np.int64) * width + np.asarray(cols, dtype=np.int64)
        return np.bincount(flat, minlength=n * width).astype(np.float64).reshape(n, width)

    def fit(self, train_seqs: Sequence[Sequence[int | None]]) -> "IForestDetector":
        """Learn the vocabulary and the forest from normal training items (replaces an earlier fit).

        Raises ValueError when there is no training item: a forest of nothing scores nothing.
        """
        train_seqs = list(train_seqs)
        if not train_seqs:
            raise ValueError("IForestDetector.fit needs at least one training item (got none)")
        ids = sorted({t for seq in train_seqs for t in seq if t is not None})
        self.columns = {t: c for c, t in enumerate(ids)}
        x = self.vectorize(train_seqs)
        cfg = self.config
        self.forest = IsolationForest(
            n_estimators=cfg.n_estimators,
            max_samples=cfg.max_samples,
            max_features=cfg.max_features,
            random_state=cfg.seed,
            n_jobs=cfg.n_jobs,
        ).fit(x)
        return self

    def score(self, seqs: Sequence[Sequence[int | None]]) -> np.ndarray:
        """(n_items,) float64 anomaly scores (sklearn's score_samples negated: higher = odder)."""
        if self.forest is None:
            raise RuntimeError("IForestDetector.score called before fit")
        seqs = list(seqs)
        if not seqs:
            return np.zeros(0, dtype=np.float64)
        return -self.forest.score_samples(self.vectorize(seqs)).astype(np.float64)
