"""Headers: split a raw line into timestamp, level, component and the message that is mined.

A preset is a regex with named groups (`timestamp`, or `date` + `time`; `level`; `component`;
`message`), anchored at the start of the line, or code (`json`, `generic`, `auto`). `auto` picks,
per stream, the preset that fits most of its first lines and keeps checking (`LayoutDetector`).
A line the preset does not fit goes to `generic`, which looks for an ISO timestamp and a level word near the
start and keeps the rest (or the whole line) as the message. `parse` never raises: whatever
comes in, a `Header` comes out, so one odd line cannot stop a stream.

Timestamps are epoch seconds, UTC when the line carries no zone. Levels are upper-cased.
Every preset regex is linear in the line length (no nested quantifiers), so a 100 kB line is cheap;
a custom regex is the operator's and runs on RE2 (`userregex`): linear too, whatever it is.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from logsense.models.parsing.userregex import UserMatch, compile_user

_F = re.DOTALL  # a stray newline inside a line must not end the message

# Level words a header may carry (Loghub BGL: INFO, WARNING, SEVERE, ERROR, FATAL, FAILURE).
LEVEL_WORDS = (
    "TRACE", "DEBUG", "FINEST", "FINER", "FINE", "CONFIG", "INFO", "INFORMATION", "NOTICE", "WARNING",
    "WARN", "ERROR", "ERR", "SEVERE", "CRITICAL", "CRIT", "FATAL", "FAILURE", "ALERT", "EMERGENCY",
    "EMERG", "PANIC",
)
_LEVELS = "|".join(sorted(LEVEL_WORDS, key=len, reverse=True))
_ISO = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:\s?(?:Z|[+-]\d{2}(?::?\d{2})?)(?![\w:]))?"
_SEP = r"[\s|:,\-]*"
_YMD2 = r"\d{2}/\d{2}/\d{2}\s\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?"  # log4j %d{yy/MM/dd HH:mm:ss}
_LEVEL = r"(?P<level>(?i:" + _LEVELS + r"))"

# name -> header regex (None: parsed by code). Custom regexes follow the same group names.
PRESETS: dict[str, str | None] = {
    # 081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-16089 src: /10.250.19.102:54106
    "hdfs": r"(?P<date>\d{6})\s(?P<time>\d{6})\s+\d+\s+(?P<level>[A-Z]+)\s+(?P<component>[^\s:]+):\s?(?P<message>.*)",
    # 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO msg
    # (Loghub's leading label field must be stripped before: a detector never sees it)
    "bgl": (
        r"(?P<timestamp>\d+)\s+\d{4}\.\d{2}\.\d{2}\s+\S+\s+\d{4}-\d{2}-\d{2}-\d{2}\.\d{2}\.\d{2}\.\d+\s+\S+\s+\S+\s+"
        r"(?P<component>\S+)\s+(?P<level>[A-Z]+)(?:\s(?P<message>.*))?"
    ),
    # <34>Nov 22 13:50:01 host sshd[123]: msg   (priority optional; RFC 3339 stamps as rsyslog writes them)
    # (a leading field before the stamp, e.g. the file name a collector adds, is skipped; a level word
    #  is not a host: `2026-... ERROR msg` is iso8601;
    #  `sandboxd[129] ([31211]): msg` as macOS writes it: the parenthesized part is not the message)
    "syslog": (
        r"(?:<(?P<pri>\d{1,3})>)?(?:[^\s<]\S{0,255}\s+)?"
        r"(?P<timestamp>[A-Za-z]{3}\s+\d{1,2}\s+\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?|" + _ISO + r")\s+"
        r"(?!(?i:" + _LEVELS + r")\b)(?P<host>\S+)\s+(?:(?P<component>[^\s:\[\]]+)(?:\[[^\]\s]*\])?(?:\s\([^)\s]{0,128}\))?:\s)?(?P<message>.*)"
    ),
    # 2026-11-22T13:50:01.123Z ERROR [comp] msg   (space separator, comma millis, offsets; level optional)
    "iso8601": (
        r"\[?(?P<timestamp>" + _ISO + r")\]?" + _SEP + r"(?:\[?(?P<level>(?i:" + _LEVELS + r"))\]?(?![\w.])" + _SEP
        + r")?(?:\[(?P<component>[^\]\s]{1,128})\]" + _SEP + r")?(?P<message>.*)"
    ),
    # 03-17 16:13:38.811  1702  2395 D WindowManager: msg   (Android logcat, threadtime)
    "android": (
        r"(?P<timestamp>\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)\s+\d+\s+\d+\s+(?P<level>[VDIWEFA])\s+"
        r"(?P<component>[^:]{0,256}?)\s*:\s?(?P<message>.*)"
    ),
    # [Sun Dec 04 04:47:44 2005] [error] msg   (Apache error log; 2.4: [module:level] [pid N:tid M])
    "apache": (
        r"\[(?P<timestamp>[A-Za-z]{3}\s[A-Za-z]{3}\s{1,2}\d{1,2}\s\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?\s\d{4})\]\s+"
        r"\[(?:(?P<component>[\w\-]{1,64}):)?(?P<level>[A-Za-z]+\d?)\](?:\s+\[pid\s\d+(?::tid\s\d+)?\])?\s*(?P<message>.*)"
    ),
    # 2016-09-28 04:30:30, Info                  CBS    msg   (Windows CBS.log)
    "cbs": (
        r"(?P<timestamp>\d{4}-\d{2}-\d{2}\s\d{2}:\d{2}:\d{2}),\s+(?P<level>[A-Za-z]+)\s+(?P<component>[A-Za-z]\w{0,63})"
        r"(?:\s+(?P<message>.*))?"
    ),
    # [file] 2017-05-16 00:00:00.008 25746 INFO nova.compute.manager [req-... - - -] msg
    # (Python logging with the pid, as OpenStack's oslo.log writes it; the bracketed request context is
    #  not the message)
    "python": (
        r"(?:[^\s\[<]\S{0,255}\s+)?(?P<timestamp>" + _ISO + r")\s+\d+\s+" + _LEVEL + r"\s+"
        r"(?P<component>[^\s\[:]{1,256})(?:\s+\[[^\]]{0,1024}\])?(?:\s+(?P<message>.*))?"
    ),
    # 17/06/09 20:10:40 INFO executor.Backend: msg   2026-01-01 10:00:00,123 INFO [main] a.b.C - msg
    # 2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - msg   (Java)
    "log4j": (
        r"\[?(?P<timestamp>" + _ISO + "|" + _YMD2 + r")\]?\s+(?:-\s+)?(?:\[[^\]]{0,256}\]\s+)?" + _LEVEL + r"\s+"
        r"(?:\[(?P<component>.{0,512}?)\]\s+-\s|(?:\[[^\]]{0,256}\]\s+)?(?P<logger>[\w$.\-]{1,256})\s?(?::|\s-)\s)"
        r"(?P<message>.*)"
    ),
    # 134681 node-246 unix.hw state_change.unavailable 1077804742 1 msg   (Loghub HPC: id node component state time flag)
    "hpc": (
        r"\d+\s+(?P<host>\S+)\s+(?P<component>\S+)\s+\S+\s+(?P<timestamp>\d{9,10})\s+-?\d+(?:\s(?P<message>.*))?"
    ),
    # [2026-11-22 13:50:01] [ERROR] [comp] msg   or   [WARN] msg   (bracketed level, bracketed time optional)
    "bracketed": (
        r"(?:\[(?P<timestamp>[^\]]{1,64})\]\s*)?\[" + _LEVEL + r"\]\s*(?:\[(?P<component>[^\]\s]{1,128})\]\s*)?"
        r"(?:[:\-]\s)?(?P<message>.*)"
    ),
    # 1763819401 ERROR msg   (epoch seconds, or milliseconds, first; level and [component] optional)
    "epoch": (
        r"(?P<timestamp>\d{10}(?:\d{3})?(?:[.,]\d{1,9})?)\s+(?:\[?" + _LEVEL + r"\]?(?![\w.])" + _SEP + r")?"
        r"(?:\[(?P<component>[^\]\s]{1,128})\]" + _SEP + r")?(?P<message>.*)"
    ),
    "json": None,  # one JSON object per line: message/msg/log, level/severity/lvl, timestamp/time/ts/@timestamp
    "generic": None,  # an ISO timestamp and a level word near the start, if any; else the whole line
    "auto": None,  # the preset that fits the stream's lines best, re-checked as they come (`LayoutDetector`)
}
# What `auto` chooses from, most specific first: of layouts that fit about as many lines, the first wins.
AUTO_LAYOUTS = ("json", "hdfs", "bgl", "hpc", "android", "apache", "cbs", "python", "log4j", "syslog", "bracketed",
                "epoch", "iso8601")

_ISO_SEARCH = re.compile(_ISO)
# After a timestamp (or at the start): [LEVEL] / LEVEL: / LEVEL, then an optional [component].
_HEAD_AFTER_TS = re.compile(
    r"[\]\)]?" + _SEP + r"(?:[\[<]?(?P<level>(?i:" + _LEVELS + r"))[\]>]?(?![\w.])" + _SEP + r")?"
    r"(?:\[(?P<component>[^\]\s]{1,128})\]" + _SEP + r")?", _F
)
_HEAD_AT_START = re.compile(  # no timestamp: only an upper-case word, a bracketed one, or one with a colon
    r"\s*(?:\[(?P<l1>(?i:" + _LEVELS + r"))\]|(?P<l2>(?i:" + _LEVELS + r")):|(?P<l3>" + _LEVELS + r")(?![\w.]))"
    + _SEP + r"(?:\[(?P<component>[^\]\s]{1,128})\]" + _SEP + r")?", _F
)
_KV_LEVEL = re.compile(r"(?:^|[\s,{])\"?(?:level|lvl|severity)\"?[=:]\s?\"?(?P<level>[A-Za-z]{1,16})\b")
_SYSLOG_SEVERITY = ("EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DEBUG")
_NUMERIC_LEVELS = {10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL"}  # pino, bunyan
_LETTER_LEVELS = {"V": "VERBOSE", "D": "DEBUG", "I": "INFO", "W": "WARN", "E": "ERROR", "F": "FATAL", "A": "ASSERT"}

_JSON_MESSAGE = ("message", "msg", "log", "MESSAGE")
_JSON_LEVEL = ("level", "severity", "lvl", "levelname", "log.level")
_JSON_TIME = ("timestamp", "time", "ts", "@timestamp", "datetime", "date")
_JSON_COMPONENT = ("component", "logger", "logger_name", "name", "module", "service")


@dataclass(frozen=True, slots=True)
class Header:
    """What a line's header says; `message` is what gets masked and mined."""

    timestamp: float | None  # epoch seconds (UTC when the line has no zone)
    level: str | None  # upper-cased, as written ("WARN" stays "WARN")
    message: str
    component: str | None = None


