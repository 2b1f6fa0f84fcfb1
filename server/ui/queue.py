"""The triage queue's page: filters, paging, and the incidents of `server.incidents` on it.

Incidents are listed newest first (by last seen) and paged; the newest `MAX_SCAN` matching
anomalies are grouped (the page says when more match). Actions on a row apply to every anomaly
of its group.

Time filters: a relative preset (`last=15m|1h|24h|7d`: counted back from each request, so a
bookmark or the live refresh stays "the last hour"), or precise `since`/`until` fields read in
the browser's time zone when the page says which (`tz`: minutes behind UTC, as JavaScript's
`getTimezoneOffset` gives them; app.js fills it in), else as UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlmodel import Session

from logsense.server import anomalies
from logsense.server.incidents import MAX_GROUPED, Incident, fill_details, incidents_of
from logsense.server.tables import ANOMALY_STATUSES
from logsense.server.ui.core import UiError

PAGE_SIZE = 20  # incidents per page
MAX_SCAN = MAX_GROUPED  # newest matching anomalies grouped into incidents
SEVERITIES = ("danger", "watch")
STATUS_CHOICES = (*ANOMALY_STATUSES, "any")
PRESETS = {  # `last`: (button text, how far back)
    "15m": ("15 min", timedelta(minutes=15)),
    "1h": ("1 h", timedelta(hours=1)),
    "24h": ("24 h", timedelta(hours=24)),
    "7d": ("7 days", timedelta(days=7)),
}
MAX_TZ_MINUTES = 16 * 60


def parse_time(value: str | None, name: str, tz_minutes: int = 0) -> datetime | None:
    """A datetime-local (`2024-05-01T12:30`) or ISO 8601 value; without a zone it is the time
    `tz_minutes` behind UTC (the browser's `getTimezoneOffset`; 0: UTC)."""
    if value is None or not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UiError(400, f"{name}: {value[:40]!r} is not a date and time (like 2024-05-01T12:30)") from None
    if when.tzinfo:
        return when
    return (when + timedelta(minutes=tz_minutes)).replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Filters:
    stream: str | None = None
    severity: str | None = None
    status: str = "open"
    since: datetime | None = None
    until: datetime | None = None
    page: int = 1
    last: str | None = None  # a PRESETS key: since that long before now (since/until are ignored then)
    tz: int = 0  # minutes behind UTC of the browser that filled in since/until (getTimezoneOffset)

    @property
    def start(self) -> datetime | None:
        """The start of the time range now: the preset's, else `since`."""
        if self.last is not None:
            return datetime.now(timezone.utc) - PRESETS[self.last][1]
        return self.since

    @property
    def end(self) -> datetime | None:
        return None if self.last is not None else self.until

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
        last = get("last")
        if last is not None and last not in PRESETS:
            raise UiError(400, f"last must be one of {', '.join(PRESETS)}, not {last[:20]!r}")
        tz_text = get("tz") or "0"
        try:
            tz = int(tz_text)
        except ValueError:
            raise UiError(400, f"tz must be minutes behind UTC, not {tz_text[:20]!r}") from None
        if abs(tz) > MAX_TZ_MINUTES:
            raise UiError(400, f"tz must be at most {MAX_TZ_MINUTES} minutes from UTC")
        if last is not None:
            since = until = None
        else:
            since, until = parse_time(get("since"), "since", tz), parse_time(get("until"), "until", tz)
        if since and until and since >= until:
            raise UiError(400, "since must be before until")
        stream = get("stream")
        if stream is not None and len(stream) > 64:
            raise UiError(400, "stream: no stream has a name that long")
        return cls(stream, severity, status, since, until, int(page_text), last, tz if since or until else 0)

    def local(self, when: datetime | None) -> str | None:
        """`when` for a datetime-local field, in the time zone the page was filled in."""
        if when is None:
            return None
        return (when.astimezone(timezone.utc) - timedelta(minutes=self.tz)).strftime("%Y-%m-%dT%H:%M")

    def params(self, **changes: Any) -> dict:
        f = replace(self, **changes) if changes else self
        return {
            "stream": f.stream, "severity": f.severity, "status": None if f.status == "open" else f.status,
            "last": f.last,
            "since": f.local(f.since), "until": f.local(f.until),
            "tz": f.tz if f.tz and (f.since or f.until) else None,
            "page": None if f.page == 1 else f.page,
        }

    def match(self, after_id: int | None = None) -> anomalies.Match:
        """The anomalies these filters pick now (a preset counts back from this call)."""
        return anomalies.Match(self.stream, self.severity, self.status, since=self.start, until=self.end,
                               after_id=after_id)


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


def count_matching(db: Session, filters: Filters) -> int:
    return anomalies.count(db, filters.match())


def load_page(db: Session, registry: Any, filters: Filters, gap_seconds: float) -> QueuePage:
    total = count_matching(db, filters)
    rows = anomalies.newest_rows(db, filters.match(), MAX_SCAN)
    incidents = incidents_of(rows, gap_seconds)
    start = (filters.page - 1) * PAGE_SIZE
    shown = incidents[start : start + PAGE_SIZE]
    fill_details(db, registry, [g for i in shown for g in i.groups])
    return QueuePage(filters, shown, len(incidents), total, total > MAX_SCAN, max((r.id for r in rows), default=0))


def count_new(db: Session, filters: Filters, after_id: int) -> int:
    return anomalies.count(db, filters.match(after_id))


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
