"""The training review: what train mode learned that looks like an incident rather than normal.

Train mode learns whatever arrives, and real history holds incidents. Before a stream trains,
`suspicious` lists the templates of its training windows that look like one: seen in very few
windows or sessions, logged at a severe level, or arriving as a burst. Until an operator calls
such a template normal, it stays *unconfirmed*: its lines keep being flagged, and the windows
that hold it train nothing (`StreamModel.excluded_templates`). One click per template settles it.

In a session stream an incident can also be made of common lines only: sessions that stop after
their first two lines hold no rare template, but their *shape* (the set of templates a session
holds) is rare. Such a shape is an item of its own, named by a negative id (`shape_id`); until
answered, the sessions of exactly that shape train nothing (`StreamModel.excluded_shapes`).
"""

from __future__ import annotations

import bisect
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from logsense.models.policy import SEVERE_LEVELS

RARE_SHARE = 0.01  # a template in fewer than this share of the training windows is rare...
RARE_MIN_WINDOWS = 3  # ...or in fewer than this many
BURST_MIN_LINES = 50  # a burst: at least this many lines of one template...
BURST_SHARE = 0.8  # ...this share of which fall within...
BURST_SPAN = 0.02  # ...this share of the training period...
BURST_DOMINANCE = 0.6  # ...where they are at least this share of all the lines (one thing drowns the rest)...
BURST_SESSIONS = 0.05  # ...and, in a session stream, in fewer than this share of the sessions (one place, not a phase)


class Review(str, Enum):
    UNCONFIRMED = "unconfirmed"  # suspicious, not answered yet: flagged, trains nothing
    NORMAL = "normal"  # an operator said normal: learned like any other template
    ANOMALY = "anomaly"  # an operator said anomaly: flagged, trains nothing


@dataclass
class ReviewItem:
    """One suspicious template of the training data, with what an operator needs to judge it."""

    template_id: int
    reasons: list[str]
    n_lines: int
    n_windows: int
    first_ts: float | None
    last_ts: float | None
    example: str  # a masked line (a shape: its first session's lines)
    levels: dict[str, int] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None  # a session shape's template ids (template_id is then shape_id(shape))


def shape_id(shape: Sequence[int]) -> int:
    """The review id of a session shape: negative, so it never names a template, and stable."""
    text = ",".join(str(t) for t in sorted(set(shape)))
    return -1 - (zlib.crc32(text.encode()) & 0x7FFFFFFF)


def session_shapes(windows: Sequence) -> dict[str, frozenset[int]]:
    """Each key's shape over all its windows (`models.stream.ClosedWindow`): the templates it holds."""
    shapes: dict[str, set[int]] = {}
    for w in windows:
        shapes.setdefault(w.key, set()).update(t for t in [*w.context_seq, *w.seq] if t is not None and t >= 0)
    return {k: frozenset(v) for k, v in shapes.items()}


@dataclass
class TrainingLine:
    """What the review reads of one train-mode line."""

    template_id: int
    masked: str
    level: str | None
    timestamp: float | None
    window: str  # the key of its window or session


def training_lines(windows: Sequence) -> list[TrainingLine]:
    """The lines of closed training windows (`models.stream.ClosedWindow`), each with its window's key."""
    out = []
    for w in windows:
        n = len(w.seq)
        levels = w.levels or [None] * n
        stamps = w.timestamps or [None] * n
        out += [TrainingLine(t, m, lv, ts, w.key) for t, m, lv, ts in zip(w.seq, w.masked, levels, stamps)]
    return out


