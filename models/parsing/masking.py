"""Masking: replace variable parts of a message (ids, addresses, numbers) by placeholders.

Masking runs before template mining so that Drain sees `Receiving block <BLK> src: /<IP>`
instead of a new text per block, and before RAPID so that an unseen block id is not "new".
All rules are compiled into ONE regex (an alternation of groups) and applied in one pass: at
each position the first rule in order that matches wins, so order matters (`blk`, `uuid`,
`ip` before `num`). Replacements are literal text (no group references).

The defaults collapse what varies between two lines of one event while keeping its words: ids
that mix letters and digits (`attempt_1445087491445_0005_m_000001_0`, `storage622`, `node-17`),
hex, UUIDs, paths, timestamps (a date written inside a message too: its month and weekday vary
as much as its digits), numbers with units (`12ms`, `3.5GB`), IPs with ports, and the name after
`user`. None of them names a system: a new stream needs no rule of its own.

The preset regexes avoid nested quantifiers and bound every lookahead scan, so a 100 kB line
costs linear time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_HEX = "[0-9a-fA-F]"

_SEG = "[A-Za-z0-9]+"
# A standard's name with a number in it is a word, not an id (UTF-8, ISO-8859-1, x86_64, SHA-256).
_STANDARD = r"(?!(?i:utf|ucs|iso|x86|sha|crc|ipv|rfc|tls|ssl|http)[-_]?\d)"

# `[Fri ]Jun 17 [2005 ]07:07[:00][.123][ 2005]`: every part bounded (spaces too), so no backtracking
# blow-up; the lookahead turns most words away before the 19 names are tried (keeps masking's cost).
_MONTH_DATE = (
    r"(?=[A-Z][a-z]{2})(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]{0,6},?[ \t]{1,3})?"
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]{0,6}\.?[ \t]{1,3}\d{1,2},?[ \t]{1,3}"
    r"(?:\d{4}[ \t]{1,3})?\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,9})?(?:[ \t]{1,3}\d{4}(?!\d))?"
)

# name -> (regex, replacement). Order here is the order in DEFAULT_RULES.
PRESET_RULES: dict[str, tuple[str, str]] = {
    "blk": (r"blk_-?\d+", "<BLK>"),  # HDFS block ids
    "uuid": (rf"(?<![\w-]){_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}(?![\w-])", "<UUID>"),
    # a date with a time (2016/9/27:20:30:31.455, 2017-05-16 00:00:01,5), a month-name date with a time
    # (C's ctime `Fri Jun 17 07:07:00 2005`, syslog's `Jun 17 07:07:00`, `Jun 17, 2005 7:07 AM`'s
    # date and time), or a time of day (20:30:31)
    "time": (
        rf"(?<![\w.:])(?:{_MONTH_DATE}"
        r"|\d{4}[-/]\d{1,2}[-/]\d{1,2}(?:[T :_]\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,9})?)?"
        r"|\d{1,2}:\d{2}:\d{2}(?:[.,]\d{1,9})?)(?![\w:])", "<TIME>"),
    "ip": (r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?!\.?\w)", "<IP>"),  # IPv4, optional :port
    "url": (r"\b[A-Za-z][A-Za-z0-9+.\-]{0,15}://[^\s\"'<>]+", "<URL>"),  # scheme bounded: no O(n^2) scans
    # 0x..., 6+ hex digits with a digit and a letter (Java's identity hashes are 7), or zero-padded
    # digits (00000001 beside 0000000a: one field)
    "hex": (rf"\b0[xX]{_HEX}+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F]){_HEX}{{6,}}\b|\b0\d{{5,}}\b",
            "<HEX>"),
    # a path of 1+ segments not glued to a word; a segment that starts like an IPv4 is left to `ip`
    "path": (r"(?<![\w/.])(?:/(?!(?:\d{1,3}\.){3}\d)[\w.\-~+%@=,]+)+/?", "<PATH>"),
    # segments joined by _ or -, one of them all digits (rdd_42_7, node-17, 30546174_108353204,
    # container_1445087491445_0005_01_000001), or letters and 3+ digits in one (storage622, KB2813430)
    "id": (
        rf"(?<![\w.\-]){_STANDARD}(?:{_SEG}[_\-])*(?:\d+(?:[_\-]{_SEG})+|(?<=[_\-])\d+"
        rf"|[A-Za-z]+\d{{3,}}[A-Za-z0-9]*(?:[_\-]{_SEG})*)(?![\w\-])", "<ID>"),
    "size": (r"(?<![\w.\-])\d+(?:\.\d+)?(?:[KMGTPE]i?B|[kKMGTPE]|B|bytes)(?![\w\-])", "<SIZE>"),  # 3.5GB, 512K
    # 12ms, 1.5s, 3min, 1h2m3.5s
    "duration": (r"(?<![\w.\-])(?:\d+[dhm]){0,3}\d+(?:\.\d+)?(?:ns|us|µs|ms|s|sec|secs|min|mins|h|hrs|d)(?![\w\-])",
                 "<DURATION>"),
    "num": (r"(?<![\w.\-])-?\d+(?:\.\d+)*(?![\w\-]|\.\w)", "<NUM>"),  # standalone numbers
    "user": (r"(?<=(?<![\w-])[Uu]ser[ =])[\w.\-@$]{1,64}(?![\w.\-@$])", "<USER>"),  # user root, user=bob
}
DEFAULT_RULES: tuple[str, ...] = ("blk", "uuid", "time", "ip", "url", "hex", "path", "id", "size", "duration", "num",
                                  "user")
# Presets that can only start where no ASCII letter/digit precedes and at one of [-\w/]: a guard
# in front of a run of them skips most positions at once (about 2x faster on HDFS).
_GUARDED = frozenset(PRESET_RULES) - {"blk"}
_GUARD = r"(?<![A-Za-z0-9])(?=[-\w/])"

Rule = tuple[str, str, str]  # (name, regex, replacement)
_BACKREF = re.compile(r"\\[1-9]|\(\?P=")


def resolve_rules(rules: Iterable[Any] | None) -> list[Rule]:
    """Rules in the order they are tried: custom rules first (in the given order), then presets.

    Accepts preset names ("ip"; "default" expands to DEFAULT_RULES), `(name, regex, replacement)`
    tuples/lists, dicts with those keys, or objects with those attributes (the server's MaskRule).
    None means DEFAULT_RULES. Raises ValueError for an unknown preset or a malformed rule.
    """
    if rules is None:
        rules = DEFAULT_RULES
    if isinstance(rules, (str, Mapping)):
        rules = [rules]
    custom: list[Rule] = []
    presets: list[Rule] = []
    for rule in rules:
        if isinstance(rule, str):
            names = DEFAULT_RULES if rule in ("default", "defaults") else (rule,)
            for name in names:
                if name not in PRESET_RULES:
                    raise ValueError(f"unknown mask preset {name!r}; known: {', '.join(PRESET_RULES)}")
                if all(name != r[0] for r in presets):
                    presets.append((name, *PRESET_RULES[name]))
            continue
        if isinstance(rule, Mapping):
            name, regex, repl = rule.get("name"), rule.get("regex"), rule.get("replacement", "<*>")
        elif isinstance(rule, (tuple, list)):
            if len(rule) not in (2, 3):
                raise ValueError(f"a mask rule is (name, regex, replacement), got {rule!r}")
            name, regex, repl = rule[0], rule[1], rule[2] if len(rule) == 3 else "<*>"
        elif hasattr(rule, "regex"):
            name, regex, repl = getattr(rule, "name", "custom"), rule.regex, getattr(rule, "replacement", "<*>")
        else:
            raise ValueError(f"cannot read mask rule {rule!r}")
        if not isinstance(regex, str) or not regex:
            raise ValueError(f"mask rule {name!r} has no regex")
        try:
            re.compile(regex)
        except (re.error, OverflowError) as exc:
            raise ValueError(f"mask rule {name!r}: invalid regex {regex!r}: {exc}") from None
        custom.append((str(name), regex, "<*>" if repl is None else str(repl)))
    return custom + presets


class Masker:
    """`mask(text)` replaces every match of the rules by the rule's replacement, in one pass."""

    def __init__(self, rules: Iterable[Any] | None = DEFAULT_RULES):
        self.rules: list[Rule] = resolve_rules(rules)
        self._replacements: dict[int, str] = {}
        self._sequential: list[tuple[re.Pattern, str]] | None = None
        if not self.rules:
            self._pattern = None
            return
        # Numbered back-references would point at the wrong group inside the alternation.
        if any(_BACKREF.search(regex) for _, regex, _ in self.rules):
            self._sequential = [(re.compile(regex), repl) for _, regex, repl in self.rules]
            self._pattern = None
            return
        try:
            self._pattern = re.compile(self._alternation())
        except re.error:  # e.g. two custom rules with the same inner group name
            self._sequential = [(re.compile(regex), repl) for _, regex, repl in self.rules]
            self._pattern = None
            return
        index = self._pattern.groupindex
        # The rule's outer group closes last, so it is `lastindex` of a match.
        self._replacements = {index[f"_r{i}"]: repl for i, (_, _, repl) in enumerate(self.rules)}
        self._sub = self._pattern.sub
        self._repl = self._replace

    def _alternation(self) -> str:
        """`(?P<_r0>...)|(?P<_r1>...)|GUARD(?:(?P<_r2>...)|...)`: runs of guarded presets share a guard."""
        parts: list[str] = []
        run: list[str] = []
        for i, (name, regex, _) in enumerate(self.rules):
            group = f"(?P<_r{i}>{regex})"
            if name in _GUARDED and regex == PRESET_RULES[name][0]:
                run.append(group)
                continue
            if run:
                parts.append(f"{_GUARD}(?:{'|'.join(run)})")
                run = []
            parts.append(group)
        if run:
            parts.append(f"{_GUARD}(?:{'|'.join(run)})")
        return "|".join(parts)

    def _replace(self, m: re.Match) -> str:
        return self._replacements[m.lastindex]

    def mask(self, text: str) -> str:
        """`text` with every rule match replaced (one pass, first rule in order wins)."""
        if self._pattern is not None:
            return self._sub(self._repl, text)
        if self._sequential is not None:
            for pattern, repl in self._sequential:
                text = pattern.sub(lambda _m, r=repl: r, text)
        return text

    def config(self) -> list[list[str]]:
        """The resolved rules as JSON-ready `[name, regex, replacement]` lists."""
        return [list(r) for r in self.rules]
