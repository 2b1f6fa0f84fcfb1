"""Grouping by cause: what one cause produced is one row to read, not thousands.

An incident is a run of one stream's anomalies where each follows the previous one within
`incident_gap_seconds`. Inside an incident, the anomalies of one template (line and window
anomalies alike) form a group: one row of the queue with the template, one example line,
first/last seen and the count. The UI's queue and `GET /api/v1/anomalies?group=template` both
show these groups, and an answer on a group applies to all its members.

Incidents are also stored rows (`tables.Incident`, `anomalies.incident_id`): `store.assign_incidents`
opens and extends them as anomalies are stored (by the same gap rule), operators acknowledge,
assign, resolve, reopen and annotate them (`/api/v1/incidents`, `/incidents`). One resolves by
itself once none of its anomalies is open, and reopens if one it resolved so is open again (an
answer undone) (`settle`: run by the scheduler every minute and before the incident pages and API
answer). The functions below the queue's read them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from logsense.server.tables import Anomaly, IncidentNote, LogLine, Stream, utcnow
from logsense.server.tables import Incident as IncidentRow

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


# --------------------------------------------------------------------------- stored incidents

STATUS_FILTERS = ("open", "acknowledged", "resolved", "unresolved", "any")  # unresolved: open or acknowledged
MAX_LIST = 500


@dataclass
class IncidentView:
    """A stored incident as the pages and the API show it."""

    row: IncidentRow
    stream: str
    open: int = 0  # its anomalies still open
    template: str | None = None  # its first anomaly's template text (the live parser's)
    groups: list[Group] = field(default_factory=list)  # the detail only: its anomalies by template
    notes: list[IncidentNote] = field(default_factory=list)  # the detail only, oldest first

    @property
    def title(self) -> str:
        return self.row.title or self.template or ("window anomaly" if self.row.template_id is None
                                                   else f"template {self.row.template_id}")


def settle(engine: Any, stream_id: int | None = None, incident_ids: list[int] | None = None,
           reopen_since: datetime | None = None) -> list[int]:
    """`store.settle_incidents`, taking the write lock only when something is to change; the ids
    resolved."""
    from logsense.server import store

    now = utcnow()
    with Session(engine) as db:
        done, other = store.settle_incidents(db, now, stream_id, incident_ids, dry_run=True, reopen_since=reopen_since)
    if not done and not other:
        return []
    with store.write_session(engine) as db:
        done, _ = store.settle_incidents(db, now, stream_id, incident_ids, reopen_since=reopen_since)
    return done


def change(engine: Any, incident_id: int, actor: str, status: str | None, assignee: str | None) -> None:
    """Settle the incident, then apply an operator's change: `status`, `assignee` ("": unassign,
    None: keep). LookupError when there is no such incident."""
    from logsense.server import store

    with store.write_session(engine) as db:
        now = utcnow()
        store.settle_incidents(db, now, incident_ids=[incident_id])
        name = None if assignee is None else assignee.strip()
        store.set_incident(db, incident_id, now, actor, status, assignee=name or None, unassign=name == "")


def add_note(engine: Any, incident_id: int, author: str, text: str) -> None:
    """A note on the incident; LookupError when there is no such incident."""
    from logsense.server import store

    with store.write_session(engine) as db:
        store.add_incident_note(db, incident_id, author, text, utcnow())


def _template_of(registry: Any, stream_id: int, template_id: int | None) -> str | None:
    model = registry.peek(stream_id) if registry is not None else None
    if model is None or template_id is None:
        return None
    try:
        return model.template(template_id)
    except Exception:  # noqa: BLE001 (an unknown id: the stored title stands)
        return None


def _open_counts(db: Session, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    return dict(db.execute(select(Anomaly.incident_id, func.count(Anomaly.id))
                           .where(Anomaly.incident_id.in_(ids), Anomaly.status == "open")
                           .group_by(Anomaly.incident_id)).all())


def list_incidents(db: Session, registry: Any, stream: str | None = None, status: str = "any",
                   before_id: int | None = None, limit: int = 50, anomaly_id: int | None = None,
                   assignee: str | None = None) -> list[IncidentView]:
    """Stored incidents, newest first (page with `before_id`); `status` one of `STATUS_FILTERS`."""
    q = select(IncidentRow, Stream.name).join(Stream, Stream.id == IncidentRow.stream_id)
    if stream is not None:
        q = q.where(Stream.name == stream)
    if status == "unresolved":
        q = q.where(IncidentRow.status.in_(("open", "acknowledged")))
    elif status != "any":
        q = q.where(IncidentRow.status == status)
    if before_id is not None:
        q = q.where(IncidentRow.id < before_id)
    if anomaly_id is not None:
        q = q.where(IncidentRow.id == select(Anomaly.incident_id).where(Anomaly.id == anomaly_id).scalar_subquery())
    if assignee is not None:
        q = q.where(IncidentRow.assignee == assignee)
    rows = db.execute(q.order_by(IncidentRow.id.desc()).limit(min(limit, MAX_LIST))).all()
    opens = _open_counts(db, [r.id for r, _ in rows])
    return [IncidentView(r, name, opens.get(r.id, 0), _template_of(registry, r.stream_id, r.template_id))
            for r, name in rows]


def count_incidents(db: Session, stream: str | None = None) -> dict[str, int]:
    """Incidents by status (of one stream, by name, or all)."""
    q = select(IncidentRow.status, func.count(IncidentRow.id))
    if stream is not None:
        q = q.join(Stream, Stream.id == IncidentRow.stream_id).where(Stream.name == stream)
    out = {"open": 0, "acknowledged": 0, "resolved": 0, **dict(db.execute(q.group_by(IncidentRow.status)).all())}
    out["unresolved"] = out["open"] + out["acknowledged"]
    out["any"] = out["unresolved"] + out["resolved"]
    return out


def incident_detail(db: Session, registry: Any, incident_id: int) -> IncidentView | None:
    """One stored incident with its anomalies grouped by template (newest group first, with
    template texts and an example line each) and its notes; None when there is none."""
    found = db.execute(select(IncidentRow, Stream.name).join(Stream, Stream.id == IncidentRow.stream_id)
                       .where(IncidentRow.id == incident_id)).first()
    if found is None:
        return None
    row, name = found
    members = db.execute(rows_select().where(Anomaly.incident_id == incident_id)).all()
    runs = incidents_of(members, float("inf"))  # one stream, one run: every member in it
    groups = [g for inc in runs for g in inc.groups]
    fill_details(db, registry, groups)
    notes = list(db.execute(select(IncidentNote).where(IncidentNote.incident_id == incident_id)
                            .order_by(IncidentNote.id)).scalars().all())
    return IncidentView(row, name, sum(g.statuses.get("open", 0) for g in groups),
                        _template_of(registry, row.stream_id, row.template_id), groups, notes)


def incident_of_anomaly(db: Session, anomaly_id: int) -> int | None:
    """The stored incident an anomaly belongs to (None: none, or no such anomaly)."""
    return db.execute(select(Anomaly.incident_id).where(Anomaly.id == anomaly_id)).scalar()
