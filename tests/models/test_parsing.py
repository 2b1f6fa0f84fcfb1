"""models.parsing: headers, masking, template mining, sessions/windows, LogParser save/load."""

from __future__ import annotations

import gzip
import json
import os
import re
import time
from pathlib import Path

import pytest

from logsense.models.parsing import LogParser, ParsedLine
from logsense.models.parsing.headers import PRESETS, HeaderParser, parse_timestamp
from logsense.models.parsing.masking import DEFAULT_RULES, Masker
from logsense.models.parsing.miner import TemplateMiner
from logsense.models.parsing.sessions import SessionKeyer, count_windows, time_windows

DATA = Path(os.environ.get("LOGSENSE_DATASETS") or Path(__file__).resolve().parents[2].parent / "shared" / "datasets")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

HDFS_LINE = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating"
BGL_LINE = (
    "1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO "
    "instruction cache parity error corrected"
)
HOSTILE = ["", " ", "\x00\xff junk", "\x00" * 10, "a" * 100_000, "{not json", "[1, 2, 3]", "{}", '{"message": 5}',
           "null", "\ud800 lone surrogate", "2026-13-45T99:99:99Z ERROR x", "[" * 5000, "\n\r\n", "1" * 300]


# ----------------------------------------------------------------------------- headers


def test_hdfs_preset() -> None:
    h = HeaderParser("hdfs").parse(HDFS_LINE)
    assert h.timestamp == 1226262975.0  # 2008-11-09 20:36:15 UTC
    assert h.level == "INFO"
    assert h.component == "dfs.DataNode$PacketResponder"
    assert h.message == "PacketResponder 1 for block blk_38865049064139660 terminating"


def test_bgl_preset_without_label_field() -> None:
    h = HeaderParser("bgl").parse(BGL_LINE)
    assert (h.timestamp, h.level, h.component) == (1117838570.0, "INFO", "KERNEL")
    assert h.message == "instruction cache parity error corrected"
    fatal = BGL_LINE.replace("KERNEL INFO instruction", "APP FATAL ciod: failed")
    assert HeaderParser("bgl").parse(fatal).level == "FATAL"
    # with the label field left on, the preset does not fit: generic, whole line (nothing lost)
    labeled = HeaderParser("bgl").parse("- " + BGL_LINE)
    assert labeled.message == "- " + BGL_LINE and labeled.level is None


def test_syslog_preset() -> None:
    h = HeaderParser("syslog").parse("Nov 22 13:50:01 host sshd[123]: Accepted password for root")
    assert (h.component, h.message) == ("sshd", "Accepted password for root")
    assert h.timestamp is not None and abs(h.timestamp - time.time()) < 366 * 86400
    assert HeaderParser("syslog").parse("<11>Nov  2 03:04:05 myhost kernel: oops").level == "ERROR"  # 11 % 8 = 3
    iso = HeaderParser("syslog").parse("2026-11-22T13:50:01.5+01:00 host cron[5]: job done")
    assert iso.timestamp == pytest.approx(parse_timestamp("2026-11-22T12:50:01.5Z")) and iso.component == "cron"


@pytest.mark.parametrize(
    "line,ts,level,component,message",
    [
        ("2026-11-22T13:50:01.123Z ERROR [comp] msg here", "2026-11-22T13:50:01.123Z", "ERROR", "comp", "msg here"),
        ("2026-11-22 13:50:01,123 WARN something", "2026-11-22T13:50:01.123Z", "WARN", None, "something"),
        ("2026-11-22 13:50:01+02:00 [info] hi", "2026-11-22T11:50:01Z", "INFO", None, "hi"),
        ("2026-11-22T13:50:01-0500 just text", "2026-11-22T18:50:01Z", None, None, "just text"),
    ],
)
def test_iso8601_preset(line: str, ts: str, level: str | None, component: str | None, message: str) -> None:
    h = HeaderParser("iso8601").parse(line)
    assert h.timestamp == pytest.approx(parse_timestamp(ts))
    assert (h.level, h.component, h.message) == (level, component, message)


