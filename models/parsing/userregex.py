"""Operator regexes in linear time: a stream's `session_regex`, `format_regex` and custom mask rules.

Python's `re` backtracks: `(a+)+$` on a line of 30 `a`s takes minutes, holding the GIL, so one
stream's setting would stall every stream, the UI and the health checks. Every pattern an
operator gives therefore runs on RE2 (google-re2), whose time is linear in the line's length
whatever the pattern. Our own presets (headers, masks), written to be linear and tested on
100 kB lines, stay on `re`.

RE2 has no backreferences, lookarounds, atomic groups or possessive quantifiers, no `\\Z` (it
writes `\\z`), no repetition count above 1000, and its `\\d`, `\\w`, `\\s` and `\\b` are ASCII. A
pattern it cannot run is refused when it is set (`check`), with the reason; one it runs gives
the same matches as `re` (leftmost-first, the same group numbers and names).

One search is linear, but successive ones need not be: after each match the next search may
scan to the end of the line again (`a.*b|a` on 64 kB of `a`s: 64 k searches, seconds). So one
pattern makes at most MAX_SEARCHES searches on one line (session keys: MAX_KEYS are kept anyway;
a custom mask rule leaves the rest of such a line to the other rules): a line costs at most
MAX_SEARCHES times its length, whatever the pattern.

The calls go to RE2's `Match` on the line's UTF-8 bytes directly: google-re2's Python-level
`Match` objects cost several microseconds a line, the bare call well under one.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import re2

try:  # the binding's C++ object: one call per match, byte offsets
    from re2 import _re2

    _UNANCHORED = _re2.RE2.Anchor.UNANCHORED
    _ANCHOR_START = _re2.RE2.Anchor.ANCHOR_START
    _bytes_to_chars = _re2.BytesToCharLen
except (ImportError, AttributeError):  # pragma: no cover - another binding version: the public API
    _re2 = None
    _UNANCHORED, _ANCHOR_START = "unanchored", "anchor start"

    def _bytes_to_chars(data: bytes, start: int, end: int) -> int:
        return len(data[start:end].decode("utf-8", errors="replace"))

_NO_SPAN = (-1, -1)
MAX_SEARCHES = 256  # RE2 searches one pattern makes on one line (see above)
_ANY_BYTE = re.compile(r"(?:^|[^\\])(?:\\\\)*\\C")  # RE2's \C: one byte, would cut a character in two
UNSUPPORTED = "backreference, lookaround, atomic group or possessive quantifier; \\Z is written \\z"


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")  # a lone surrogate (JSON's \ud800) must not raise


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8", errors="surrogatepass")
    except UnicodeDecodeError:  # pragma: no cover - RE2 matches whole characters
        return data.decode("utf-8", errors="replace")


def _re2_options(dotall: bool) -> "re2.Options":
    options = re2.Options()
    options.log_errors = False  # a refused pattern is our ValueError, not a line on stderr
    options.dot_nl = dotall
    return options


def _reason(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else str(exc)
    return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)


def _literal_prefix(pattern: str) -> str:
    """Text every match starts with ('' when unknown): a cheap `find` skips what cannot match.

    Read with Python's parser; a pattern it cannot read, or one that ignores case, has none."""
    try:
        try:
            import re._parser as sre_parse  # Python 3.11+
        except ImportError:  # pragma: no cover
            import sre_parse  # type: ignore[no-redef]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "possible nested set" and the like
            parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError, ValueError, TypeError, IndexError):
        return ""
    if parsed.state.flags & re.IGNORECASE:
        return ""
    out = []
    for op, value in parsed:
        if op is not sre_parse.LITERAL:
            break
        out.append(chr(value))
    return "".join(out)


def check(pattern: str, what: str = "regex") -> None:
    """ValueError saying why RE2 cannot run `pattern` (`what` names it: "session_regex", ...)."""
    compile_user(pattern, what)