# ----------------------------------------------------------------------------- timestamps

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?")
_ISO_PARTS = re.compile(
    r"(\d{4})[-/.](\d{2})[-/.](\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s?(Z|[+-]\d{2}(?::?\d{2})?)?", re.I
)
_BGL_PARTS = re.compile(r"(\d{4})-(\d{2})-(\d{2})-(\d{2})\.(\d{2})\.(\d{2})(?:\.(\d{1,9}))?")
_HDFS_PARTS = re.compile(r"(\d{2})(\d{2})(\d{2})\s+(\d{2})(\d{2})(\d{2})")
_SYSLOG_PARTS = re.compile(r"([A-Za-z]{3})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")
_YMD2_PARTS = re.compile(r"(\d{2})/(\d{2})/(\d{2})\s+(\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?")  # log4j yy/MM/dd
_MD_PARTS = re.compile(r"(\d{2})-(\d{2})\s+(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?")  # logcat: no year
_CTIME_PARTS = re.compile(  # Apache error log, ctime(): Sun Dec 04 04:47:44 2005
    r"[A-Za-z]{3}\s+([A-Za-z]{3})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s+(\d{4})")
_CLF_PARTS = re.compile(r"(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})\s?([+-]\d{4})?")  # Apache


def _epoch(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, frac: str | None = None) -> float:
    """UTC epoch seconds; ValueError for an impossible date."""
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 24 and mi <= 59 and s <= 61):
        raise ValueError("date out of range")
    t = float(calendar.timegm((y, mo, d, h, mi, s)))
    datetime(y, mo, d)  # rejects Feb 30 (timegm would roll it over)
    return t + (int(frac) / 10 ** len(frac) if frac else 0.0)