def test_json_preset() -> None:
    p = HeaderParser("json")
    h = p.parse('{"message": "hello 1", "level": "warn", "timestamp": "2026-11-22T13:50:01Z", "logger": "a.b"}')
    assert (h.message, h.level, h.component) == ("hello 1", "WARN", "a.b")
    assert h.timestamp == parse_timestamp("2026-11-22T13:50:01Z")
    h = p.parse('{"msg": "x", "lvl": 50, "ts": 1763819401123}')  # pino: numeric level, epoch ms
    assert (h.message, h.level, h.timestamp) == ("x", "ERROR", pytest.approx(1763819401.123))
    assert p.parse('{"log": "line\\n", "@timestamp": 1700000000}').message == "line"
    for odd in ("[1, 2]", "{bad", '"a string"'):  # not an object: generic, whole line
        assert p.parse(odd).message == odd


def test_generic_preset() -> None:
    p = HeaderParser("generic")
    h = p.parse("2026-11-22 13:50:01 ERROR [db] connection lost")
    assert (h.level, h.component, h.message) == ("ERROR", "db", "connection lost")
    assert h.timestamp == parse_timestamp("2026-11-22T13:50:01Z")
    h = p.parse("ERROR: disk full")
    assert (h.level, h.message) == ("ERROR", "disk full")
    assert p.parse("Error opening file").message == "Error opening file"  # a capitalized word is not a level
    assert p.parse("plain text line") == p.parse("plain text line")
    assert p.parse("plain text line").message == "plain text line" and p.parse("plain text line").timestamp is None


def test_custom_regex_and_fallback() -> None:
    p = HeaderParser(regex=r"(?P<date>\d{4}/\d{2}/\d{2}) (?P<time>\d{2}:\d{2}:\d{2}) <(?P<level>\w+)> (?P<message>.*)")
    h = p.parse("2026/11/22 13:50:01 <crit> disk on fire")
    assert (h.level, h.message) == ("CRIT", "disk on fire")
    assert h.timestamp == parse_timestamp("2026-11-22T13:50:01Z")
    assert p.parse("something else entirely").message == "something else entirely"
    with pytest.raises(ValueError):
        HeaderParser("nope")
    with pytest.raises(ValueError):
        HeaderParser(regex="(unclosed")


def test_parse_timestamp_formats() -> None:
    t = 1226262975.0
    assert parse_timestamp("081109 203615") == t
    assert parse_timestamp("2008-11-09T20:36:15Z") == t
    assert parse_timestamp("2008-11-09 21:36:15+01:00") == t
    assert parse_timestamp("2008-11-09-20.36.15.500000") == t + 0.5
    assert parse_timestamp("1226262975") == t and parse_timestamp("1226262975000") == t  # seconds, ms
    assert parse_timestamp("09/Nov/2008:21:36:15 +0100") == t
    for bad in (None, "", "2026-02-30 10:00:00", "nonsense", "9" * 40):
        assert parse_timestamp(bad) is None


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_hostile_lines_never_raise(preset: str) -> None:
    p = HeaderParser(preset)
    for line in HOSTILE + [b"\xff\xfe\x00 bytes", None]:
        h = p.parse(line)  # type: ignore[arg-type]
        assert isinstance(h.message, str)
    assert p.parse("\x00\xff junk").message == "\x00\xff junk"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_100kb_lines_are_fast(preset: str) -> None:
    p, m = HeaderParser(preset), Masker()
    lines = ["a" * 100_000, "a." * 50_000, "1 " * 50_000, "/a" * 50_000, "2026-11-22 13:50:01 " + "[x" * 50_000,
             "{" + '"a":1,' * 15_000 + "}", "http:" * 20_000, "0x" * 50_000, "INFO " * 20_000]
    start = time.perf_counter()
    for line in lines:
        m.mask(p.parse(line).message)
    assert time.perf_counter() - start < 0.5 * len(lines) / 3  # linear: a few ms each, never seconds


# ----------------------------------------------------------------------------- masking


