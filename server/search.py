"""Search over stored lines: text, attributes, stream, severity, log time; newest first.

SQLite: an FTS5 index (`line_search`, migration 0015) whose content is `log_lines` itself. Ingest
does not feed it (it would pay for every line); `Indexer`, a background thread, adds lines in
id order and records how far it got in `search_state`. A search reads the index up to there
and scans the few newer lines directly, so what was just stored is found too. PostgreSQL: the
GIN index over `to_tsvector('simple', raw)` that PostgreSQL keeps itself.

A query's words must all occur (whole words; `word*` for a prefix; `"a b"` for a phrase);
`key=value` filters match an attribute exactly. The index narrows; every candidate is checked
against the whole query in Python before it is returned.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from logsense.server import store
from logsense.server.loop import Loop
from logsense.server.tables import LogLine, SearchState, Stream


INDEX_CHUNK = 5000  # lines indexed per transaction (the write lock is held meanwhile)
CANDIDATES_PER_STEP = 2000  # index hits fetched at a time while filters reject some
MAX_CANDIDATES = 200_000  # then the answer says `truncated`
MAX_TAIL = 50_000  # unindexed lines a search scans directly
_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass
class Query:
    text: str = ""  # words (all must occur), "phrases", prefix*
    attributes: dict[str, str] = field(default_factory=dict)  # exact attribute values
    stream_ids: list[int] | None = None
    severity: str | None = None
    since: float | None = None  # log time (epoch seconds); a line without one: when it was received
    until: float | None = None
    before_id: int | None = None  # paging: only lines older than this id
    limit: int = 100


class Hit(BaseModel):
    """A stored line that matched; also the API's answer for it (`stream` filled in by the caller)."""

    id: int
    stream_id: int
    stream: str = ""
    timestamp: float | None  # log time (epoch seconds), from the line's header or its record
    received_at: datetime
    severity: str
    raw: str
    attributes: dict | None
    template_id: int | None
    sessions: list
    marks: list[tuple[int, int]]  # [start, end) character spans of `raw` the query's words matched


@dataclass
class Result:
    hits: list[Hit]
    indexed_to: int  # lines up to this id are in the index; newer ones were scanned
    truncated: bool  # the candidate budget ran out before `limit` hits: narrow the query


# --------------------------------------------------------------------------- the query


def terms(q: str) -> list[tuple[list[str], bool]]:
    """The query as (words, prefix) terms: a quoted phrase is one term of several words."""
    out: list[tuple[list[str], bool]] = []
    for phrase, word in re.findall(r'"([^"]*)"|(\S+)', q):
        words = _TOKEN.findall(phrase if phrase else word)
        if words:
            out.append(([w.lower() for w in words], bool(word) and word.endswith("*")))
    return out


def fts_query(q: Query) -> str | None:
    """The FTS5 MATCH expression of a query (None: nothing for the index to narrow by)."""
    parts = []
    for words, prefix in terms(q.text):
        phrase = '"' + " ".join(words) + '"'
        parts.append(phrase + ("*" if prefix else ""))
    for value in q.attributes.values():
        words = _TOKEN.findall(value)
        if words:
            parts.append('attributes : "' + " ".join(w.lower() for w in words) + '"')
    return " AND ".join(parts) or None


def _pattern(words: list[str], prefix: bool) -> re.Pattern:
    body = r"\W+".join(re.escape(w) for w in words)
    return re.compile(rf"(?<!\w){body}" + ("" if prefix else r"(?!\w)"), re.IGNORECASE)


def marks(raw: str, q: Query, attributes: Any = None) -> list[tuple[int, int]] | None:
    """Spans of `raw` matching each term, or None when a term occurs neither there nor in the
    line's attributes (no hit)."""
    spans: list[tuple[int, int]] = []
    attrs = None
    for words, prefix in terms(q.text):
        pattern = _pattern(words, prefix)
        found = [(m.start(), m.end()) for m in pattern.finditer(raw)]
        if not found:
            if attrs is None:
                attrs = attributes if isinstance(attributes, str) else json.dumps(attributes or {})
            if pattern.search(attrs) is None:
                return None
        spans += found
    return sorted(spans)


