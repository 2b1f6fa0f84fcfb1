"""Floors: rules with no learning beyond "have I seen this before?".

Every learned detector must beat these; if it does not, the learning adds nothing. Each takes
items (template-id sequences or level lists), never labels, and scores 1.0 (anomalous) or 0.0.
`add_normal` is the operator's refutation: what was flagged is now known normal, at once.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from logsense.models.policy import SEVERE_LEVELS

TemplateSeq = Sequence[int | None]  # one template id per line; None = no template matched


class UnseenTemplate:
    """Flags an item that contains a template id never seen in training (None counts as unseen)."""

    def __init__(self) -> None:
        self.known: set[int] = set()

    def fit(self, train_seqs: Iterable[TemplateSeq]) -> "UnseenTemplate":
        """Remember every template id of the (normal) training items; forgets earlier fits."""
        self.known = {t for seq in train_seqs for t in seq if t is not None}
        return self

    def score(self, seqs: Iterable[TemplateSeq]) -> np.ndarray:
        """(n_items,) float64: 1.0 where some id of the item is unknown, else 0.0."""
        known = self.known
        return np.array([float(any(t is None or t not in known for t in seq)) for seq in seqs], dtype=np.float64)

    def add_normal(self, seq: TemplateSeq) -> None:
        """Operator feedback: the item is normal, so its ids are known from now on."""
        self.known.update(t for t in seq if t is not None)


class UnseenSession:
    """Flags an item whose *set* of template ids never occurred in training (order and counts ignored)."""

    def __init__(self) -> None:
        self.known: set[frozenset] = set()

    def fit(self, train_seqs: Iterable[TemplateSeq]) -> "UnseenSession":
        """Remember the set of ids of every (normal) training item; forgets earlier fits."""
        self.known = {frozenset(seq) for seq in train_seqs}
        return self

    def score(self, seqs: Iterable[TemplateSeq]) -> np.ndarray:
        """(n_items,) float64: 1.0 where the item's id set is new, else 0.0.

        A set containing None (an unmatched line) is new unless that exact set was refuted.
        """
        known = self.known
        return np.array([float(frozenset(seq) not in known) for seq in seqs], dtype=np.float64)

    def add_normal(self, seq: TemplateSeq) -> None:
        """Operator feedback: this id set is normal from now on."""
        self.known.add(frozenset(seq))


class SeverityRule:
    """Flags an item with any line at a severe level (FATAL, FAILURE, SEVERE, CRITICAL, ERROR, PANIC).

    What a grep for ERROR does; on HDFS (INFO/WARN only) it never fires, on BGL it catches many
    alerts and many normal FATAL lines alike. It cannot learn: `fit` and `add_normal` do nothing.
    """

    def __init__(self, levels: Iterable[str] = SEVERE_LEVELS) -> None:
        self.levels = frozenset(lvl.upper() for lvl in levels)

    def fit(self, train_levels: object = None) -> "SeverityRule":
        """No-op, kept so every floor has the same interface."""
        return self

    def score(self, levels_per_item: Iterable[Sequence[str | None]]) -> np.ndarray:
        """(n_items,) float64: 1.0 where any level (case-insensitive) is severe, else 0.0."""
        severe = self.levels
        out = []
        for levels in levels_per_item:
            if levels is None or isinstance(levels, str):  # one line's level given bare: an item of one line
                levels = [levels]
            out.append(float(any(lvl is not None and lvl.upper() in severe for lvl in levels)))
        return np.array(out, dtype=np.float64)

    def add_normal(self, levels: object = None) -> None:
        """No-op: a rule on levels cannot be taught that one ERROR line is fine."""