@pytest.mark.parametrize(
    "rule,text,expected",
    [
        ("blk", "block blk_-1608999687919862906 and blk_42", "block <BLK> and <BLK>"),
        ("uuid", "job 123e4567-e89b-12d3-a456-426614174000 done", "job <UUID> done"),
        ("ip", "src: /10.250.19.102:54106 to 1.2.3.4.", "src: /<IP> to <IP>."),
        ("hex", "at 0x7fff12ab mask deadbeef12 word deadbeef", "at <HEX> mask <HEX> word deadbeef"),
        ("path", "open /mnt/hadoop/job.jar. and I/O", "open <PATH> and I/O"),
        ("num", "took 35 ms, x=-5, size 1.5 v2 a-5 R02", "took <NUM> ms, x=<NUM>, size <NUM> v2 a-5 R02"),
        ("url", "see https://example.com/a?b=1 now", "see <URL> now"),
    ],
)
def test_mask_presets(rule: str, text: str, expected: str) -> None:
    assert Masker([rule]).mask(text) == expected


def test_default_rules_order() -> None:
    m = Masker()
    assert m.mask("Receiving block blk_-1608 src: /10.250.19.102:54106 dest: /10.250.19.102:50010") == (
        "Receiving block <BLK> src: /<IP> dest: /<IP>"
    )
    assert m.mask("PacketResponder 1 for block blk_38865049064139660 terminating") == "PacketResponder <NUM> for block <BLK> terminating"
    assert m.mask("id 123e4567-e89b-12d3-a456-426614174000") == "id <UUID>"  # not <NUM>-<HEX>...
    assert [r[0] for r in Masker(None).rules] == list(DEFAULT_RULES)


def test_custom_rules_come_first() -> None:
    m = Masker(["num", ("job", r"job_\d+_\d+", "<JOB>"), {"name": "user", "regex": r"user=\w+", "replacement": "user=<U>"}])
    assert [r[0] for r in m.rules] == ["job", "user", "num"]
    assert m.mask("job_2008_0001 user=bob took 5") == "<JOB> user=<U> took <NUM>"
    assert Masker(["default"]).rules == Masker().rules
    assert Masker([]).mask("blk_1 10.0.0.1") == "blk_1 10.0.0.1"  # an empty list masks nothing
    with pytest.raises(ValueError, match="linear time"):  # a back-reference: RE2 cannot run it
        Masker([("dup", r"(a)\1", "<AA>")])
    with pytest.raises(ValueError):
        Masker(["no-such-preset"])
    with pytest.raises(ValueError):
        Masker([("bad", "(unclosed", "<X>")])


# ----------------------------------------------------------------------------- miner


def _train(miner: TemplateMiner) -> list[int]:
    texts = ["Receiving block <BLK> src: /<IP>", "Receiving block <BLK> src: /<IP>", "PacketResponder <NUM> terminating",
             "Deleting block <BLK> file <PATH>", "Deleting block <BLK> dir <PATH>", "connection from host alpha",
             "connection from host beta", ""]
    return [miner.add(t) for t in texts]


def test_miner_ids_and_templates() -> None:
    miner = TemplateMiner()
    ids = _train(miner)
    assert ids[0] == ids[1] == 1 and ids[2] == 2
    assert ids[5] == ids[6]  # alpha/beta generalized into one template, id kept
    assert miner.template(ids[5]) == "connection from host <*>"
    assert len(miner) == len(set(ids)) == len(miner.templates())
    with pytest.raises(KeyError):
        miner.template(999)


def test_match_never_learns() -> None:
    miner = TemplateMiner()
    _train(miner)
    before = (miner.templates(), len(miner))
    assert miner.match("a completely new kind of line") is None
    assert miner.match("connection from host gamma") == miner.add("connection from host beta")  # wildcard covers it
    assert miner.match("Receiving block <BLK> src: /<IP>") == 1
    assert (miner.templates(), len(miner)) == before


def test_miner_round_trip(tmp_path: Path) -> None:
    miner = TemplateMiner()
    ids = _train(miner)
    miner.save(tmp_path / "miner.json")
    text = (tmp_path / "miner.json").read_text()
    assert "py/object" not in text and json.loads(text)["format"] == "logsense.miner"
    assert not [p for p in tmp_path.iterdir() if p.name != "miner.json"]  # no temp file left behind
    loaded = TemplateMiner.load(tmp_path / "miner.json")
    assert loaded.templates() == miner.templates()
    probes = ["connection from host delta", "Deleting block <BLK> file <PATH>", "brand new line here", "PacketResponder <NUM> x"]
    assert [loaded.match(p) for p in probes] == [miner.match(p) for p in probes]
    loaded._cache.clear()  # the saved prefix tree alone gives the same ids
    assert [loaded.add(t) for t in ["Receiving block <BLK> src: /<IP>", "connection from host x"]] == [ids[0], ids[5]]
    new_a, new_b = loaded.add("never seen before at all"), miner.add("never seen before at all")
    assert new_a == new_b == max(ids) + 1  # a new template gets the next id on both sides