def _attributes_match(attributes: Any, wanted: dict[str, str]) -> bool:
    if not wanted:
        return True
    if isinstance(attributes, str):
        try:
            attributes = json.loads(attributes)
        except ValueError:
            return False
    if not isinstance(attributes, dict):
        return False
    return all(k in attributes and str(attributes[k]) == v for k, v in wanted.items())


def _when(row: Any) -> float:
    if row.timestamp is not None:
        return float(row.timestamp)
    received = row.received_at
    if isinstance(received, str):
        received = datetime.fromisoformat(received)
    if received.tzinfo is None:
        received = received.replace(tzinfo=timezone.utc)
    return received.timestamp()


# --------------------------------------------------------------------------- searching


_COLUMNS = (LogLine.id, LogLine.stream_id, LogLine.timestamp, LogLine.received_at, LogLine.severity,
            LogLine.raw, LogLine.attributes, LogLine.template_id, LogLine.sessions)


def search(session: Session, q: Query) -> Result:
    """Lines matching `q`, newest first, at most `q.limit`."""
    dialect = session.get_bind().dialect.name
    indexed = indexed_to(session) if dialect == "sqlite" else None
    hits: list[Hit] = []
    truncated = False
    if indexed is not None:  # the newest lines, not in the index yet: scanned
        tail, complete = _scan(session, q, after_id=indexed, budget=MAX_TAIL)
        hits += tail
        truncated = not complete
    if len(hits) < q.limit and not truncated:
        more, truncated = _indexed_hits(session, q, dialect, indexed, q.limit - len(hits))
        hits += more
    return Result(hits=hits[: q.limit], indexed_to=indexed if indexed is not None else 0, truncated=truncated)


def _keep(row: Any, q: Query) -> Hit | None:
    if q.stream_ids is not None and row.stream_id not in q.stream_ids:
        return None
    if q.severity is not None and row.severity != q.severity:
        return None
    if q.since is not None or q.until is not None:
        when = _when(row)
        if (q.since is not None and when < q.since) or (q.until is not None and when > q.until):
            return None
    if not _attributes_match(row.attributes, q.attributes):
        return None
    spans = marks(row.raw, q, row.attributes)
    if spans is None:
        return None
    return Hit(id=row.id, stream_id=row.stream_id, timestamp=row.timestamp, received_at=row.received_at,
               severity=row.severity, raw=row.raw, attributes=row.attributes, template_id=row.template_id,
               sessions=row.sessions or [], marks=spans)


def _scan(session: Session, q: Query, after_id: int, budget: int) -> tuple[list[Hit], bool]:
    """Lines newer than `after_id` (and older than `q.before_id`), checked one by one; and
    whether all of them were (False: over `budget`, the index lags)."""
    stmt = select(*_COLUMNS).where(LogLine.id > after_id)
    if q.before_id is not None:
        stmt = stmt.where(LogLine.id < q.before_id)
    if q.stream_ids is not None:
        stmt = stmt.where(LogLine.stream_id.in_(q.stream_ids))
    out = []
    rows = session.execute(stmt.order_by(LogLine.id.desc()).limit(budget)).all()
    for row in rows:
        hit = _keep(row, q)
        if hit is not None:
            out.append(hit)
            if len(out) >= q.limit:
                return out, True
    return out, len(rows) < budget


def _indexed_hits(session: Session, q: Query, dialect: str, indexed: int | None, want: int) -> tuple[list[Hit], bool]:
    match = fts_query(q)
    upper = q.before_id if q.before_id is not None else None
    if indexed is not None:
        upper = min(upper, indexed + 1) if upper is not None else indexed + 1

    def by_index(below: int | None) -> tuple[list, int | None]:
        ids = _candidate_ids(session, dialect, match, q, below)
        rows = session.execute(select(*_COLUMNS).where(LogLine.id.in_(ids)).order_by(LogLine.id.desc())).all()
        return rows, (min(ids) if ids else None)

    def by_id(below: int | None) -> tuple[list, int | None]:  # nothing to look up: the newest lines
        stmt = select(*_COLUMNS)
        if below is not None:
            stmt = stmt.where(LogLine.id < below)
        if q.stream_ids is not None:
            stmt = stmt.where(LogLine.stream_id.in_(q.stream_ids))
        rows = session.execute(stmt.order_by(LogLine.id.desc()).limit(CANDIDATES_PER_STEP)).all()
        return rows, (rows[-1].id if rows else None)

    return _walk(q, want, upper, by_index if match is not None else by_id)


