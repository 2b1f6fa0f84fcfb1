"""Sessions and windows: how lines are grouped into the sequences LogGPT reads.

With a session regex a line belongs to the session of every distinct key the regex finds in
its message (an HDFS line can name two blocks). Without one, lines are cut into count windows
or time windows, and these helpers say which item indices go together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from logsense.models.parsing.userregex import compile_user

MAX_KEYS = 100  # keys kept per line: a pathological line must not open thousands of sessions
MAX_KEY_LENGTH = 255  # longer keys are cut (the server stores keys of at most 255 characters)


class SessionKeyer:
    """`keys(message)`: every distinct match of `regex` in order of first appearance.

    The key is the group named `key` or `session` if the regex has one, else its only capturing
    group if it has exactly one, else the whole match. No regex: no keys. Keys come from the
    UNMASKED message (masking would turn every block id into `<BLK>`). The regex is the
    operator's: it runs on RE2 (`userregex`), in time linear in the message's length.
    """

    def __init__(self, regex: str | None, max_keys: int = MAX_KEYS):
        self.regex = regex
        self.max_keys = max_keys
        self._pattern = compile_user(regex, "session_regex") if regex else None
        self._group = 0  # the group whose text is the key
        if self._pattern is not None:
            names = self._pattern.groupindex
            if "key" in names or "session" in names:
                self._group = names["key" if "key" in names else "session"]
            elif self._pattern.groups == 1:
                self._group = 1

    def keys(self, message: str) -> list[str]:
        """Distinct keys in order of first appearance (empty matches skipped; of a line with
        hundreds of matches, those of the first `userregex.MAX_SEARCHES` searches)."""
        if self._pattern is None or not message:
            return []
        found = self._pattern.findall(message, self._group)
        if len(found) < 2:  # the hot path: no key, or one (most HDFS lines)
            return [found[0][:MAX_KEY_LENGTH]] if found and found[0] else []
        out = list(dict.fromkeys(k[:MAX_KEY_LENGTH] for k in found if k))
        return out[: self.max_keys]


def count_windows(n_items: int, size: int, step: int | None = None) -> list[range]:
    """Windows of `size` items starting every `step` (default: `size`, i.e. tumbling).

    The last, partial window is included; sliding stops at the first window that reaches the
    end (later ones would be its suffixes). `count_windows(5, 2, 2)` -> [0:2, 2:4, 4:5].
    """
    step = size if step is None else step
    if size < 1 or step < 1:
        raise ValueError(f"size and step must be >= 1 (got size={size}, step={step})")
    out: list[range] = []
    for start in range(0, max(int(n_items), 0), step):
        out.append(range(start, min(start + size, n_items)))
        if start + size >= n_items:
            break
    return out


def time_windows(timestamps: Sequence[float | None], seconds: float) -> list[range]:
    """Consecutive items whose timestamps fall in `[t0, t0 + seconds)`, t0 = the window's first timestamp.

    A None (or NaN) timestamp joins the current window. A timestamp that goes back less than
    `seconds` (clock jitter between threads) stays in the window; a bigger jump back starts a new one.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0 (got {seconds})")
    out: list[range] = []
    start = 0
    t0: float | None = None
    for i, t in enumerate(timestamps):
        if t is None or (isinstance(t, float) and math.isnan(t)):
            continue
        if t0 is None:
            t0 = t
        elif t >= t0 + seconds or t <= t0 - seconds:
            out.append(range(start, i))
            start, t0 = i, t
    if len(timestamps) > start:
        out.append(range(start, len(timestamps)))
    return out


def canonical_order(timestamps: Sequence[float | None], keys: Sequence[int | None]) -> list[int]:
    """Indices that put lines sharing one timestamp in key order; everything else stays as it came.

    Logs with coarse clocks (HDFS: whole seconds) do not say in which order the lines of one tick
    happened, and a file sorted by time often breaks those ties by the raw text (the pid, say).
    A next-key model would learn that noise. Ordering each run of equal, consecutive timestamps
    by template id makes the sequence depend on what happened, not on tie-breaking. Lines without
    a timestamp are never moved.
    """
    out: list[int] = []
    start, n = 0, len(timestamps)
    while start < n:
        end = start + 1
        ts = timestamps[start]
        if ts is not None:
            while end < n and timestamps[end] == ts:
                end += 1
        run = list(range(start, end))
        if len(run) > 1:
            run.sort(key=lambda i: (keys[i] is None, -1 if keys[i] is None else keys[i]))
        out.extend(run)
        start = end
    return out
