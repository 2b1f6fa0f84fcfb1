"""The triage queue's page: filters, paging, and the incidents of `server.incidents` on it.

Incidents are listed newest first (by last seen) and paged; the newest `MAX_SCAN` matching
anomalies are grouped (the page says when more match). Actions on a row apply to every anomaly
of its group.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from logsense.server.incidents import MAX_GROUPED, Group, Incident, fill_details, incidents_of, rows_select
from logsense.server.tables import ANOMALY_STATUSES, Anomaly, Stream
from logsense.server.ui.core import UiError

PAGE_SIZE = 20  # incidents per page
MAX_SCAN = MAX_GROUPED  # newest matching anomalies grouped into incidents
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


def _rows_query(filters: Filters) -> Any:
    return filters.where(rows_select())


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
    q = rows_select().where(Anomaly.id.in_(ids))
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