def test_miner_rebuilds_tree_without_saved_tree() -> None:
    miner = TemplateMiner()
    ids = _train(miner)
    state = miner.to_dict()
    del state["tree"]
    state["cache"] = []
    loaded = TemplateMiner.from_dict(state)
    assert loaded.match("Receiving block <BLK> src: /<IP>") == ids[0]
    assert loaded.add("connection from host zeta") == ids[5]
    with pytest.raises(ValueError):
        TemplateMiner.from_dict({"format": "something else"})
    with pytest.raises(ValueError):
        TemplateMiner.from_dict({**state, "version": 99})


def test_placeholders_are_parameters_not_shared_words() -> None:
    miner = TemplateMiner()
    # Short lines that share little but their masked values stay apart (bare Drain on the raw
    # values keeps them apart too): a placeholder is a parameter, not a word the lines share.
    a = miner.add("[instance: <UUID>] Terminating instance")
    b = miner.add("[instance: <UUID>] Claim successful")
    c, d = miner.add("Session <NUM> created"), miner.add("Session <NUM> destroyed")
    assert len({a, b, c, d}) == 4
    # Words still generalize: one differing word among shared ones is one template.
    e = miner.add("connection from <IP> port <NUM> closed by peer")
    assert miner.add("connection from <IP> port <NUM> reset by peer") == e
    assert miner.template(e) == "connection from <IP> port <NUM> <*> by peer"
    # `match` still covers placeholders by the same placeholder.
    assert miner.match("[instance: <UUID>] Terminating instance") == a
    miner._cache.clear()
    assert miner.match("connection from <IP> port <NUM> dropped by peer") == e
    assert miner.match("Session <NUM> created") == c


def test_miner_cache_is_bounded() -> None:
    miner = TemplateMiner(cache_size=100, saved_cache=10)
    for i in range(1000):
        miner.add(f"value {i} seen")
    assert len(miner._cache) <= 100 and len(miner.to_dict()["cache"]) == 10
    assert len(miner) == 1  # one template "value <*> seen"


# ----------------------------------------------------------------------------- sessions and windows


def test_session_keys() -> None:
    with pytest.raises(ValueError):
        SessionKeyer("(bad")
    k = SessionKeyer(r"blk_-?\d+")
    assert k.keys("Deleting blk_-12 and blk_34 and blk_-12 again") == ["blk_-12", "blk_34"]
    assert k.keys("no block here") == [] and k.keys("") == []
    assert SessionKeyer(None).keys("blk_1") == []
    assert SessionKeyer(r"req=(\w+)").keys("req=a req=b req=a") == ["a", "b"]  # one group: the group
    assert SessionKeyer(r"(?P<key>\d+)@(\w+)").keys("1@x 2@y") == ["1", "2"]
    assert len(SessionKeyer(r"k\d+").keys(" ".join(f"k{i}" for i in range(500)))) == 100  # capped


def test_count_windows() -> None:
    assert count_windows(5, 2, 2) == [range(0, 2), range(2, 4), range(4, 5)]
    assert count_windows(4, 2, 2) == [range(0, 2), range(2, 4)]
    assert count_windows(5, 3, 1) == [range(0, 3), range(1, 4), range(2, 5)]
    assert count_windows(2, 10, 10) == [range(0, 2)]
    assert count_windows(0, 3, 3) == []
    with pytest.raises(ValueError):
        count_windows(5, 0, 1)


def test_time_windows() -> None:
    assert time_windows([0, 1, 59.9, 60, 61, 200], 60) == [range(0, 3), range(3, 5), range(5, 6)]
    assert time_windows([None, 5, None, 70, None], 60) == [range(0, 3), range(3, 5)]
    assert time_windows([None, None], 60) == [range(0, 2)]
    assert time_windows([], 60) == []
    assert time_windows([100, 99, 500, 10], 60) == [range(0, 2), range(2, 3), range(3, 4)]  # jitter vs jump
    with pytest.raises(ValueError):
        time_windows([1], 0)