def _this_year(mo: int, d: int, h: int, mi: int, s: int, frac: str | None) -> float:
    """A stamp without a year: this year's, or last year's when this year's is in the future."""
    year = time.gmtime().tm_year
    t = _epoch(year, mo, d, h, mi, s, frac)
    return _epoch(year - 1, mo, d, h, mi, s, frac) if t > time.time() + 2 * 86400 else t


def _offset(zone: str | None) -> int:
    """Seconds east of UTC for 'Z', '+01:00', '+0100', '-05'."""
    if not zone or zone in "Zz":
        return 0
    digits = zone[1:].replace(":", "")
    seconds = int(digits[:2]) * 3600 + (int(digits[2:4]) * 60 if len(digits) >= 4 else 0)
    return -seconds if zone[0] == "-" else seconds


def _parse_time(text: str) -> float | None:
    text = text.strip()
    if not text or len(text) > 64:
        return None
    if _NUM_RE.fullmatch(text):  # epoch seconds, or ms / us / ns by magnitude
        value, size = float(text), abs(float(text))
        if size >= 1e20:
            return None
        return value / 1e9 if size >= 1e17 else value / 1e6 if size >= 1e14 else value / 1e3 if size >= 1e11 else value
    m = _BGL_PARTS.match(text)
    if m:
        return _epoch(*map(int, m.groups()[:6]), m.group(7))
    m = _ISO_PARTS.match(text)
    if m:
        y, mo, d, h, mi, s, frac, zone = m.groups()
        return _epoch(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), frac) - _offset(zone)
    m = _HDFS_PARTS.match(text)
    if m:
        y, mo, d, h, mi, s = map(int, m.groups())
        return _epoch(2000 + y, mo, d, h, mi, s)
    m = _SYSLOG_PARTS.match(text)
    if m:
        mon = _MONTHS.get(m.group(1).lower())
        if mon is None:
            return None
        return _this_year(mon, int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)), m.group(6))
    m = _YMD2_PARTS.match(text)
    if m:
        y, mo, d, h, mi, s = map(int, m.groups()[:6])
        return _epoch(2000 + y, mo, d, h, mi, s, m.group(7))
    m = _MD_PARTS.match(text)
    if m:
        return _this_year(*map(int, m.groups()[:5]), m.group(6))
    m = _CTIME_PARTS.match(text)
    if m:
        mon = _MONTHS.get(m.group(1).lower())
        if mon is None:
            return None
        return _epoch(int(m.group(7)), mon, int(m.group(2)), *map(int, m.groups()[2:5]), m.group(6))
    m = _CLF_PARTS.match(text)
    if m:
        mon = _MONTHS.get(m.group(2).lower())
        if mon is None:
            return None
        return _epoch(int(m.group(3)), mon, int(m.group(1)), *map(int, m.groups()[3:6])) - _offset(m.group(7))
    try:
        return datetime.fromisoformat(text).timestamp() if text[:1].isdigit() and len(text) >= 10 else None
    except ValueError:
        return None


