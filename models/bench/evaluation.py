"""Splits, thresholds, metrics and the simulated operator.

The default protocol splits by time (train on the past, test on the future) and picks every
threshold from validation *normal* scores at a false-positive budget: `threshold_at_fpr` takes
no labels, so no test label can leak into it. `oracle_threshold` (best F1 on the labels it is
given) exists only to compare with papers, which pick thresholds that way; call its result an
oracle wherever it is printed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from logsense.models.policy import threshold_at_fpr  # noqa: F401 (the product's calibration rule; re-exported)

FRACTIONS = (0.6, 0.1, 0.3)  # train / validation / test


@dataclass
class Split:
    """Item indices of each part, each in time order (ascending order key)."""

    train: np.ndarray  # (n_train,) int64
    val: np.ndarray  # (n_val,) int64
    test: np.ndarray  # (n_test,) int64


def _cuts(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    """Boundaries round(n * f_train) and round(n * (f_train + f_val))."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    a = int(round(n * fractions[0]))
    b = int(round(n * (fractions[0] + fractions[1])))
    return a, max(a, min(b, n))


def chrono_split(order_keys: Sequence[float] | np.ndarray, fractions: Sequence[float] = FRACTIONS) -> Split:
    """Split items by time: the earliest 60% train, the next 10% validation, the latest 30% test.

    ``order_keys[i]`` orders item i in time: a session's first line index or timestamp, a line's
    own index. Ties keep the given order. No test item starts before a training item, so a model
    never learns from the future it is tested on (a random split leaks it).
    """
    keys = np.asarray(order_keys)
    order = np.argsort(keys, kind="stable").astype(np.int64)
    a, b = _cuts(len(order), fractions)
    return Split(order[:a], order[a:b], order[b:])


def random_split(n: int, fractions: Sequence[float] = FRACTIONS, seed: int = 0) -> Split:
    """The papers' protocol: a random partition of range(n). Each part is returned sorted, so that
    items stay in time order within it when indices follow time. Leaks the future into training."""
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    a, b = _cuts(n, fractions)
    return Split(np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:]))


def oracle_threshold(y_true: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """ORACLE: the threshold (flag when score > t) with the best F1 on the labels given.

    For the ``paper`` protocol only: it looks at test labels, which no deployed detector can.
    Ties go to the highest such threshold (fewest flags). Candidates are the observed scores and
    one value just below the lowest (flag everything).
    """
    y = np.asarray(y_true).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.size != s.size:
        raise ValueError(f"y_true has {y.size} items, scores {s.size}")
    if s.size == 0:
        raise ValueError("oracle_threshold needs at least one score")
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    cum_pos = np.concatenate([[0], np.cumsum(y)])  # positives among the i lowest scores
    positives = int(cum_pos[-1])
    candidates = np.concatenate([[np.nextafter(s[0], -np.inf)], np.unique(s)])
    below = np.searchsorted(s, candidates, side="right")  # items with score <= t
    tp = positives - cum_pos[below]
    flagged = s.size - below
    fp = flagged - tp
    fn = positives - tp
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    best = len(f1) - 1 - int(np.argmax(f1[::-1]))  # the highest threshold among the best
    return float(candidates[best])


def binary_metrics(y_true: Sequence[int] | np.ndarray, flagged: Sequence[bool] | np.ndarray) -> dict:
    """precision, recall, f1 (0.0 where undefined), tp, fp, fn, tn."""
    y = np.asarray(y_true).astype(bool).ravel()
    f = np.asarray(flagged).astype(bool).ravel()
    if y.size != f.size:
        raise ValueError(f"y_true has {y.size} items, flagged {f.size}")
    tp = int(np.sum(y & f))
    fp = int(np.sum(~y & f))
    fn = int(np.sum(y & ~f))
    tn = int(np.sum(~y & ~f))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def auprc(y_true: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Average precision (area under the precision-recall curve); NaN when only one class is present."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.size == 0 or y.min() == y.max():
        return float("nan")
    return float(average_precision_score(y, s))


def pr_curve(y_true: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) as sklearn's precision_recall_curve; empty arrays when there
    is no anomaly to find (the curve is undefined)."""
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.size == 0 or y.max() == 0:
        empty = np.zeros(0, dtype=np.float64)
        return empty, empty.copy(), empty.copy()
    precision, recall, thresholds = precision_recall_curve(y, s)
    return precision, recall, thresholds


def simulate_operator(
    labels: Sequence[int] | np.ndarray,
    is_flagged: Callable[[int], bool],
    refute: Callable[[int], None],
    confirm: Callable[[int], None] | None = None,
) -> dict:
    """Stream items 0..n-1 in the given (time) order past a detector and an operator who knows the truth.

    For each item i, ``is_flagged(i)`` asks the detector with everything it has learned so far.
    A flag is reviewed once (one click): a true normal is refuted with ``refute(i)``, which must
    teach the detector at once, before item i + 1; a true anomaly is confirmed with ``confirm(i)``.
    Unflagged items are never reviewed (the operator sees no misses). Returns the metrics of the
    flags raised (precision, recall, f1, tp, fp, fn, tn), ``clicks`` and ``flagged`` (n,) bool.
    """
    y = np.asarray(labels).astype(bool).ravel()
    flagged = np.zeros(y.size, dtype=bool)
    for i in range(y.size):
        if not is_flagged(i):
            continue
        flagged[i] = True
        if y[i]:
            if confirm is not None:
                confirm(i)
        else:
            refute(i)
    out = binary_metrics(y, flagged)
    out["clicks"] = int(flagged.sum())
    out["flagged"] = flagged
    return out


def protocol_text(
    protocol: str = "chrono",
    fractions: Sequence[float] = FRACTIONS,
    target_fpr: float = 0.01,
    seed: int = 0,
) -> str:
    """One line that states how a figure was made; print it beside every figure."""
    tr, va, te = (round(f * 100) for f in fractions)
    if protocol == "paper":
        return (
            f"protocol: paper: random split {tr}/{va}/{te} (seed {seed}), thresholds and K = best F1 on TEST labels "
            f"(oracle, for comparison with papers only)"
        )
    if protocol != "chrono":
        raise ValueError(f"unknown protocol {protocol!r}: 'chrono' or 'paper'")
    return (
        f"protocol: chrono: split by time {tr}/{va}/{te}, train on normal items of the first part only, "
        f"every threshold, K and g at <= {target_fpr:.0%} false positives on validation normals (no test labels)"
    )