def _walk(q: Query, want: int, upper: int | None, fetch: Any) -> tuple[list[Hit], bool]:
    """Check candidates newest first, a step at a time (`fetch(below)`: rows, and where the next
    step starts), until `want` hits, no more candidates, or the budget (then True: truncated)."""
    out: list[Hit] = []
    seen = 0
    while seen < MAX_CANDIDATES:
        rows, upper = fetch(upper)
        if upper is None:
            return out, False
        seen += max(len(rows), 1)
        for row in rows:
            hit = _keep(row, q)
            if hit is not None:
                out.append(hit)
                if len(out) >= want:
                    return out, False
    return out, True


def _candidate_ids(session: Session, dialect: str, match: str, q: Query, upper: int | None) -> list[int]:
    if dialect == "sqlite":
        sql = "SELECT rowid FROM line_search WHERE line_search MATCH :m"
        params: dict[str, Any] = {"m": match, "n": CANDIDATES_PER_STEP}
        if upper is not None:
            sql += " AND rowid < :upper"
            params["upper"] = upper
        return [r[0] for r in session.execute(text(sql + " ORDER BY rowid DESC LIMIT :n"), params).all()]
    words = " ".join(w for words, _ in terms(q.text) for w in words) or " ".join(q.attributes.values())
    stmt = select(LogLine.id).where(text("to_tsvector('simple', raw) @@ plainto_tsquery('simple', :w)")
                                    .bindparams(w=words))
    if q.stream_ids is not None:
        stmt = stmt.where(LogLine.stream_id.in_(q.stream_ids))
    if upper is not None:
        stmt = stmt.where(LogLine.id < upper)
    return list(session.execute(stmt.order_by(LogLine.id.desc()).limit(CANDIDATES_PER_STEP)).scalars())


def stream_ids(session: Session, names: list[str]) -> dict[str, int]:
    """{name: id} of those of `names` that exist."""
    return dict(session.execute(select(Stream.name, Stream.id).where(Stream.name.in_(names))).all())


def stream_names(session: Session) -> dict[str, int]:
    """{name: id} of every stream."""
    return dict(session.execute(select(Stream.name, Stream.id)).all())


# --------------------------------------------------------------------------- the index


def indexed_to(session: Session) -> int:
    """Lines up to this id are in the full-text index (SQLite)."""
    return session.execute(select(SearchState.last_line_id).where(SearchState.id == 1)).scalar() or 0


def index_some(engine: Engine, chunk: int = INDEX_CHUNK) -> int:
    """Add the next lines to the SQLite index, up to `chunk`; how many (0: up to date)."""
    with Session(engine) as session:
        start = indexed_to(session)
        end = session.execute(select(LogLine.id).where(LogLine.id > start).order_by(LogLine.id)
                              .offset(chunk - 1).limit(1)).scalar()
        if end is None:  # fewer than `chunk` new lines: up to the newest (max(): one index probe)
            end = session.execute(select(func.max(LogLine.id))).scalar()
        if end is None or end <= start:
            return 0
    with store.write_session(engine) as session:
        if indexed_to(session) != start:  # another process indexed meanwhile
            return 0
        n = session.execute(text(
            "INSERT INTO line_search(rowid, raw, attributes) SELECT id, raw, attributes FROM log_lines "
            "WHERE id > :a AND id <= :b"), {"a": start, "b": end}).rowcount
        session.execute(update(SearchState).where(SearchState.id == 1).values(last_line_id=end))
    return int(n or 0)


class Indexer(Loop):
    """Background thread that keeps the SQLite full-text index up to date (nothing on PostgreSQL)."""

    name = "logsense-search-index"

    def __init__(self, engine: Engine, poll_seconds: float = 1.0):
        super().__init__(poll_seconds)
        self.engine = engine

    def start(self) -> "Indexer":
        if self.engine.dialect.name == "sqlite":
            super().start()
        return self

    def round(self) -> bool:
        return index_some(self.engine) == INDEX_CHUNK