def suspicious(lines: Sequence[TrainingLine], sessions: bool = False) -> list[ReviewItem]:
    """Templates of the training data that look like incidents, most suspicious first.
    `sessions`: the windows are sessions (a burst then also keeps to few of them: a phase of
    the system that every session goes through, such as deleting its blocks, is no incident)."""
    by_template: dict[int, list[TrainingLine]] = {}
    for line in lines:
        by_template.setdefault(line.template_id, []).append(line)
    n_windows = len({line.window for line in lines})
    stamps = sorted(line.timestamp for line in lines if line.timestamp is not None and math.isfinite(line.timestamp))
    period = (stamps[-1] - stamps[0]) if stamps else 0.0
    rare_below = max(RARE_MIN_WINDOWS, RARE_SHARE * n_windows)
    items = []
    for tid, group in by_template.items():
        if tid is None or tid < 0:
            continue
        windows = {line.window for line in group}
        levels: dict[str, int] = {}
        for line in group:
            if line.level:
                levels[line.level] = levels.get(line.level, 0) + 1
        reasons = []
        if len(windows) < rare_below:
            reasons.append(f"rare: in {len(windows)} of {n_windows:,} training windows or sessions")
        severe = sorted(lv for lv in levels if lv.upper() in SEVERE_LEVELS)
        if severe:
            reasons.append(f"severe level: {', '.join(severe)}")
        times = sorted(line.timestamp for line in group if line.timestamp is not None and math.isfinite(line.timestamp))
        few_places = not sessions or len(windows) < BURST_SESSIONS * n_windows
        if len(times) >= BURST_MIN_LINES and period > 0 and few_places:
            start, end, k = _tightest(times)
            among = bisect.bisect_right(stamps, end) - bisect.bisect_left(stamps, start)
            if end - start <= BURST_SPAN * period and k >= BURST_DOMINANCE * among:
                reasons.append(f"burst: {k:,} of its {len(times):,} lines within {end - start:,.0f} s, "
                               f"{k / among:.0%} of all lines then")
        if reasons:
            items.append(ReviewItem(template_id=int(tid), reasons=reasons, n_lines=len(group), n_windows=len(windows),
                                    first_ts=times[0] if times else None, last_ts=times[-1] if times else None,
                                    example=group[0].masked, levels=levels))
    if sessions:
        items += _rare_shapes(lines, {it.template_id for it in items}, n_windows, rare_below)
    return sorted(items, key=lambda it: (it.n_windows, -len(it.reasons), it.template_id))


def _rare_shapes(lines: Sequence[TrainingLine], suspicious_ids: set[int], n_sessions: int,
                 rare_below: float) -> list[ReviewItem]:
    """Session shapes held by fewer than `rare_below` sessions, made of templates that are not
    suspicious themselves (a shape with a suspicious template is held back through it)."""
    by_key: dict[str, list[TrainingLine]] = {}
    for line in lines:
        by_key.setdefault(line.window, []).append(line)
    by_shape: dict[frozenset[int], list[list[TrainingLine]]] = {}
    for group in by_key.values():
        shape = frozenset(line.template_id for line in group if line.template_id is not None and line.template_id >= 0)
        if shape and not shape & suspicious_ids:
            by_shape.setdefault(shape, []).append(group)
    items = []
    for shape, groups in by_shape.items():
        if len(groups) >= rare_below:
            continue
        times = sorted(line.timestamp for g in groups for line in g
                       if line.timestamp is not None and math.isfinite(line.timestamp))
        ordered = tuple(sorted(shape))
        items.append(ReviewItem(
            template_id=shape_id(ordered), shape=ordered, n_lines=sum(len(g) for g in groups), n_windows=len(groups),
            reasons=[f"rare session shape: {len(groups)} of {n_sessions:,} sessions hold exactly templates "
                     f"{', '.join(map(str, ordered))}"],
            first_ts=times[0] if times else None, last_ts=times[-1] if times else None,
            example=" | ".join(line.masked for line in groups[0][:8])))
    return items


def _tightest(times: Sequence[float]) -> tuple[float, float, int]:
    """(start, end, k): the shortest span of (sorted) `times` that holds k = `BURST_SHARE` of them."""
    k = max(2, int(BURST_SHARE * len(times)))
    i = min(range(len(times) - k + 1), key=lambda j: times[j + k - 1] - times[j])
    return times[i], times[i + k - 1], k