_TIME_CACHE: dict[str, float | None] = {}  # timestamps repeat for every line of the same second


def parse_timestamp(text: str | None) -> float | None:
    """Epoch seconds from a timestamp as logs write it, or None. Never raises.

    Knows epoch numbers (s, ms, us, ns), ISO 8601 / RFC 3339 (with `Z` or an offset; none = UTC),
    BGL `2005-06-03-15.42.50.675872`, HDFS `081109 203518`, syslog `Nov 22 13:50:01` and logcat
    `03-17 16:13:38.811` (current year, or last year when that would be in the future), log4j
    `17/06/09 20:10:40`, Apache `22/Nov/2026:13:50:01 +0000` and `Sun Dec 04 04:47:44 2005`.
    """
    if not text:
        return None
    cached = _TIME_CACHE.get(text, _TIME_CACHE)
    if cached is not _TIME_CACHE:
        return cached  # type: ignore[return-value]
    try:
        value = _parse_time(text)
    except (ValueError, OverflowError, TypeError):
        value = None
    if value is not None and value != value:  # NaN
        value = None
    if len(_TIME_CACHE) >= 8192:
        _TIME_CACHE.clear()
    if not (_SYSLOG_PARTS.match(text) or _MD_PARTS.match(text)):  # a year from today: not cached
        _TIME_CACHE[text] = value
    return value


