"""Lines into windows and sessions: the one set of cutting rules, for the server and the benchmark.

The server keeps open windows in its database and the benchmark's live replay keeps them in a
dict; both hand `assign` the open windows a batch touches and persist what it answers, so a
window is cut the same way wherever a line is judged.

- A line with session keys joins the open session of every key. A session closes when a line of
  its key arrives more than `idle_timeout_seconds` after its newest line (log time: the line's
  timestamp, else its arrival), when it holds `max_session_lines`, and when `idle` finds it
  quiet for that long while the stream's log time moved on.
- A line without keys, in a stream without `session_regex`, joins the stream's one open window,
  which closes at `window_size` lines, when a line's `window_seconds` bucket is later than the
  window's, or after the idle timeout as above.
- In a session stream, a line without a key is in no window: its RAPID verdict is final.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

MAX_SESSION_LINES = 1000  # a session this long is closed and a new one opened for the same key
HELD_BACK_EVERY = 5  # one window in five (by key) never trains LogGPT: calibration and validation
PLAIN = ""  # the open-window key of a stream's count or time window


class Kind(str, Enum):
    SESSION = "session"
    COUNT = "count"
    TIME = "time"


class CloseReason(str, Enum):
    IDLE = "idle"  # no line for idle_timeout_seconds of log time
    FULL = "full"  # window_size lines, or a session at max_session_lines
    BUCKET = "bucket"  # a line of a later time bucket arrived
    FLUSH = "flush"  # closed on request (or at the end of a replay)


@dataclass
class WindowSpec:
    """How a stream cuts windows (the server maps its StreamSettings to this)."""

    sessions: bool = False  # the stream has a session_regex: keyless lines are in no window
    window_size: int | None = 20  # lines per count window (without sessions)
    window_seconds: float | None = None  # seconds per time window, by log time (without sessions)
    idle_timeout_seconds: float = 300.0  # a window closes after this long without a line
    max_session_lines: int = MAX_SESSION_LINES


@dataclass
class OpenWindow:
    """An open window as `assign` sees it. `ref`: the caller's id (a database id, or a counter);
    a window `assign` opens has ref None until the caller stores it and fills it in."""

    key: str
    kind: str
    n_lines: int = 0
    last_ts: float = -math.inf  # log time of its newest line
    ref: int | None = None


@dataclass
class LineSlot:
    """What cutting needs of one line."""

    timestamp: float | None  # epoch seconds from the line, None: the arrival time is used
    sessions: Sequence[str] = ()


@dataclass
class Assignment:
    """What one batch did: `members` are (window, position, index of the line in the batch), in
    order; `opened` the windows it created (ref None), `closed` the ones it closed with why."""

    members: list[tuple[OpenWindow, int, int]] = field(default_factory=list)
    opened: list[OpenWindow] = field(default_factory=list)
    closed: list[tuple[OpenWindow, str]] = field(default_factory=list)
    touched: dict[int, OpenWindow] = field(default_factory=dict)  # id() -> window whose n_lines or last_ts moved
    clock: float | None = None  # the batch's newest log time


def log_time(timestamp: float | None, arrival: float) -> float:
    return timestamp if timestamp is not None and math.isfinite(timestamp) else arrival


def is_quiet(last_ts: float, now: float, spec: WindowSpec) -> bool:
    """The idle rule, in one place: quiet when its newest line is older than now - idle timeout."""
    return last_ts < now - spec.idle_timeout_seconds


def is_held_back(key: str) -> bool:
    """Held-back windows never train LogGPT: K, the RAPID threshold and promotions are judged on
    them. Chosen by key, so a stream and its replay hold back the same windows."""
    return zlib.crc32(key.encode("utf-8", "replace")) % HELD_BACK_EVERY == 0


def _bucket(spec: WindowSpec, t: float) -> int | None:
    return None if spec.window_seconds is None else int(t // spec.window_seconds)


def assign(open_windows: dict[str, OpenWindow], slots: Sequence[LineSlot], spec: WindowSpec, arrival: float,
           first_line_id: Iterable[int] | None = None) -> Assignment:
    """Cut one batch of lines. `open_windows`: key -> open window, for at least every key of the
    batch (and PLAIN, the stream's open count/time window, if any); it is updated in place.
    `first_line_id`: each line's stored id (a count window's key names its first line)."""
    out = Assignment()
    ids = list(first_line_id) if first_line_id is not None else list(range(len(slots)))
    clock = None
    for i, slot in enumerate(slots):
        t = log_time(slot.timestamp, arrival)
        clock = t if clock is None else max(clock, t)
        if slot.sessions:
            for key in dict.fromkeys(slot.sessions):
                w = open_windows.get(key)
                if w is not None and is_quiet(w.last_ts, t, spec):
                    _close(open_windows, out, key, CloseReason.IDLE)
                    w = None
                if w is not None and w.n_lines >= spec.max_session_lines:
                    _close(open_windows, out, key, CloseReason.FULL)
                    w = None
                if w is None:
                    w = _open(open_windows, out, key, Kind.SESSION.value)
                _add(out, w, i, t)
        elif not spec.sessions:
            w = open_windows.get(PLAIN)
            bucket = _bucket(spec, t)
            if w is not None and is_quiet(w.last_ts, t, spec):
                _close(open_windows, out, PLAIN, CloseReason.IDLE)
                w = None
            if w is not None and bucket is not None and w.key.startswith("time:") and bucket > int(w.key[5:]):
                _close(open_windows, out, PLAIN, CloseReason.BUCKET)
                w = None
            if w is None:
                if bucket is not None:
                    w = _open(open_windows, out, PLAIN, Kind.TIME.value, f"time:{bucket}")
                else:
                    w = _open(open_windows, out, PLAIN, Kind.COUNT.value, f"line:{ids[i]}")
            _add(out, w, i, t)
            if spec.window_size is not None and w.n_lines >= spec.window_size:
                _close(open_windows, out, PLAIN, CloseReason.FULL)
    out.clock = clock
    return out


def _open(open_windows: dict[str, OpenWindow], out: Assignment, slot: str, kind: str, key: str | None = None) -> OpenWindow:
    w = OpenWindow(key=key if key is not None else slot, kind=kind)
    open_windows[slot] = w
    out.opened.append(w)
    return w


def _add(out: Assignment, w: OpenWindow, line: int, t: float) -> None:
    out.members.append((w, w.n_lines, line))
    w.n_lines += 1
    w.last_ts = max(w.last_ts, t)
    out.touched[id(w)] = w


def _close(open_windows: dict[str, OpenWindow], out: Assignment, slot: str, reason: CloseReason) -> None:
    out.closed.append((open_windows.pop(slot), reason.value))


def quiet(open_windows: dict[str, OpenWindow], now: float, spec: WindowSpec) -> list[OpenWindow]:
    """Close (remove and return) every open window quiet at log time `now` (the newest line of
    the batch just cut): the sweep that ends sessions whose key never comes back."""
    gone = [slot for slot, w in open_windows.items() if is_quiet(w.last_ts, now, spec)]
    return [open_windows.pop(slot) for slot in gone]
