"""Headers: split a raw line into timestamp, level, component and the message that is mined.

A preset is a regex with named groups (`timestamp`, or `date` + `time`; `level`; `component`;
`message`), anchored at the start of the line, or code (`json`, `generic`). A line the preset
does not fit goes to `generic`, which looks for an ISO timestamp and a level word near the
start and keeps the rest (or the whole line) as the message. `parse` never raises: whatever
comes in, a `Header` comes out, so one odd line cannot stop a stream.

Timestamps are epoch seconds, UTC when the line carries no zone. Levels are upper-cased.
Every preset regex is linear in the line length (no nested quantifiers), so a 100 kB line is cheap;
a custom regex is the operator's responsibility (Python's `re` has no timeout).
"""

from __future__ import annotations

import calendar
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime

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
    "syslog": (
        r"(?:<(?P<pri>\d{1,3})>)?(?P<timestamp>[A-Za-z]{3}\s+\d{1,2}\s+\d{2}:\d{2}:\d{2}|" + _ISO + r")\s+"
        r"(?P<host>\S+)\s+(?:(?P<component>[^\s:\[\]]+)(?:\[[^\]\s]*\])?:\s)?(?P<message>.*)"
    ),
    # 2026-11-22T13:50:01.123Z ERROR [comp] msg   (space separator, comma millis, offsets; level optional)
    "iso8601": (
        r"\[?(?P<timestamp>" + _ISO + r")\]?" + _SEP + r"(?:\[?(?P<level>(?i:" + _LEVELS + r"))\]?(?![\w.])" + _SEP
        + r")?(?:\[(?P<component>[^\]\s]{1,128})\]" + _SEP + r")?(?P<message>.*)"
    ),
    "json": None,  # one JSON object per line: message/msg/log, level/severity/lvl, timestamp/time/ts/@timestamp
    "generic": None,  # an ISO timestamp and a level word near the start, if any; else the whole line
}

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
_CLF_PARTS = re.compile(r"(\d{2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})\s?([+-]\d{4})?")  # Apache


def _epoch(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, frac: str | None = None) -> float:
    """UTC epoch seconds; ValueError for an impossible date."""
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 24 and mi <= 59 and s <= 61):
        raise ValueError("date out of range")
    t = float(calendar.timegm((y, mo, d, h, mi, s)))
    datetime(y, mo, d)  # rejects Feb 30 (timegm would roll it over)
    return t + (int(frac) / 10 ** len(frac) if frac else 0.0)


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
        year = time.gmtime().tm_year
        args = (mon, int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)), m.group(6))
        t = _epoch(year, *args[:5], frac=args[5])
        if t > time.time() + 2 * 86400:  # no year in the line: a date in the future is last year's
            t = _epoch(year - 1, *args[:5], frac=args[5])
        return t
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
    BGL `2005-06-03-15.42.50.675872`, HDFS `081109 203518`, syslog `Nov 22 13:50:01` (current
    year, or last year when that would be in the future) and Apache `22/Nov/2026:13:50:01 +0000`.
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
    if not _SYSLOG_PARTS.match(text):  # a syslog stamp's year depends on today: not cached
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


class HeaderParser:
    """`parse(line) -> Header` for one preset or a custom regex (named groups, anchored at the start).

    Custom regex groups: `timestamp` (or `date` + `time`), `level`, `component`, `message`; without
    a `message` group the message is the text after the match. A line the regex does not fit falls
    back to `generic`. An invalid regex or unknown preset raises ValueError here, never in `parse`.
    """

    def __init__(self, preset: str = "generic", regex: str | None = None):
        if preset not in PRESETS:
            raise ValueError(f"unknown header preset {preset!r}; known: {', '.join(PRESETS)}")
        self.preset = preset
        self.regex = regex
        pattern = regex if regex else PRESETS[preset]
        try:
            self._pattern = re.compile(pattern, _F) if pattern else None
        except (re.error, OverflowError) as exc:
            raise ValueError(f"invalid header regex {pattern!r}: {exc}") from None
        groups = self._pattern.groupindex if self._pattern is not None else {}
        self._has_message = "message" in groups
        self._has_pri = "pri" in groups
        self._json = self._pattern is None and preset == "json"

    def parse(self, line: str | bytes) -> Header:
        """The line's header; never raises (odd input: generic, message = the whole line)."""
        return Header(*self.fields(line))

    def fields(self, line: str | bytes) -> tuple[float | None, str | None, str, str | None]:
        """`(timestamp, level, message, component)`: `parse` without building a Header (the hot path)."""
        try:
            text = _to_str(line)
        except Exception:  # noqa: BLE001 - a str() that raises: treat as an empty line
            return None, None, "", None
        try:
            if self._pattern is not None:
                m = self._pattern.match(text)
                if m is not None:
                    return self._from_match(m, text)
            elif self._json and text.lstrip()[:1] == "{":
                out = self._from_json(text)
                if out is not None:
                    return out
            return _generic(text)
        except Exception:  # noqa: BLE001 - never let one line stop a stream
            return None, None, text, None

    def _from_match(self, m: re.Match, text: str) -> tuple[float | None, str | None, str, str | None]:
        g = m.groupdict()
        ts_text = g.get("timestamp")
        if ts_text is None and (g.get("date") or g.get("time")):
            ts_text = " ".join(p for p in (g.get("date"), g.get("time")) if p)
        ts = parse_timestamp(ts_text)
        level = g.get("level")
        level = level.upper() if level else None
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
        return ts, level, message, g.get("component") or None

    def _from_json(self, text: str) -> tuple[float | None, str | None, str, str | None] | None:
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
        return ts, level, message.rstrip("\r\n"), comp


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
