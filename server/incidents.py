"""Grouping by cause: what one cause produced is one row to read, not thousands.

An incident is a run of one stream's anomalies where each follows the previous one within
`incident_gap_seconds`. Inside an incident, the anomalies of one template (line and window
anomalies alike) form a group: one row of the queue with the template, one example line,
first/last seen and the count. The UI's queue and `GET /api/v1/anomalies?group=template` both
show these groups, and an answer on a group applies to all its members.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from logsense.server.tables import Anomaly, LogLine, Stream

SEVERITY_RANK = {"watch": 1, "danger": 2}
MAX_GROUPED = 5000  # the newest matching anomalies that are grouped (older ones: page the plain list)


def sev_rank(severity: str | None) -> int:
    return SEVERITY_RANK.get(severity or "", 0)


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


def rows_select() -> Any:
    """The anomaly columns `incidents_of` reads, joined to the stream's name; add filters."""
    return select(Anomaly.id, Anomaly.stream_id, Stream.name.label("stream"), Anomaly.created_at, Anomaly.severity,
                  Anomaly.status, Anomaly.template_id, Anomaly.kind, Anomaly.line_id
                  ).join(Stream, Stream.id == Anomaly.stream_id)


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
