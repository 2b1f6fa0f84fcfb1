"""Masking: replace variable parts of a message (ids, addresses, numbers) by placeholders.

Masking runs before template mining so that Drain sees `Receiving block <BLK> src: /<IP>`
instead of a new text per block, and before RAPID so that an unseen block id is not "new".
The presets are compiled into ONE regex (an alternation of groups) and applied in one pass: at
each position the first rule in order that matches wins, so order matters (`blk`, `uuid`,
`ip` before `num`). Custom rules (tried first) keep that rule: their matches merge with the
presets' in the same pass. Replacements are literal text (no group references).

The defaults collapse what varies between two lines of one event while keeping its words: ids
that mix letters and digits (`attempt_1445087491445_0005_m_000001_0`, `storage622`, `node-17`),
hex, UUIDs, paths, timestamps (a date written inside a message too: its month and weekday vary
as much as its digits), numbers with units (`12ms`, `3.5GB`), IPs with ports, and the name after
`user`. None of them names a system: a new stream needs no rule of its own.

The preset regexes avoid nested quantifiers and bound every lookahead scan, so a 100 kB line
costs linear time. Custom rules are the operator's: they run on RE2 (`userregex`), linear too, and
one RE2 cannot run (a backreference, a lookaround) is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from logsense.models.parsing.userregex import Subject, compile_user

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
_PRESET_BY_REGEX = {regex: name for name, (regex, _) in PRESET_RULES.items()}


def is_preset_regex(regex: str) -> bool:
    """One of our preset regexes (runs on `re`: written to be linear); any other runs on RE2."""
    return regex in _PRESET_BY_REGEX


def check_rule_regex(name: object, regex: object) -> None:
    """ValueError unless a custom rule's regex can run: RE2 compiles it (linear time) or it is a preset's."""
    if not isinstance(regex, str) or not regex:
        raise ValueError(f"mask rule {name!r} has no regex")
    if not is_preset_regex(regex):
        compile_user(regex, f"mask rule {name!r}")


def resolve_rules(rules: Iterable[Any] | None) -> list[Rule]:
    """Rules in the order they are tried: custom rules first (in the given order), then presets.

    Accepts preset names ("ip"; "default" expands to DEFAULT_RULES), `(name, regex, replacement)`
    tuples/lists, dicts with those keys, or objects with those attributes (the server's MaskRule).
    None means DEFAULT_RULES. Raises ValueError for an unknown preset, a malformed rule, or a
    regex RE2 cannot run (`userregex`: the operator's regexes run in linear time).
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
        check_rule_regex(name, regex)
        custom.append((str(name), regex, "<*>" if repl is None else str(repl)))
    return custom + presets


class _PresetRun:
    """Consecutive preset rules as ONE `re` alternation: `(?P<_r0>...)|GUARD(?:(?P<_r1>...)|...)`
    (runs of guarded presets share a guard); at a position the first rule in order wins."""

    def __init__(self, rules: list[Rule]):
        parts: list[str] = []
        run: list[str] = []
        for i, (_, regex, _) in enumerate(rules):
            group = f"(?P<_r{i}>{regex})"
            if _PRESET_BY_REGEX[regex] in _GUARDED:
                run.append(group)
                continue
            if run:
                parts.append(f"{_GUARD}(?:{'|'.join(run)})")
                run = []
            parts.append(group)
        if run:
            parts.append(f"{_GUARD}(?:{'|'.join(run)})")
        self.pattern = re.compile("|".join(parts))
        index = self.pattern.groupindex
        # The rule's outer group closes last, so it is `lastindex` of a match.
        self.replacements = {index[f"_r{i}"]: repl for i, (_, _, repl) in enumerate(rules)}

    def replace(self, m: re.Match) -> str:
        return self.replacements[m.lastindex]

    def sub(self, text: str) -> str:
        return self.pattern.sub(self.replace, text)


class Masker:
    """`mask(text)` replaces every match of the rules by the rule's replacement, in one pass.

    Presets run on `re` (one alternation); a custom rule runs on RE2 (`userregex`). With custom
    rules the matches of all of them are merged: the leftmost match wins, and of matches at one
    position the first rule in order; a custom rule's empty match masks nothing.
    """

    def __init__(self, rules: Iterable[Any] | None = DEFAULT_RULES):
        self.rules: list[Rule] = resolve_rules(rules)
        # In rule order: a _PresetRun for consecutive presets, (UserRegex, replacement) for a custom rule.
        self._matchers: list[Any] = []
        presets: list[Rule] = []
        for rule in self.rules:
            if is_preset_regex(rule[1]):
                presets.append(rule)
                continue
            if presets:
                self._matchers.append(_PresetRun(presets))
                presets = []
            self._matchers.append((compile_user(rule[1], f"mask rule {rule[0]!r}"), rule[2]))
        if presets:
            self._matchers.append(_PresetRun(presets))
        runs = [m for m in self._matchers if isinstance(m, _PresetRun)]
        customs = [m[0] for m in self._matchers if not isinstance(m, _PresetRun)]
        self._sub = self._repl = None  # one run of presets: `re.sub` alone (no custom rule, or none can match)
        if len(runs) == 1:
            self._sub, self._repl = runs[0].pattern.sub, runs[0].replace
        # every custom rule's matches start with a literal (`job_`): a line without any is the presets' alone
        self._prefixes = [c.prefix for c in customs] if customs and len(runs) <= 1 and all(c.prefix for c in customs) else None

    def mask(self, text: str) -> str:
        """`text` with every rule match replaced (one pass, first rule in order wins)."""
        if self._sub is not None and len(self._matchers) == 1:
            return self._sub(self._repl, text)
        if not self._matchers or not text:
            return text
        if self._prefixes is not None and not any(p in text for p in self._prefixes):
            return self._sub(self._repl, text) if self._sub is not None else text
        return self._merged(text)

    def _merged(self, text: str) -> str:
        subject = Subject(text)
        matchers = self._matchers
        # next[i]: (start, end, replacement) of matcher i's next match at or after `pos`, or None
        nexts: list[tuple[int, int, str] | None] = [None] * len(matchers)
        pending = [True] * len(matchers)  # next[i] must be searched (again)

        def search(i: int, pos: int) -> tuple[int, int, str] | None:
            m = matchers[i]
            if isinstance(m, _PresetRun):
                found = m.pattern.search(text, pos)
                return None if found is None else (found.start(), found.end(), m.replace(found))
            span = subject.next_span(m[0], pos)
            return None if span is None else (span[0], span[1], m[1])

        customs = [i for i, m in enumerate(matchers) if not isinstance(m, _PresetRun)]
        for i in customs:
            nexts[i], pending[i] = search(i, 0), False
        if all(nexts[i] is None for i in customs):  # no custom match anywhere (most lines)
            runs = [m for m in matchers if isinstance(m, _PresetRun)]
            if len(runs) <= 1:
                return runs[0].sub(text) if runs else text
        out: list[str] = []
        pos = 0
        while True:
            best = None
            for i in range(len(matchers)):
                found = nexts[i]
                if pending[i] or (found is not None and found[0] < pos):
                    found = nexts[i] = search(i, pos)
                    pending[i] = False
                if found is not None and (best is None or found[0] < best[0]):
                    best = found
            if best is None:
                break
            start, end, repl = best
            out.append(text[pos:start])
            out.append(repl)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def config(self) -> list[list[str]]:
        """The resolved rules as JSON-ready `[name, regex, replacement]` lists."""
        return [list(r) for r in self.rules]