def compile_user(pattern: str, what: str = "regex", dotall: bool = False) -> "UserRegex":
    """`pattern` compiled for RE2, or ValueError: invalid, or a feature RE2 cannot run in linear time."""
    if not isinstance(pattern, str):
        raise ValueError(f"{what} must be a string, not {type(pattern).__name__}")
    if _ANY_BYTE.search(pattern):
        raise ValueError(f"{what} uses \\C (any byte), which can split a character: use . instead")
    try:
        compiled = re2.compile(pattern, _re2_options(dotall))
    except re2.error as exc:
        reason = _reason(exc)
        if "too large" in reason or "repetition size" in reason or "nests too deeply" in reason:
            raise ValueError(f"{what} is too large to run in bounded time (RE2 allows counts up to 1000 and "
                             f"programs up to 8 MiB): {reason}") from None
        try:  # would Python's re take it? Then it is a feature RE2 refuses, not a typo
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                re.compile(pattern)
            python_ok = True
        except (re.error, RecursionError, OverflowError, ValueError):
            python_ok = False
        if python_ok or "invalid perl operator" in reason or "bad repetition operator: ++" in reason:
            raise ValueError(f"{what} uses a feature RE2 cannot run in linear time ({UNSUPPORTED}): {reason}") from None
        raise ValueError(f"invalid regular expression ({what}): {reason}") from None
    except (TypeError, ValueError, OverflowError) as exc:  # e.g. a NUL the binding refuses
        raise ValueError(f"invalid regular expression ({what}): {exc}") from None
    return UserRegex(pattern, compiled)


class UserMatch:
    """What `UserRegex.match` found: `groupdict()`, `group(name)`, `end()` (character offsets)."""

    __slots__ = ("_regex", "_text", "_data", "_spans")

    def __init__(self, regex: "UserRegex", text: str, data: bytes, spans: list):
        self._regex, self._text, self._data, self._spans = regex, text, data, spans

    def _piece(self, index: int) -> str | None:
        s, e = self._spans[index]
        if s < 0:
            return None
        if self._data is None:  # ASCII: byte offsets are character offsets
            return self._text[s:e]
        return _decode(self._data[s:e])

    def group(self, key: int | str = 0) -> str | None:
        return self._piece(key if isinstance(key, int) else self._regex.groupindex[key])

    def groupdict(self) -> dict[str, str | None]:
        piece = self._piece
        return {name: piece(index) for name, index in self._regex.groupindex.items()}

    def end(self) -> int:
        e = self._spans[0][1]
        return e if self._data is None else _bytes_to_chars(self._data, 0, e)


