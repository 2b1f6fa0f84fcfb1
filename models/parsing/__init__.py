"""Parsing: raw line -> header, masked message, template id, session keys.

```python
parser = LogParser(preset="hdfs", session_regex=r"blk_-?\\d+")
p = parser.parse("081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-160 src: /10.250.19.102:54106 ...")
p.masked       # 'Receiving block <BLK> src: /<IP> ...'
p.template_id  # 1 (stable for the stream's life, saved with `save(dir)`)
p.sessions     # ('blk_-160',)
```

`preset="auto"` recognizes the header layout from the stream's own lines; `header_parse_rate`
says how many lines' headers parsed. Masking applies to the message only; session keys come from the unmasked message. Not
thread-safe (Drain mutates its state): one lock around `parse` per parser.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from logsense.models.parsing.headers import AUTO_LAYOUTS, PRESETS, Header, HeaderParser, LayoutDetector, parse_timestamp
from logsense.models.parsing.masking import DEFAULT_RULES, PRESET_RULES, Masker
from logsense.models.parsing.miner import TemplateMiner, write_json
from logsense.models.parsing.sessions import SessionKeyer, count_windows, time_windows

__all__ = [
    "AUTO_LAYOUTS", "DEFAULT_RULES", "PRESETS", "PRESET_RULES", "Header", "HeaderParser", "LayoutDetector", "LogParser",
    "Masker", "ParsedLine", "Prepared", "SessionKeyer", "TemplateMiner", "count_windows", "parse_timestamp", "prepare_lines", "time_windows",
]

log = logging.getLogger("logsense.parsing")

FORMAT = "logsense.parser"
VERSION = 1
CONFIG_FILE = "parser.json"
MINER_FILE = "miner.json"


class ParsedLine(NamedTuple):
    """One parsed line (a NamedTuple: cheap to build at tens of thousands of lines per second)."""

    raw: str
    timestamp: float | None  # epoch seconds
    level: str | None  # upper-cased
    message: str  # the line without its header
    masked: str  # the message with variables replaced (`<BLK>`, `<IP>`, `<NUM>`, ...)
    template_id: int | None  # None only with learn=False for a text no template covers
    sessions: tuple[str, ...]  # session keys (by session_regex) found in the unmasked message
    component: str | None = None


Prepared = tuple  # (timestamp, level, message, masked, session keys, component, header parsed): `prepare_lines`


def prepare_lines(headers: HeaderParser, masker: Masker, keyer: SessionKeyer | None,
                  lines: Sequence[str]) -> list[Prepared]:
    """Header, masking and session keys of each line: everything of parsing but the template."""
    read, mask = headers.read, masker.mask
    keys = keyer.keys if keyer is not None else None
    out = []
    for line in lines:
        ts, level, message, component, parsed = read(line)
        out.append((ts, level, message, mask(message), tuple(keys(message)) if keys else (), component, parsed))
    return out


class LogParser:
    """Header, masking, template mining and session keys of one stream, with its own save/load.

    `mask_rules`: None for the defaults (`DEFAULT_RULES`), else preset names, `(name, regex,
    replacement)` tuples or dicts (custom rules are tried first). `miner` may be replaced by
    another TemplateMiner (settings changed, templates kept).
    """

    def __init__(
        self,
        preset: str = "generic",
        regex: str | None = None,
        mask_rules: Sequence[Any] | None = None,
        session_regex: str | None = None,
        sim_th: float = 0.4,
        depth: int = 4,
    ):
        self.preset = preset
        self.regex = regex or None
        self.session_regex = session_regex or None
        self.headers = HeaderParser(preset, self.regex)
        self.masker = Masker(mask_rules)
        self.mask_rules = None if mask_rules is None else self.masker.config()
        self.keyer = SessionKeyer(self.session_regex)
        self.miner = TemplateMiner(sim_th=sim_th, depth=depth)
        self.lines_seen = 0  # since this parser was built (not saved)
        self.headers_parsed = 0

    @property
    def header_parse_rate(self) -> float | None:
        """Lines whose header parsed / lines seen (None before the first line): how well the
        format fits; a low rate means timestamps and levels are missing and headers are mined."""
        return self.headers_parsed / self.lines_seen if self.lines_seen else None

    @property
    def layout(self) -> str:
        """The preset that reads lines now (`auto`'s current choice)."""
        return self.headers.layout

    def parse(self, line: str | bytes, learn: bool = True) -> ParsedLine:
        """Parse one raw line. learn=False never changes the templates (unknown text: template_id None)."""
        ts, level, message, component, parsed = self.headers.read(line)
        self.lines_seen += 1
        self.headers_parsed += parsed
        masked = self.masker.mask(message)
        miner = self.miner
        template_id = miner.add(masked) if learn else miner.match(masked)
        keys = tuple(self.keyer.keys(message)) if self.session_regex else ()
        raw = line if isinstance(line, str) else _raw_text(line)
        return ParsedLine(raw, ts, level, message, masked, template_id, keys, component)

    def parse_many(self, lines: Iterable[str | bytes], learn: bool = True) -> list[ParsedLine]:
        """`parse` for each line, in order."""
        parse = self.parse
        return [parse(line, learn) for line in lines]

    # The two halves of `parse`, for a helper process (`models.parsing.helper`): `prepare` needs
    # no state (header, masking, session keys: most of the time), `finish` mines the template.

    def prepare_many(self, lines: Sequence[str]) -> list[Prepared]:
        """The stateless half of `parse` for each line: what `finish_many` takes."""
        return prepare_lines(self.headers, self.masker, self.keyer if self.session_regex else None, lines)

    def finish_many(self, lines: Sequence[str], prepared: Sequence[Prepared], learn: bool = True) -> list[ParsedLine]:
        """ParsedLines from `prepare_many`'s output (computed here or in a helper process):
        the same as `parse_many(lines, learn)`."""
        miner = self.miner
        mine = miner.add if learn else miner.match
        out = [ParsedLine(line, ts, level, message, masked, mine(masked), keys, component)
               for line, (ts, level, message, masked, keys, component, _) in zip(lines, prepared)]
        self.lines_seen += len(out)
        self.headers_parsed += sum(p[6] for p in prepared)
        return out

    def config(self) -> dict[str, Any]:
        """What rebuilds this parser (the miner has its own file)."""
        return {
            "preset": self.preset, "regex": self.regex, "mask_rules": self.mask_rules,
            "session_regex": self.session_regex, "sim_th": self.miner.sim_th, "depth": self.miner.depth,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Directory `path`: parser.json (config) and miner.json (templates), each written atomically.

        The miner is written first, so a crash between the two leaves a readable pair.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.miner.save(path / MINER_FILE)
        write_json(path / CONFIG_FILE, {"format": FORMAT, "version": VERSION, "config": self.config()})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LogParser":
        """The parser `save` wrote; ValueError for a file of another format or a newer version."""
        path = Path(path)
        with open(path / CONFIG_FILE, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path / CONFIG_FILE} is not a {FORMAT} file")
        if int(meta.get("version", 0)) > VERSION:
            raise ValueError(f"{FORMAT} version {meta.get('version')} is newer than this code ({VERSION})")
        cfg = meta["config"]
        rules = cfg.get("mask_rules")
        parts = {"preset": cfg.get("preset", "generic"), "regex": cfg.get("regex"),
                 "mask_rules": None if rules is None else [tuple(r) for r in rules],
                 "session_regex": cfg.get("session_regex")}
        parser = cls(**_runnable(parts, path), sim_th=cfg.get("sim_th", 0.4), depth=cfg.get("depth", 4))
        parser.miner = TemplateMiner.load(path / MINER_FILE)
        return parser


def _runnable(parts: dict[str, Any], path: Path) -> dict[str, Any]:
    """A saved parser's regexes, less those this version refuses (an older one let backreferences
    and lookarounds through; RE2 runs neither): its templates still load, and the stream's
    settings (`StreamSettings.read_stored`) have fallen back to the defaults for the same fields."""
    out = dict(parts)
    checks = (("regex", lambda v: HeaderParser(out["preset"], v)), ("mask_rules", Masker), ("session_regex", SessionKeyer))
    for name, build in checks:
        if out[name] is not None:
            try:
                build(out[name])
            except ValueError as exc:
                log.warning("%s: saved %s dropped: %s", path, name, exc)
                out[name] = None
    return out


def _raw_text(line: object) -> str:
    if isinstance(line, (bytes, bytearray, memoryview)):
        return bytes(line).decode("utf-8", errors="replace")
    return "" if line is None else str(line)