# ----------------------------------------------------------------------------- LogParser


def test_logparser_parse() -> None:
    parser = LogParser(preset="hdfs", session_regex=r"blk_-?\d+")
    p = parser.parse(HDFS_LINE)
    assert isinstance(p, ParsedLine)
    assert (p.raw, p.level, p.component) == (HDFS_LINE, "INFO", "dfs.DataNode$PacketResponder")
    assert p.masked == "PacketResponder <NUM> for block <BLK> terminating"
    assert p.sessions == ("blk_38865049064139660",)  # from the unmasked message
    assert p.template_id == 1 and len(parser.miner) == 1
    unknown = parser.parse("081109 203615 148 WARN dfs.X: something else happened here", learn=False)
    assert unknown.template_id is None and len(parser.miner) == 1
    assert [q.template_id for q in parser.parse_many([HDFS_LINE, HDFS_LINE], learn=False)] == [1, 1]
    for line in HOSTILE:
        assert isinstance(parser.parse(line).masked, str)


def test_logparser_save_load(tmp_path: Path) -> None:
    rules = [("job", r"job_\d+_\d+", "<JOB>"), "blk", "num"]
    parser = LogParser(preset="iso8601", mask_rules=rules, session_regex=r"req-\d+")
    lines = ["2026-11-22T13:50:01Z INFO req-1 started job_1_2 in 5 ms", "2026-11-22T13:50:02Z ERROR req-2 failed blk_7"]
    first = parser.parse_many(lines)
    parser.save(tmp_path / "p")
    assert sorted(x.name for x in (tmp_path / "p").iterdir()) == ["miner.json", "parser.json"]
    for f in (tmp_path / "p").iterdir():
        assert "py/object" not in f.read_text()
    loaded = LogParser.load(tmp_path / "p")
    assert loaded.config() == parser.config()
    again = loaded.parse_many(lines, learn=False)
    assert [(a.masked, a.template_id, a.sessions) for a in again] == [(a.masked, a.template_id, a.sessions) for a in first]
    assert first[0].masked == "req-1 started <JOB> in <NUM> ms"  # a number glued by "-" is part of a name
    # the miner can be carried into a parser with other settings (StreamModel.configure)
    fresh = LogParser(preset="generic", mask_rules=rules)  # the default masks would make req-2 an <ID>
    fresh.miner = loaded.miner
    assert fresh.parse(lines[1], learn=False).template_id == first[1].template_id


def test_a_saved_regex_this_version_refuses_is_dropped_and_the_templates_load(tmp_path: Path) -> None:
    parser = LogParser(preset="generic", mask_rules=[("job", r"job_\d+", "<JOB>"), "num"], session_regex=r"req-\d+")
    first = parser.parse("req-1 started job_7 in 5 ms")
    parser.save(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "parser.json").read_text())  # as an older version (Python's re) saved it
    meta["config"].update(session_regex=r"(req-\d+).*\1", mask_rules=[["job", r"job_(?=\d)\d+", "<JOB>"], "num"])
    (tmp_path / "p" / "parser.json").write_text(json.dumps(meta))
    loaded = LogParser.load(tmp_path / "p")
    assert loaded.session_regex is None and loaded.mask_rules is None  # the defaults
    assert loaded.miner.match(first.masked) == first.template_id  # the templates (and their ids) are kept


# ----------------------------------------------------------------------------- operator regexes on RE2

EVIL = "(a+)+$"  # Python's re: about 2**n steps on n `a`s and a `!`


def test_operator_regexes_run_in_linear_time() -> None:
    keyer = SessionKeyer(EVIL)
    header = HeaderParser(regex=f"(?P<message>{EVIL})")
    masker = Masker([("aaa", EVIL, "<A>"), "default"])
    polynomial = SessionKeyer(r"\d+\d+\d+x")  # cubic per start for a backtracker
    start = time.perf_counter()
    for n in (30, 40, 1000, 100_000):
        line = "a" * n + "!"
        assert keyer.keys(line) == [] and header.parse(line).message == line and masker.mask(line) == line
        assert keyer.keys("a" * n) == ["a" * min(n, 255)] and masker.mask("a" * n) == "<A>"
    assert polynomial.keys("1" * 5000) == []
    assert time.perf_counter() - start < 2  # a backtracker: minutes at n = 30, never done at 100 000


