"""The parse helper process gives exactly what in-process parsing gives, and never loses a chunk."""

from __future__ import annotations

from pathlib import Path

import pytest

from logsense.models.parsing import LogParser
from logsense.models.parsing import helper as helper_mod
from logsense.models.parsing.helper import PrepareHelper

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _lines(name: str, n: int = 1200) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()[:n]


def _bgl_messages() -> list[str]:  # Loghub BGL: the first field is the label, which no parser sees
    return [line.split(" ", 1)[1] for line in _lines("bgl_small.log")]


@pytest.fixture
def helper():
    h = PrepareHelper()
    yield h
    h.close()


def _via_helper(h: PrepareHelper, parser: LogParser, lines: list[str], chunk: int = 250) -> list:
    out = []
    for part, prepared in h.prepare(parser, lines, chunk):
        out.extend(parser.finish_many(part, prepared))
    return out


@pytest.mark.parametrize("make", [
    lambda: (LogParser(preset="hdfs", session_regex=r"blk_-?\d+"), _lines("hdfs_small.log")),
    lambda: (LogParser(preset="bgl"), _bgl_messages()),
    lambda: (LogParser(preset="generic", mask_rules=[("core", r"core\.\d+", "<CORE>"), "num"],
                       session_regex=r"(?P<key>R\d\d-M\d)"), _bgl_messages()),
])
def test_helper_parses_like_the_server_process(helper, make):
    here, lines = make()
    there, _ = make()
    expected = here.parse_many(lines)
    got = _via_helper(helper, there, lines)
    assert got == expected
    assert there.miner.templates() == here.miner.templates()  # same ids, same texts


def test_a_dead_helper_costs_no_line(helper, monkeypatch):
    parser, lines = LogParser(preset="hdfs", session_regex=r"blk_-?\d+"), _lines("hdfs_small.log", 600)
    expected = LogParser(preset="hdfs", session_regex=r"blk_-?\d+").parse_many(lines)
    helper._proc.kill()
    helper._proc.wait()
    assert _via_helper(helper, parser, lines) == expected  # parsed in this process
    assert not helper.alive()
    monkeypatch.setattr(helper_mod, "RESTART_AFTER", 0.0)
    old = helper.pid
    again = LogParser(preset="hdfs", session_regex=r"blk_-?\d+")
    assert _via_helper(helper, again, lines) == expected
    assert helper.alive() and helper.pid != old  # started again


def test_stopping_early_leaves_no_stale_answer(helper):
    hdfs = _lines("hdfs_small.log", 1000)
    parser = LogParser(preset="hdfs", session_regex=r"blk_-?\d+")
    for _part, _prepared in helper.prepare(parser, hdfs, 100):
        break  # the other nine answers are still on their way
    bgl = LogParser(preset="bgl")
    messages = _bgl_messages()[:300]
    assert _via_helper(helper, bgl, messages) == LogParser(preset="bgl").parse_many(messages)


def test_a_busy_helper_is_not_waited_for(helper):
    parser, lines = LogParser(preset="bgl"), _bgl_messages()[:300]
    expected = LogParser(preset="bgl").parse_many(lines)
    with helper._lock:  # another thread's batch holds it
        assert _via_helper(helper, parser, lines) == expected


def test_answers_larger_than_a_pipe_arrive_whole(helper):
    parser = LogParser(preset="hdfs", session_regex=r"blk_-?\d+")
    lines = [line + " padding" * 200 for line in _lines("hdfs_small.log", 1000)]  # ~1.7 MB answers a pipe splits
    got = _via_helper(helper, parser, lines, chunk=1000)
    assert got == LogParser(preset="hdfs", session_regex=r"blk_-?\d+").parse_many(lines)
    assert helper.counts == {"helper": 1, "server": 1, "fallback": 0}
