"""Combine the RAPID and LogGPT verdicts into a severity: danger, watch or normal.

Both flag: danger. One flags: watch. None: normal. "Anomalous" means danger or watch.

Known content comes first. A window or session whose content (`models.rapid.session_text`, its
unique masked lines) is exactly that of a known normal one (a training session, or a refuted
window) is not flagged by LogGPT: its misses are still reported, they raise no severity. This
is RAPID's "an exact match with a known normal scores 0" at LogGPT's own unit; the server
applies the same rule (`models.stream.StreamModel.check`). Its cost: an anomaly that only reorders or repeats the events of a known
normal session cannot be caught. On HDFS it costs nothing measured (no anomaly in the hdfs-2pct
test part has a known text; on hdfs-100k LogGPT catches none of the 45 that do), and it removes
LogGPT's false alarms on rare-but-known sessions (re-replication: a rare key ranks outside any
top-K a validation budget allows). Thresholds are calibrated as for the strict OR; the rule only
takes flags away, so the false-positive budget holds with it. The benchmark prints the strict OR,
without the rule, beside.

Two policies, chosen from the stream's own training data, never from labels:

- ``calibrated`` (the default): every part has a threshold, and the thresholds are calibrated
  *together* so that danger-or-watch stays within the false-positive budget on validation
  normals. An OR of parts each at 1% would cost several percent; at a 2-3% anomaly rate that
  sinks precision.
- ``gated``: for streams whose training data logs severe levels (FATAL, ERROR, ...), only a
  severe line can raise an alert, and RAPID answers "is this masked text known normal?"
  (threshold 0: exact lookup). No threshold is calibrated here: on such streams the budget is
  usually unattainable (normal-but-novel severe lines are common), and a threshold at 1% sits
  above every alert so that nothing is flagged and feedback never starts. The operator's
  refutations are the calibration; the benchmark reports the validation false-positive rate it
  actually reaches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from logsense.models.policy import SEVERE_LEVELS, combine, severity, threshold_at_fpr  # noqa: F401 (re-exported)

RAPID_PARTS = ("rapid", "rapid_session")  # parts that count as "RAPID flags"
LOGGPT_PARTS = ("loggpt",)  # parts that count as "LogGPT flags"


@dataclass
class EnsembleConfig:
    target_fpr: float = 0.01  # budget for danger-or-watch together, on validation normals
    policy: str = "calibrated"  # "calibrated" or "gated" (see choose_policy)
    gate_levels: tuple[str, ...] = SEVERE_LEVELS  # levels that pass the gate (policy "gated")
    grid: int = 400  # how finely the common per-part rate is searched


def choose_policy(train_levels: list[str | None]) -> str:
    """'gated' when the stream's training data has severe-level lines, else 'calibrated'.

    A stream that never logs at a severe level (HDFS: INFO and WARN only) cannot be gated:
    its anomalies are INFO lines in unusual places.
    """
    severe = set(SEVERE_LEVELS)
    return "gated" if any((lvl or "").upper() in severe for lvl in train_levels) else "calibrated"


def calibrate_jointly(
    val_normal_scores: dict[str, np.ndarray],
    target_fpr: float,
    fixed: dict[str, float] | None = None,
    grid: int = 400,
    eligible: np.ndarray | None = None,
) -> dict[str, float]:
    """Per-part thresholds such that the OR of the parts flags <= target_fpr of validation normals.

    The free parts are held at one common per-part rate ``a``; the largest ``a`` whose OR (with
    the ``fixed`` parts, whose flags count against the same budget) stays within the budget wins.
    When the fixed parts alone overspend it, the free parts flag no validation normal at all.
    ``eligible`` marks the items that can be flagged at all (the severity gate); the others
    never spend the budget and do not drag a threshold down.
    Takes validation *normal* scores only: no labels, no test data.
    Returns {part: threshold}; a part flags when its score > threshold.
    """
    fixed = dict(fixed or {})
    arrays = {n: np.asarray(s, dtype=np.float64) for n, s in val_normal_scores.items()}
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError("every part needs one score per validation normal item, and at least one item")
    size = sizes.pop()
    eligible = np.ones(size, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    base = np.zeros(size, dtype=bool)
    for n, t in fixed.items():
        if n in arrays:
            base |= (arrays[n] > t) & eligible
    free = {n: a for n, a in arrays.items() if n not in fixed}

    def at_rate(n: str, rate: float) -> float:
        a = free[n]
        pool = a[eligible]
        if pool.size == 0:  # nothing can be flagged: any threshold at the top is as good
            return float(a.max())
        return threshold_at_fpr(pool, min(1.0, rate * size / pool.size))

    best = {n: at_rate(n, 0.0) for n in free}
    for rate in np.linspace(0.0, target_fpr, grid + 1):
        thresholds = {n: at_rate(n, float(rate)) for n in free}
        flagged = base.copy()
        for n, t in thresholds.items():
            flagged |= (free[n] > t) & eligible
        if flagged.mean() <= target_fpr:
            best = thresholds
    return {n: float(t) for n, t in {**fixed, **best}.items() if n in arrays}


@dataclass
class Ensemble:
    """Thresholds per part plus the policy; `decide` turns part scores into severities."""

    config: EnsembleConfig = field(default_factory=EnsembleConfig)
    thresholds: dict[str, float] = field(default_factory=dict)
    reference: dict[str, np.ndarray] = field(default_factory=dict)  # sorted val-normal scores

    def calibrate(
        self,
        val_normal_scores: dict[str, np.ndarray],
        fixed: dict[str, float] | None = None,
        levels: list[str | None] | None = None,
    ) -> dict[str, float]:
        """Set the thresholds from validation normal scores (and keep them for `score`).

        ``fixed`` thresholds (e.g. LogGPT's own K) are kept as given and count against the same
        budget; under the gated policy RAPID is an exact lookup (threshold 0) and only items that
        pass the gate (``levels``) can spend the budget. The known-normal rule plays no part
        here: it only takes LogGPT flags away (`flags`), so the budget holds with it too.
        """
        fixed = dict(fixed or {})
        gate = None
        if self.config.policy == "gated":
            fixed.setdefault("rapid", 0.0)
            fixed.setdefault("rapid_session", 0.0)
            gate = self._gate(levels)  # items outside the gate can never be flagged
        self.reference = {n: np.sort(np.asarray(s, dtype=np.float64)) for n, s in val_normal_scores.items()}
        self.thresholds = calibrate_jointly(val_normal_scores, self.config.target_fpr, fixed, self.config.grid, gate)
        return self.thresholds

    def flags(self, scores: dict[str, np.ndarray], levels: list[str | None] | None = None,
              known: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per part: does it flag each item? Under the gated policy only severe items can; LogGPT
        never flags a ``known`` item."""
        out = {n: np.asarray(s, dtype=np.float64) > self.thresholds[n] for n, s in scores.items() if n in self.thresholds}
        if self.config.policy == "gated":
            gate = self._gate(levels)
            out = {n: f & gate for n, f in out.items()}
        if known is not None:
            known = np.asarray(known, dtype=bool)
            out = {n: f & ~known if n in LOGGPT_PARTS else f for n, f in out.items()}
        return out

    def _gate(self, levels: list[str | None] | None) -> np.ndarray:
        if levels is None:
            raise ValueError("the gated policy needs each item's level")
        return np.array([(lvl or "").upper() in self.config.gate_levels for lvl in levels], dtype=bool)

    def decide(self, scores: dict[str, np.ndarray], levels: list[str | None] | None = None,
               known: np.ndarray | None = None) -> np.ndarray:
        """Severity per item from the part scores (``known``: see `flags`)."""
        f = self.flags(scores, levels, known)
        n = len(next(iter(scores.values())))
        rapid = np.zeros(n, dtype=bool)
        loggpt = np.zeros(n, dtype=bool)
        for name, flag in f.items():
            if name in RAPID_PARTS:
                rapid |= flag
            elif name in LOGGPT_PARTS:
                loggpt |= flag
        return severity(rapid, loggpt)

    def score(self, scores: dict[str, np.ndarray], levels: list[str | None] | None = None,
              known: np.ndarray | None = None) -> np.ndarray:
        """A continuous ensemble score for PR curves: the highest per-part validation-normal
        quantile (how unusual each part finds the item, on a common scale), gated like `decide`."""
        n = len(next(iter(scores.values())))
        out = np.zeros(n, dtype=np.float64)
        for name, s in scores.items():
            ref = self.reference.get(name)
            if ref is None or len(ref) == 0:
                continue
            s = np.asarray(s, dtype=np.float64)
            q = np.searchsorted(ref, s, side="left") / len(ref)  # share of val normals strictly below
            q = q + 1e-6 * np.tanh(s)  # break ties above the reference's top by the raw score
            if known is not None and name in LOGGPT_PARTS:
                q = np.where(np.asarray(known, dtype=bool), 0.0, q)
            out = np.maximum(out, q)
        if self.config.policy == "gated":
            out = out * self._gate(levels)
        return out