def test_a_line_with_many_matches_costs_a_bounded_number_of_searches() -> None:
    from logsense.models.parsing.userregex import MAX_SEARCHES

    # each search of `a.*b|a` scans to the end of the line: 64 k of them would take seconds
    line = "a" * 65_536
    start = time.perf_counter()
    assert SessionKeyer(r"a.*b|a").keys(line) == ["a"]
    masked = Masker([("a", r"a.*b|a", "<A>"), "num"]).mask(line + " 12")
    assert masked.count("<A>") == MAX_SEARCHES and masked.endswith("a <NUM>")  # the rest is left to the others
    assert Masker([("e", r"x*", "<E>"), "num"]).mask(line + " 12").endswith(" <NUM>")
    assert time.perf_counter() - start < 1
    keys = SessionKeyer(r"k\d+").keys(" ".join(f"k{i}" for i in range(1000)))
    assert keys == [f"k{i}" for i in range(100)]  # MAX_KEYS of them


@pytest.mark.parametrize("pattern,reason", [
    (r"(a)\1", "linear time"), (r"x(?=y)", "linear time"), (r"(?<!x)y", "linear time"), (r"(?>ab)", "linear time"),
    (r"a++", "linear time"), (r"end\Z", "linear time"), (r"a{2000}", "too large"), (r"a\Cb", "\\C"),
    (r"blk_(", "invalid regular expression"), (r"(?P<x", "invalid regular expression"),
])
def test_what_re2_cannot_run_is_refused_saying_why(pattern: str, reason: str) -> None:
    from logsense.models.settings import StreamSettings

    for build in (SessionKeyer, lambda p: HeaderParser(regex=p), lambda p: Masker([("m", p, "<M>")])):
        with pytest.raises(ValueError, match=re.escape(reason)):
            build(pattern)
    with pytest.raises(ValueError, match=re.escape(reason)):
        StreamSettings(session_regex=pattern)


def test_re2_finds_what_re_finds() -> None:
    assert SessionKeyer(r"a|ab").keys("ab ab") == ["a"]  # leftmost-first, as Perl and Python
    assert SessionKeyer(r"(?P<session>\d+)@(\w+)").keys("1@x 2@y 1@z") == ["1", "2"]
    assert SessionKeyer(r"x*").keys("abc") == [] and SessionKeyer(r"b*").keys("abbcb") == ["bb", "b"]  # empty: skipped
    assert SessionKeyer(r"id=(?P<key>\S+)|no=(\d)").keys("no=1 id=a") == ["a"]  # a group that did not take part: skipped
    assert SessionKeyer(r"^k\d").keys("k1 k2") == ["k1"] and SessionKeyer(r"\bk\d").keys("xk1 k2") == ["k2"]
    # not ASCII: offsets are characters, not UTF-8 bytes; a lone surrogate (JSON's \ud800) does not raise
    assert SessionKeyer(r"id=(\S+)").keys("é id=ü1 ✓ id=ö2") == ["ü1", "ö2"]
    assert SessionKeyer(r"k\d").keys("\ud800 k1 \ud800") == ["k1"]
    h = HeaderParser(regex=r"\[(?P<component>[^\]]+)\] (?P<level>[A-Z]+)")  # no message group: the rest of the line
    assert h.parse("[dépôt] ERROR ça casse ✓").message == "ça casse ✓" and h.parse("[dépôt] ERROR x").component == "dépôt"
    assert HeaderParser(regex=r"(?P<level>\w+) (?P<message>.*)").parse("WARN a\nb").message == "a\nb"  # . spans \n