class UserRegex:
    """An operator's pattern on RE2: `match` (at the start of a line, as `re`'s), `findall`;
    masking searches it through a `Subject`."""

    __slots__ = ("pattern", "groups", "groupindex", "prefix", "_prefix_bytes", "_compiled", "_match_fn")

    def __init__(self, pattern: str, compiled: Any):
        self.pattern = pattern
        self._compiled = compiled
        self.groups: int = compiled.groups
        self.groupindex: dict[str, int] = dict(compiled.groupindex)
        self.prefix = _literal_prefix(pattern)
        self._prefix_bytes = self.prefix.encode("utf-8")
        regexp = getattr(compiled, "_regexp", None)
        self._match_fn = regexp.Match if _re2 is not None and regexp is not None else None

    def _spans(self, anchor: Any, data: bytes, pos: int, end: int) -> list | None:
        """Byte spans of group 0..groups of the first match at or after `pos` (None: no match)."""
        if self._match_fn is not None:
            spans = self._match_fn(anchor, data, pos, end)
            return None if spans[0] == _NO_SPAN else spans
        # another binding version: its public API (slower), on the same bytes
        m = (self._compiled.match if anchor == _ANCHOR_START else self._compiled.search)(data, pos, end)
        return None if m is None else [m.span(g) for g in range(self.groups + 1)]

    def match(self, text: str) -> UserMatch | None:
        """The match at the start of `text` (like `re.Pattern.match`), or None."""
        if text.isascii():
            data = text.encode("ascii")
            spans = self._spans(_ANCHOR_START, data, 0, len(data))
            return None if spans is None else UserMatch(self, text, None, spans)
        data = _encode(text)
        spans = self._spans(_ANCHOR_START, data, 0, len(data))
        return None if spans is None else UserMatch(self, text, data, spans)

    def _byte_spans(self, data: bytes, pos: int = 0, limit: int = MAX_SEARCHES) -> Iterator[list]:
        """Every match from byte `pos` on, like `re.finditer` (an empty match moves one character
        on), from at most `limit` searches."""
        end = len(data)
        prefix = self._prefix_bytes
        while pos <= end and limit > 0:
            if prefix:
                found = data.find(prefix, pos)
                if found < 0:
                    return
                pos = found
            limit -= 1
            spans = self._spans(_UNANCHORED, data, pos, end)
            if spans is None:
                return
            yield spans
            s, e = spans[0]
            if e > s:
                pos = e
            else:  # empty: on to the next character (not into one)
                pos = e + 1
                while pos < end and data[pos] & 0xC0 == 0x80:
                    pos += 1

    def findall(self, text: str, group: int = 0, limit: int = MAX_SEARCHES) -> list[str]:
        """The text of `group` of every match, in order, like `re.findall` with one group (a group
        that did not take part is skipped), from at most `limit` searches. The hot path of
        session keys: one RE2 call a match."""
        ascii_text = text.isascii()
        data = text.encode("ascii") if ascii_text else _encode(text)
        match, prefix = self._match_fn, self._prefix_bytes
        if match is None:  # another binding version
            found = (spans[group] for spans in self._byte_spans(data, 0, limit))
            return [text[s:e] if ascii_text else _decode(data[s:e]) for s, e in found if s >= 0]
        out: list[str] = []
        pos, end = 0, len(data)
        while pos <= end and limit > 0:
            if prefix:
                pos = data.find(prefix, pos)
                if pos < 0:
                    break
            limit -= 1
            spans = match(_UNANCHORED, data, pos, end)
            s, e = spans[0]
            if s < 0:
                break
            gs, ge = spans[group]
            if gs >= 0:
                out.append(text[gs:ge] if ascii_text else _decode(data[gs:ge]))
            if e > s:
                pos = e
            else:
                pos = e + 1
                while pos < end and data[pos] & 0xC0 == 0x80:
                    pos += 1
        return out


class Subject:
    """A line searched by several patterns from increasing character positions (masking): its
    UTF-8 bytes once, byte <-> character offsets kept by a cursor (linear overall), and what is
    left of each pattern's MAX_SEARCHES on it."""

    __slots__ = ("text", "data", "ascii", "_b", "_c", "_left")

    def __init__(self, text: str):
        self.text = text
        self.ascii = text.isascii()
        self.data = text.encode("ascii") if self.ascii else _encode(text)
        self._b = self._c = 0  # a byte offset and the character offset it is
        self._left: dict[int, int] = {}  # id(regex) -> searches left

    def to_char(self, offset: int) -> int:
        if self.ascii:
            return offset
        if offset < self._b:
            self._b = self._c = 0
        self._c += _bytes_to_chars(self.data, self._b, offset)
        self._b = offset
        return self._c

    def to_byte(self, pos: int) -> int:
        if self.ascii:
            return pos
        if pos < self._c:
            self._b = self._c = 0
        self._b += len(_encode(self.text[self._c : pos]))
        self._c = pos
        return self._b

    def next_span(self, regex: UserRegex, pos: int) -> tuple[int, int] | None:
        """Character span of `regex`'s first non-empty match at or after character `pos`; None
        also once the pattern's searches on this line are spent."""
        left = self._left.get(id(regex), MAX_SEARCHES)
        for spans in regex._byte_spans(self.data, self.to_byte(pos), left):
            left -= 1
            s, e = spans[0]
            if e > s:
                self._left[id(regex)] = left
                return self.to_char(s), self.to_char(e)
        self._left[id(regex)] = 0  # no match left (or no search left): never searched again
        return None
