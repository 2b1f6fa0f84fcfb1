"""models.windowing: the cutting rules the server and the live replay share."""

from __future__ import annotations

from logsense.models.windowing import (
    PLAIN,
    LineSlot,
    OpenWindow,
    WindowSpec,
    assign,
    is_held_back,
    quiet,
)

SESSIONS = WindowSpec(sessions=True, window_size=None, idle_timeout_seconds=60)


def _keys(cut) -> list[tuple[str, int, int]]:
    return [(w.key, pos, line) for w, pos, line in cut.members]


def test_a_line_after_the_idle_timeout_in_log_time_opens_a_new_session():
    open_windows: dict[str, OpenWindow] = {}
    cut = assign(open_windows, [LineSlot(0.0, ("a",)), LineSlot(30.0, ("a",)), LineSlot(91.0, ("a",))], SESSIONS, 0.0)
    assert [w.key for w, reason in cut.closed] == ["a"] and cut.closed[0][1] == "idle"
    assert [(w.n_lines, w.last_ts) for w, _ in cut.closed] == [(2, 30.0)]
    assert open_windows["a"].n_lines == 1 and len(cut.opened) == 2
    # exactly the timeout is not quiet: only older than now - idle is
    cut = assign(open_windows, [LineSlot(151.0, ("a",))], SESSIONS, 0.0)
    assert cut.closed == [] and open_windows["a"].n_lines == 2


def test_the_sweep_closes_quiet_sessions_of_other_keys():
    open_windows: dict[str, OpenWindow] = {}
    assign(open_windows, [LineSlot(0.0, ("a",)), LineSlot(10.0, ("b",))], SESSIONS, 0.0)
    cut = assign(open_windows, [LineSlot(65.0, ("c",))], SESSIONS, 0.0)
    assert cut.clock == 65.0
    assert [w.key for w in quiet(open_windows, cut.clock, SESSIONS)] == ["a"]
    assert set(open_windows) == {"b", "c"}


def test_lines_without_timestamps_use_the_arrival_time_and_keyless_lines_are_in_no_session():
    open_windows: dict[str, OpenWindow] = {}
    cut = assign(open_windows, [LineSlot(None, ("a",)), LineSlot(None, ())], SESSIONS, 500.0)
    assert open_windows["a"].last_ts == 500.0 and _keys(cut) == [("a", 0, 0)]


def test_a_full_session_goes_on_in_a_new_window_and_a_line_joins_every_key():
    spec = WindowSpec(sessions=True, window_size=None, max_session_lines=2)
    open_windows: dict[str, OpenWindow] = {}
    cut = assign(open_windows, [LineSlot(1.0, ("a",)), LineSlot(2.0, ("a", "b", "a")), LineSlot(3.0, ("a",))], spec, 0.0)
    assert _keys(cut) == [("a", 0, 0), ("a", 1, 1), ("b", 0, 1), ("a", 0, 2)]
    assert [(w.key, reason) for w, reason in cut.closed] == [("a", "full")]


def test_count_and_time_windows():
    count = WindowSpec(window_size=3)
    open_windows: dict[str, OpenWindow] = {}
    cut = assign(open_windows, [LineSlot(float(t), ()) for t in range(7)], count, 0.0, first_line_id=range(10, 17))
    assert [w.key for w, _ in cut.closed] == ["line:10", "line:13"] and open_windows[PLAIN].key == "line:16"
    timed = WindowSpec(window_size=None, window_seconds=10.0, idle_timeout_seconds=1000)
    open_windows = {}
    cut = assign(open_windows, [LineSlot(t, ()) for t in (1.0, 9.0, 12.0, 35.0)], timed, 0.0)
    assert [(w.key, w.n_lines, reason) for w, reason in cut.closed] == [("time:0", 2, "bucket"), ("time:1", 1, "bucket")]
    assert open_windows[PLAIN].key == "time:3"


def test_held_back_is_a_property_of_the_key():
    keys = [f"blk_{i}" for i in range(2000)]
    share = sum(map(is_held_back, keys)) / len(keys)
    assert 0.15 < share < 0.25
    assert [is_held_back(k) for k in keys] == [is_held_back(k) for k in keys]
