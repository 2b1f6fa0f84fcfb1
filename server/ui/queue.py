"""The triage queue's data: filters, incidents and their template groups, paging.

An incident is a run of one stream's anomalies (matching the filters) where each follows the
previous one within `incident_gap_seconds`. Inside an incident, anomalies of one template form
a group: one row with the template, one example line, first/last seen and the count; actions
on the row apply to every anomaly of it. Incidents are listed newest first (by last seen) and
paged; the newest `MAX_SCAN` matching anomalies are grouped (the page says when more match).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from logsense.server.tables import ANOMALY_STATUSES, Anomaly, LogLine, Stream
from logsense.server.ui.core import UiError, sev_rank

PAGE_SIZE = 20  # incidents per page
MAX_SCAN = 5000  # newest matching anomalies grouped into incidents
SEVERITIES = ("danger", "watch")
STATUS_CHOICES = (*ANOMALY_STATUSES, "any")


def parse_time(value: str | None, name: str) -> datetime | None:
    """A datetime-local (`2024-05-01T12:30`) or ISO 8601 value, read as UTC when it has no zone."""
    if value is None or not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UiError(400, f"{name}: {value[:40]!r} is not a date and time (like 2024-05-01T12:30)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Filters:
    stream: str | None = None
    severity: str | None = None
    status: str = "open"
    since: datetime | None = None
    until: datetime | None = None
    page: int = 1

    @classmethod
    def parse(cls, params: Any) -> "Filters":
        """From query parameters or a form; UiError(400) says which one is wrong."""
        def get(name: str) -> str | None:
            v = params.get(name)
            return None if v is None or str(v).strip() == "" else str(v).strip()

        severity, status = get("severity"), get("status") or "open"
        if severity is not None and severity not in SEVERITIES:
            raise UiError(400, f"severity must be one of {', '.join(SEVERITIES)}, not {severity[:20]!r}")
        if status not in STATUS_CHOICES:
            raise UiError(400, f"status must be one of {', '.join(STATUS_CHOICES)}, not {status[:20]!r}")
        page_text = get("page") or "1"
        if not page_text.isdigit() or not 1 <= int(page_text) <= 100_000:
            raise UiError(400, f"page must be a whole number from 1, not {page_text[:20]!r}")
        since, until = parse_time(get("since"), "since"), parse_time(get("until"), "until")
        if since and until and since >= until:
            raise UiError(400, "since must be before until")
        stream = get("stream")
        if stream is not None and len(stream) > 64:
            raise UiError(400, "stream: no stream has a name that long")
        return cls(stream, severity, status, since, until, int(page_text))

    def params(self, **changes: Any) -> dict:
        f = replace(self, **changes) if changes else self
        return {
            "stream": f.stream, "severity": f.severity, "status": None if f.status == "open" else f.status,
            "since": f.since.strftime("%Y-%m-%dT%H:%M") if f.since else None,
            "until": f.until.strftime("%Y-%m-%dT%H:%M") if f.until else None,
            "page": None if f.page == 1 else f.page,
        }

    def where(self, q: Any) -> Any:
        if self.stream is not None:
            q = q.where(Stream.name == self.stream)
        if self.severity is not None:
            q = q.where(Anomaly.severity == self.severity)
        if self.status != "any":
            q = q.where(Anomaly.status == self.status)
        if self.since is not None:
            q = q.where(Anomaly.created_at >= self.since)
        if self.until is not None:
            q = q.where(Anomaly.created_at < self.until)
        return q


@dataclass
class Group:
    """The anomalies of one template inside one incident: one row of the queue."""

    ids: list[int]
    stream: str
    stream_id: int
    template_id: int | None
    first_seen: datetime
    last_seen: datetime
    severity: str = "watch"
    kinds: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    newest_id: int = 0
    newest_line_id: int = 0  # newest anomaly of kind "line" (RAPID flagged the line itself)
    example_line_id: int | None = None
    template: str | None = None
    example: str | None = None
    masked: str | None = None

    @property
    def key(self) -> str:
        return f"g{min(self.ids)}"

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def id_list(self) -> str:
        return ",".join(str(i) for i in sorted(self.ids))

    @property
    def detail_id(self) -> int:
        """The anomaly the row's "Details" opens: the newest line anomaly (its verdict teaches the
        line), else the newest one."""
        return self.newest_line_id or self.newest_id

    @property
    def status(self) -> str:
        return self.statuses.most_common(1)[0][0] if len(self.statuses) == 1 else "mixed"


@dataclass
class Incident:
    stream: str
    stream_id: int
    groups: list[Group]

    @property
    def first_seen(self) -> datetime:
        return min(g.first_seen for g in self.groups)

    @property
    def last_seen(self) -> datetime:
        return max(g.last_seen for g in self.groups)

    @property
    def count(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def severity(self) -> str:
        return max((g.severity for g in self.groups), key=sev_rank)

    @property
    def key(self) -> str:
        return f"i{min(min(g.ids) for g in self.groups)}"


@dataclass
class QueuePage:
    filters: Filters
    incidents: list[Incident]
    total_incidents: int
    total_anomalies: int  # matching the filters
    truncated: bool  # more than MAX_SCAN matched: only the newest were grouped
    newest_id: int  # for "new since" polling

    @property
    def has_open(self) -> bool:
        return any(g.statuses.get("open") for i in self.incidents for g in i.groups)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total_incidents // PAGE_SIZE))


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def incidents_of(rows: list[Any], gap_seconds: float) -> list[Incident]:
    """Rows (id, stream_id, stream name, created_at, severity, status, template_id, kind, line_id),
    any order, as incidents newest first; groups inside them newest first."""
    by_stream: dict[int, list[Any]] = {}
    for r in rows:
        by_stream.setdefault(r.stream_id, []).append(r)
    incidents: list[Incident] = []
    for stream_rows in by_stream.values():
        stream_rows.sort(key=lambda r: (_aware(r.created_at), r.id))
        runs: list[list[Any]] = []
        for r in stream_rows:
            if runs and (_aware(r.created_at) - _aware(runs[-1][-1].created_at)).total_seconds() <= gap_seconds:
                runs[-1].append(r)
            else:
                runs.append([r])
        for run in runs:
            groups: dict[Any, Group] = {}
            for r in run:
                gkey = r.template_id if r.template_id is not None else f"{r.kind}-none"
                when = _aware(r.created_at)
                g = groups.get(gkey)
                if g is None:
                    g = groups[gkey] = Group([], r.stream, r.stream_id, r.template_id, when, when)
                g.ids.append(r.id)
                g.first_seen, g.last_seen = min(g.first_seen, when), max(g.last_seen, when)
                if sev_rank(r.severity) > sev_rank(g.severity):
                    g.severity = r.severity
                g.kinds[r.kind] += 1
                g.statuses[r.status] += 1
                if r.kind == "line" and r.id > g.newest_line_id:
                    g.newest_line_id = r.id
                if r.id > g.newest_id:
                    g.newest_id = r.id
                    if r.line_id is not None:
                        g.example_line_id = r.line_id
                elif g.example_line_id is None and r.line_id is not None:
                    g.example_line_id = r.line_id
            ordered = sorted(groups.values(), key=lambda g: (g.last_seen, g.newest_id), reverse=True)
            incidents.append(Incident(run[0].stream, run[0].stream_id, ordered))
    incidents.sort(key=lambda i: (i.last_seen, max(g.newest_id for g in i.groups)), reverse=True)
    return incidents


def _rows_query(filters: Filters) -> Any:
    q = select(Anomaly.id, Anomaly.stream_id, Stream.name.label("stream"), Anomaly.created_at, Anomaly.severity,
               Anomaly.status, Anomaly.template_id, Anomaly.kind, Anomaly.line_id
               ).join(Stream, Stream.id == Anomaly.stream_id)
    return filters.where(q)


def fill_details(db: Session, registry: Any, groups: list[Group]) -> None:
    """Template texts (from the stream's live parser) and one example line per group."""
    line_ids = [g.example_line_id for g in groups if g.example_line_id is not None]
    lines = {}
    if line_ids:
        lines = {r.id: r for r in db.execute(
            select(LogLine.id, LogLine.raw, LogLine.masked).where(LogLine.id.in_(line_ids))).all()}
    for g in groups:
        line = lines.get(g.example_line_id)
        if line is not None:
            g.example, g.masked = line.raw, line.masked
        model = registry.peek(g.stream_id) if registry is not None else None
        if model is not None and g.template_id is not None:
            try:
                g.template = model.template(g.template_id)
            except Exception:  # noqa: BLE001 (an unknown id: show the masked line instead)
                g.template = None


def count_matching(db: Session, filters: Filters) -> int:
    return db.execute(select(func.count()).select_from(_rows_query(filters).subquery())).scalar() or 0


def load_page(db: Session, registry: Any, filters: Filters, gap_seconds: float) -> QueuePage:
    total = count_matching(db, filters)
    rows = db.execute(_rows_query(filters).order_by(Anomaly.id.desc()).limit(MAX_SCAN)).all()
    incidents = incidents_of(rows, gap_seconds)
    start = (filters.page - 1) * PAGE_SIZE
    shown = incidents[start : start + PAGE_SIZE]
    fill_details(db, registry, [g for i in shown for g in i.groups])
    return QueuePage(filters, shown, len(incidents), total, total > MAX_SCAN, max((r.id for r in rows), default=0))


def groups_of_ids(db: Session, registry: Any, ids: list[int]) -> list[Group]:
    """The anomalies `ids` as groups (by stream and template), with details, for re-rendering rows."""
    if not ids:
        return []
    q = select(Anomaly.id, Anomaly.stream_id, Stream.name.label("stream"), Anomaly.created_at, Anomaly.severity,
               Anomaly.status, Anomaly.template_id, Anomaly.kind, Anomaly.line_id
               ).join(Stream, Stream.id == Anomaly.stream_id).where(Anomaly.id.in_(ids))
    groups = [g for inc in incidents_of(db.execute(q).all(), float("inf")) for g in inc.groups]
    fill_details(db, registry, groups)
    return groups


def count_new(db: Session, filters: Filters, after_id: int) -> int:
    q = _rows_query(replace(filters, page=1)).where(Anomaly.id > after_id)
    return db.execute(select(func.count()).select_from(q.subquery())).scalar() or 0


def open_counts(db: Session) -> dict[str, int]:
    """Open anomalies by severity, over every stream."""
    rows = db.execute(select(Anomaly.severity, func.count(Anomaly.id)).where(Anomaly.status == "open")
                      .group_by(Anomaly.severity)).all()
    out = {"danger": 0, "watch": 0, **{s: n for s, n in rows}}
    out["total"] = sum(n for s, n in rows)
    return out


def parse_ids(values: list[str], limit: int = 1000) -> list[int]:
    """Anomaly ids from form values like "3,4,9" (one per selected row); UiError(400) on junk."""
    ids: list[int] = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit() or len(part) > 18:
                raise UiError(400, f"{part[:20]!r} is not an anomaly id")
            ids.append(int(part))
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise UiError(400, "no anomaly selected")
    if len(ids) > limit:
        raise UiError(400, f"at most {limit} anomalies at once ({len(ids)} selected)")
    return ids