# ----------------------------------------------------------------------------- parser


def _to_str(line: object) -> str:
    if isinstance(line, str):
        return line.rstrip("\r\n")
    if isinstance(line, (bytes, bytearray, memoryview)):
        return bytes(line).decode("utf-8", errors="replace").rstrip("\r\n")
    return "" if line is None else str(line).rstrip("\r\n")


def _level(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return _NUMERIC_LEVELS.get(int(value))
    text = str(value).strip().upper()
    return text[:32] or None


Fields = tuple  # (timestamp, level, message, component, header parsed): `HeaderParser.read`


class HeaderParser:
    """`parse(line) -> Header` for one preset or a custom regex (named groups, anchored at the start).

    Custom regex groups: `timestamp` (or `date` + `time`), `level`, `component`, `message`; without
    a `message` group the message is the text after the match. A line the regex does not fit falls
    back to `generic`. An invalid regex or unknown preset raises ValueError here, never in `parse`.
    `auto` (without a regex) hands each line to a `LayoutDetector`, which is the only state kept.
    """

    def __init__(self, preset: str = "generic", regex: str | None = None):
        if preset not in PRESETS:
            raise ValueError(f"unknown header preset {preset!r}; known: {', '.join(PRESETS)}")
        self.preset = preset
        self.regex = regex
        if regex:  # the operator's: RE2, `.` across a stray newline as the presets' DOTALL
            self._pattern = compile_user(regex, "format_regex", dotall=True)
        else:
            pattern = PRESETS[preset]
            self._pattern = re.compile(pattern, _F) if pattern else None
        groups = self._pattern.groupindex if self._pattern is not None else {}
        self._has_message = "message" in groups
        self._has_pri = "pri" in groups
        self._json = self._pattern is None and preset == "json"
        self.detector = LayoutDetector() if self._pattern is None and preset == "auto" else None

    @property
    def layout(self) -> str:
        """The preset that reads the lines now: `auto`'s current choice ("generic" before any fits)."""
        if self.regex:
            return "custom"
        if self.detector is not None:
            return self.detector.chosen or "generic"
        return self.preset

    def parse(self, line: str | bytes) -> Header:
        """The line's header; never raises (odd input: generic, message = the whole line)."""
        return Header(*self.read(line)[:4])

    def fields(self, line: str | bytes) -> tuple[float | None, str | None, str, str | None]:
        """`(timestamp, level, message, component)`: `parse` without building a Header (the hot path)."""
        return self.read(line)[:4]

    def read(self, line: str | bytes) -> Fields:
        """`fields` and whether the header parsed: the preset (or `auto`'s choice) fit the line, or,
        for `generic`, a timestamp was found. A line that fell back to `generic` did not parse."""
        try:
            text = _to_str(line)
        except Exception:  # noqa: BLE001 - a str() that raises: treat as an empty line
            return None, None, "", None, False
        if self.detector is not None:
            return self.detector.read(text)
        return self.read_text(text)

    def read_text(self, text: str) -> Fields:
        """`read` of a line already decoded to str (`LayoutDetector` tries every layout on it)."""
        try:
            if self._pattern is not None:
                m = self._pattern.match(text)
                if m is not None:
                    return self._from_match(m, text)
            elif self._json and text.lstrip()[:1] == "{":
                out = self._from_json(text)
                if out is not None:
                    return out
            ts, level, message, component = _generic(text)
            return ts, level, message, component, self.preset == "generic" and ts is not None
        except Exception:  # noqa: BLE001 - never let one line stop a stream
            return None, None, text, None, False

    def _from_match(self, m: "re.Match | UserMatch", text: str) -> Fields:
        g = m.groupdict()
        ts_text = g.get("timestamp")
        if ts_text is None and (g.get("date") or g.get("time")):
            ts_text = " ".join(p for p in (g.get("date"), g.get("time")) if p)
        ts = parse_timestamp(ts_text)
        level = g.get("level")
        level = (_LETTER_LEVELS.get(level, level) if len(level) == 1 else level.upper()) if level else None
        if self._has_message:
            message = g.get("message") or ""
        else:
            message = text[m.end():].lstrip()
        if self._has_pri and g.get("pri") and level is None:
            level = _SYSLOG_SEVERITY[int(g["pri"]) % 8]
        if level is None and self.preset == "syslog" and self.regex is None:
            head = _HEAD_AT_START.match(message)
            if head is not None:
                level = (head.group("l1") or head.group("l2") or head.group("l3")).upper()
        return ts, level, message, g.get("component") or g.get("logger") or None, True

    def _from_json(self, text: str) -> Fields | None:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if not isinstance(obj, dict):
            return None
        message = next((obj[k] for k in _JSON_MESSAGE if k in obj), None)
        if message is None:
            message = text
        elif not isinstance(message, str):
            message = json.dumps(message, ensure_ascii=False, sort_keys=True)
        level = _level(next((obj[k] for k in _JSON_LEVEL if obj.get(k) is not None), None))
        raw_ts = next((obj[k] for k in _JSON_TIME if obj.get(k) is not None), None)
        if isinstance(raw_ts, (int, float)) and not isinstance(raw_ts, bool):
            ts = parse_timestamp(repr(raw_ts) if isinstance(raw_ts, float) else str(raw_ts))
        else:
            ts = parse_timestamp(raw_ts) if isinstance(raw_ts, str) else None
        comp = next((obj[k] for k in _JSON_COMPONENT if isinstance(obj.get(k), str)), None)
        return ts, level, message.rstrip("\r\n"), comp, True


class LayoutDetector:
    """`auto`: which preset reads a stream, chosen from its lines and re-checked as they come.

    The first `sample` lines are tried on every layout of AUTO_LAYOUTS; after each, the choice is
    the layout that parsed the most so far (of those within `tolerance` of the best, the first in
    AUTO_LAYOUTS: a specific layout beats a loose one that fits as many lines). After the
    sample only the choice is tried, and the last `window` lines are kept: every `every` lines,
    when the choice parsed less than 1 - `margin` of them, every layout is tried on them and one
    that parses at least `margin` more of them takes over. A check that changes nothing doubles
    the wait before the next (a stream no layout fits costs little). State is not saved: a
    reloaded parser samples again. Each process that parses a stream (the parse helper too)
    decides on the lines it sees; on a stream of one layout they agree.
    """

    def __init__(self, sample: int = 200, window: int = 200, every: int = 100, margin: float = 0.2,
                 tolerance: float = 0.02, layouts: tuple[str, ...] = AUTO_LAYOUTS):
        self.sample, self.every, self.margin, self.tolerance = sample, every, margin, tolerance
        self.parsers = {name: HeaderParser(name) for name in layouts}
        self.hits = dict.fromkeys(layouts, 0)  # lines of the sample each layout parsed
        self.sampled = 0
        self.chosen: str | None = None  # None: no layout parsed a line yet (generic reads them)
        self.switches = 0
        self._recent: deque[tuple[str, bool]] = deque(maxlen=window)  # (line, parsed by the choice)
        self._recent_parsed = 0
        self._wait = every
        self._since_check = 0
        self._generic = HeaderParser("generic")

    def read(self, text: str) -> Fields:
        """The line read by the chosen layout (after sampling it on every layout, early on)."""
        if self.sampled < self.sample:
            return self._sample(text)
        parser = self.parsers.get(self.chosen) if self.chosen else None
        out = parser.read_text(text) if parser is not None else self._read_generic(text)
        self._remember(text, out[4])
        return out

    def _read_generic(self, text: str) -> Fields:
        ts, level, message, component, _ = self._generic.read_text(text)
        return ts, level, message, component, False

    def _sample(self, text: str) -> Fields:
        self.sampled += 1
        outs = {}
        for name, parser in self.parsers.items():
            out = outs[name] = parser.read_text(text)
            if out[4]:
                self.hits[name] += 1
        self.chosen = self._pick(self.hits)
        out = outs[self.chosen] if self.chosen else self._read_generic(text)
        self._remember(text, out[4], check=False)
        return out

    def _pick(self, hits: dict[str, int]) -> str | None:
        best = max(hits.values(), default=0)
        if best == 0:
            return None
        floor = best - self.tolerance * max(best, 1)
        return next(name for name, n in hits.items() if n >= floor)

    def _remember(self, text: str, parsed: bool, check: bool = True) -> None:
        recent = self._recent
        if len(recent) == recent.maxlen:
            self._recent_parsed -= recent[0][1]
        recent.append((text[:4096], parsed))  # a header is at the start: a long line need not be kept whole
        self._recent_parsed += parsed
        if not check:
            return
        self._since_check += 1
        if self._since_check >= self._wait:
            self._since_check = 0
            self._check()

    def _check(self) -> None:
        """Try every layout on the recent lines when the choice parses too few of them."""
        n = len(self._recent)
        if n == 0 or self._recent_parsed >= (1 - self.margin) * n:
            self._wait = self.every
            return
        hits = {name: sum(p.read_text(text)[4] for text, _ in self._recent) for name, p in self.parsers.items()}
        best = self._pick(hits)
        if best is not None and best != self.chosen and hits[best] - self._recent_parsed >= self.margin * n:
            self.chosen = best
            self.switches += 1
            self._recent = deque(((text, bool(self.parsers[best].read_text(text)[4])) for text, _ in self._recent),
                                 maxlen=self._recent.maxlen)
            self._recent_parsed = hits[best]
            self._wait = self.every
        else:
            self._wait = min(self._wait * 2, 100 * self.every)

    def rates(self) -> dict[str, float]:
        """Share of the recent lines each layout parses (tries every layout: for reports, not per line)."""
        n = len(self._recent)
        return {name: (sum(p.read_text(text)[4] for text, _ in self._recent) / n if n else 0.0)
                for name, p in self.parsers.items()}


def _generic(text: str) -> tuple[float | None, str | None, str, str | None]:
    """An ISO timestamp in the first 128 characters, then a level word; else a level at the start."""
    m = _ISO_SEARCH.search(text[:128])
    if m is not None:
        ts = parse_timestamp(m.group(0))
        head = _HEAD_AFTER_TS.match(text, m.end())
        level = head.group("level")
        rest = text[head.end():]
        level = level.upper() if level else None
        if level is None:
            kv = _KV_LEVEL.search(text[:256])
            level = kv.group("level").upper() if kv else None
        return ts, level, rest, head.group("component")
    head = _HEAD_AT_START.match(text)
    if head is not None:
        level = (head.group("l1") or head.group("l2") or head.group("l3")).upper()
        return None, level, text[head.end():], head.group("component")
    kv = _KV_LEVEL.search(text[:256])
    return None, (kv.group("level").upper() if kv else None), text, None