def test_the_bindings_public_api_gives_the_same_answers() -> None:
    from logsense.models.parsing.userregex import compile_user

    fast, slow = compile_user(r"id=(?P<key>\S+)|x*"), compile_user(r"id=(?P<key>\S+)|x*")
    slow._match_fn = None  # as with a google-re2 without the C++ `Match` this module calls
    for text in ("id=1 xx id=2", "é id=ü1 ✓", "", "xxx"):
        assert slow.findall(text, 1) == fast.findall(text, 1) and slow.findall(text) == fast.findall(text)
    header = compile_user(r"(?P<level>\w+) (?P<message>.*)", dotall=True)
    header._match_fn = None
    assert header.match("WARN ça\nva").groupdict() == {"level": "WARN", "message": "ça\nva"}


def test_custom_mask_rules_merge_with_the_presets_as_one_alternation() -> None:
    # the leftmost match wins; at one position the first rule (custom rules come first)
    assert Masker([("pair", r"3 x", "<P>"), "num"]).mask("12 3 x") == "<NUM> <P>"
    assert Masker([("tail", r"2 3", "<T>"), "num"]).mask("12 3") == "<NUM> <NUM>"  # num starts first
    assert Masker([("tail", r"2 3", "<T>"), "num"]).mask("x2 3") == "x<T>"
    assert Masker([("u", r"ü+", "<U>"), "num"]).mask("é 12 üü 3 ü") == "é <NUM> <U> <NUM> <U>"
    assert Masker([("e", r"x*", "<E>"), "num"]).mask("ab 12 c") == "ab <NUM> c"  # an empty match masks nothing
    # a rule with a preset's own regex runs on `re` with the presets, in its place in the order
    two_runs = Masker([("b", r"blk_-?\d+", "<B>"), ("dest", r"dest: /\S+", "dest: <D>"), "default"])
    assert two_runs.mask("PacketResponder 1 for block blk_-16 terminating") == "PacketResponder <NUM> for block <B> terminating"
    assert two_runs.mask("Receiving blk_1 src: /10.0.0.1:5 dest: /10.0.0.2:50010") == "Receiving <B> src: /<IP> dest: <D>"
    rules = Masker([("job", r"job_\d+", "<JOB>"), "default"]).config()
    assert Masker([tuple(r) for r in rules]).mask("job_1 took 5 ms at 10.0.0.1") == "<JOB> took <NUM> ms at <IP>"


needs_hdfs = pytest.mark.skipif(
    not (DATA / "hdfs" / "HDFS_100k.log.gz").is_file(), reason=f"shared datasets not found at {DATA} (set LOGSENSE_DATASETS)"
)


@pytest.mark.dataset
@needs_hdfs
def test_hdfs_real_lines() -> None:
    with gzip.open(DATA / "hdfs" / "HDFS_100k.log.gz", "rt") as f:
        lines = [next(f).rstrip("\n") for _ in range(20_000)]
    parser = LogParser(preset="hdfs", session_regex=r"blk_-?\d+")
    parsed = parser.parse_many(lines)
    assert all(p.timestamp is not None and p.level in ("INFO", "WARN") for p in parsed)
    assert all(p.sessions for p in parsed)  # every HDFS line names a block
    assert 5 <= len(parser.miner) <= 40  # Loghub lists 29 event types for all of HDFS
    assert parser.miner.template(1) == "Receiving block <BLK> src: /<IP> dest: /<IP>"


def test_fixture_bgl_lines() -> None:
    path = FIXTURES / "bgl_small.log"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    lines = [line.split(" ", 1)[1] for line in path.read_text(errors="replace").splitlines()]
    parsed = LogParser(preset="bgl").parse_many(lines)
    assert all(p.timestamp is not None and p.level is not None and p.component for p in parsed)
    assert {p.level for p in parsed} <= {"INFO", "WARNING", "SEVERE", "ERROR", "FATAL", "FAILURE"}


def test_canonical_order_sorts_ties_of_the_clock_only():
    from logsense.models.parsing.sessions import canonical_order

    ts = [1.0, 2.0, 2.0, 2.0, 3.0, None, None, 3.0]
    keys = [9, 5, 1, 3, 7, 4, 2, 0]
    order = canonical_order(ts, keys)
    assert order == [0, 2, 3, 1, 4, 5, 6, 7]  # the 2.0 run by key; None never moves; 3.0 runs are apart
    assert sorted(order) == list(range(len(ts)))
    assert canonical_order([], []) == []
    assert canonical_order([5.0, 5.0], [None, 1]) == [1, 0]  # an unmatched line last in its tick
