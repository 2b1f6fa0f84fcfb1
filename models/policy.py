"""The product's one severity rule and its one calibration rule.

Every place that turns detector flags into a severity (ingest's instant verdict, the worker's
window check, feedback, the benchmark's live replay) calls `combine` or `severity` here, and
every threshold or K the product sets from data comes from `threshold_at_fpr` on normal scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum

import numpy as np

TARGET_FPR = 0.01  # the default false-positive budget of every calibration (RAPID threshold, LogGPT K)
SEVERE_LEVELS = ("FATAL", "FAILURE", "SEVERE", "CRITICAL", "ERROR", "PANIC")
# An anomaly of a template an operator confirmed as an incident joins that incident (confirmed, no
# new queue item) while the incident goes on: its newest anomaly, or the confirmation, is younger
# than this. The queue groups anomalies into incidents with the same gap.
INCIDENT_GAP_SECONDS = 300.0


class Severity(str, Enum):
    """A line's verdict. `train`: stored as training data in train mode, never scored."""

    TRAIN = "train"
    NORMAL = "normal"
    WATCH = "watch"  # one of RAPID and LogGPT flags it
    DANGER = "danger"  # both do


FLAGGED = (Severity.WATCH.value, Severity.DANGER.value)


def combine(rapid_flag: bool | None, loggpt_flag: bool | None) -> str:
    """One item's severity: danger when both flag, watch when one does, normal otherwise.
    A flag that is None (not checked yet) counts as not flagged."""
    if rapid_flag and loggpt_flag:
        return Severity.DANGER.value
    return Severity.WATCH.value if rapid_flag or loggpt_flag else Severity.NORMAL.value


def severity(rapid_flag: np.ndarray, loggpt_flag: np.ndarray) -> np.ndarray:
    """`combine` over arrays."""
    rapid_flag = np.asarray(rapid_flag, dtype=bool)
    loggpt_flag = np.asarray(loggpt_flag, dtype=bool)
    out = np.full(rapid_flag.shape, Severity.NORMAL.value, dtype=object)
    out[rapid_flag ^ loggpt_flag] = Severity.WATCH.value
    out[rapid_flag & loggpt_flag] = Severity.DANGER.value
    return out


def threshold_at_fpr(normal_scores: Sequence[float] | np.ndarray, target_fpr: float = TARGET_FPR) -> float:
    """The smallest observed score t such that at most ``target_fpr`` of ``normal_scores`` are > t.

    A detector flags when score > t. Pass the scores of validation items known to be normal; there
    is deliberately no labels argument, so a threshold chosen here cannot depend on which test
    items are anomalous. "At most" is exact: at most floor(target_fpr * n) of the n scores exceed
    t, ties included (if 99.5% of the scores are 0 and the budget is 1%, t = 0). With
    ``target_fpr=0``, t is the largest score: no validation normal is flagged.
    Raises ValueError on an empty input, NaN scores or a budget outside [0, 1].
    """
    scores = np.sort(np.asarray(normal_scores, dtype=np.float64).ravel())
    if scores.size == 0:
        raise ValueError("threshold_at_fpr needs at least one normal score")
    if np.isnan(scores).any():
        raise ValueError("threshold_at_fpr: scores contain NaN")
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}")
    n = scores.size
    allowed = math.floor(target_fpr * n + 1e-9)  # how many normals may lie above t
    values = np.unique(scores)  # ascending candidates
    above = n - np.searchsorted(scores, values, side="right")  # non-increasing in t
    ok = np.nonzero(above <= allowed)[0]  # never empty: the largest value has 0 above
    return float(values[ok[0]])


def line_severity(current: str, label: str | None, rapid_flag: bool | None, loggpt_flag: bool | None) -> str:
    """A stored line's severity once its windows are checked: an operator's "normal" stands,
    train-mode data stays `train`, the rest is `combine` of its two flags."""
    if label == "normal":
        return Severity.NORMAL.value
    if current == Severity.TRAIN.value:
        return Severity.TRAIN.value
    return combine(rapid_flag, loggpt_flag)
