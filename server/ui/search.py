"""`/search` (stored lines by text, attributes, stream, severity, time), `/lines/{id}` (a line in
its context: the lines around it in log time, in the same stream, session or host, widening on
request) and `/streams/{name}/tail` (new lines and their verdicts as they arrive, pausable)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup, escape
from sqlmodel import Session

from logsense.server import lines, search
from logsense.server.tables import LogLine
from logsense.server.ui.core import OperatorDep, UiError, fragment, render, stream_named

router = APIRouter()

PRESETS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
SEVERITIES = ("watch", "danger", "normal", "train", "pending")
WIDTHS = (10, 25, 50, 100, 200)  # lines on each side of the context page, widened one step at a time
SAME = ("stream", "session", "attribute")
TAIL_ROWS = 200


def marked(raw: str, spans: list[tuple[int, int]]) -> Markup:
    """`raw` escaped, with the matched spans in <mark>."""
    out, at = [], 0
    for start, end in spans:
        if start < at:
            continue
        out += [escape(raw[at:start]), Markup("<mark>"), escape(raw[start:end]), Markup("</mark>")]
        at = end
    out.append(escape(raw[at:]))
    return Markup("").join(out)


def _time(value: str) -> float | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UiError(400, f"{value[:40]!r} is not a date and time (YYYY-MM-DDTHH:MM)") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


@router.get("/search")
def search_page(request: Request, op: OperatorDep, q: str = "", stream: str = "", attr: str = "", severity: str = "",
                range: str = "", since: str = "", until: str = "", before_id: int = 0) -> Response:  # noqa: A002
    if len(q) > 1000 or len(attr) > 1000:
        raise UiError(400, "The query is too long (1,000 characters at most).")
    if severity and severity not in SEVERITIES:
        raise UiError(400, f"severity must be one of {', '.join(SEVERITIES)}")
    if range and range not in PRESETS:
        raise UiError(400, f"range must be one of {', '.join(PRESETS)}")
    attributes = {}
    for pair in attr.split():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UiError(400, f"Attributes are key=value, separated by spaces, not {pair[:60]!r}.")
        attributes[key] = value
    start = (datetime.now(timezone.utc) - PRESETS[range]).timestamp() if range else _time(since)
    with Session(request.app.state.engine) as db:
        names = search.stream_names(db)
        if stream and stream not in names:
            raise UiError(404, f"There is no stream named {stream!r}.")
        asked = bool(q or attr or severity or range or since or until or stream)
        result = None
        if asked:
            result = search.search(db, search.Query(
                text=q, attributes=attributes, stream_ids=[names[stream]] if stream else None,
                severity=severity or None, since=start, until=_time(until),
                before_id=before_id or None, limit=100))
    by_id = {v: k for k, v in names.items()}
    hits = [(h, by_id.get(h.stream_id, "?"), marked(h.raw, h.marks)) for h in (result.hits if result else [])]
    return render(request, "search/list.html", {
        "section": "search", "q": q, "stream": stream, "attr": attr, "severity": severity, "range": range,
        "since": since, "until": until, "streams": sorted(names), "severities": SEVERITIES, "presets": PRESETS,
        "result": result, "hits": hits,
        "next_before_id": hits[-1][0].id if result and len(hits) == 100 else None,
    }, partial="search/results.html")


@dataclass
class ContextLine:
    line: LogLine
    at: bool  # the line the page is about


def _shares(line: LogLine, other: LogLine, same: str, key: str) -> bool:
    if same == "session":
        return bool(set(line.sessions or []) & set(other.sessions or []))
    if same == "attribute":
        a, b = line.attributes or {}, other.attributes or {}
        return key in a and a.get(key) == b.get(key)
    return True


@router.get("/lines/{line_id}")
def line_context(line_id: int, request: Request, op: OperatorDep, n: int = WIDTHS[0], same: str = "stream",
                 key: str = "") -> Response:
    """The line with `n` lines on each side in its stream (or its session, or with the same value
    of attribute `key`), in log time; the flagged ones marked."""
    if n not in WIDTHS:
        raise UiError(400, f"n must be one of {', '.join(map(str, WIDTHS))}")
    if same not in SAME:
        raise UiError(400, f"same must be one of {', '.join(SAME)}")
    with Session(request.app.state.engine) as db:
        found = lines.with_stream(db, line_id)
        if found is None:
            raise UiError(404, f"There is no line {line_id}.")
        line, stream = found
        if same == "attribute" and key not in (line.attributes or {}):
            raise UiError(400, f"The line has no attribute {key!r}.")
        reach = n * (1 if same == "stream" else 20)  # a session or host is a part of the stream: look further
        before = lines.before(db, line.stream_id, line_id, reach)
        after = lines.after(db, line.stream_id, line_id, reach)
    before = [x for x in before if _shares(line, x, same, key)][:n]
    after = [x for x in after if _shares(line, x, same, key)][:n]
    rows = sorted([*before, line, *after], key=lambda x: (x.timestamp if x.timestamp is not None else float("inf"), x.id))
    wider = next((w for w in WIDTHS if w > n), None)
    return render(request, "search/context.html", {
        "section": "search", "line": line, "stream": stream, "n": n, "same": same, "key": key, "wider": wider,
        "rows": [ContextLine(x, x.id == line_id) for x in rows], "attribute_keys": sorted(line.attributes or {}),
        "attributes_json": json.dumps(line.attributes, indent=1) if line.attributes else "",
    }, partial="search/context_rows.html")


@router.get("/streams/{name}/tail")
def tail(name: str, request: Request, op: OperatorDep, after_id: int = 0) -> Response:
    """The stream's newest lines; with `after_id` (the page's poll) only newer ones, as a fragment."""
    stream = stream_named(request, name)
    with Session(request.app.state.engine) as db:
        if after_id:
            rows = lines.after(db, stream.id, after_id, TAIL_ROWS)[::-1]
        else:
            rows = lines.before(db, stream.id, None, 50)
    last = max([after_id, *(r.id for r in rows)])
    ctx = {"section": "streams", "stream": stream, "rows": rows, "last_id": last}
    if after_id:
        return fragment(request, "search/tail_rows.html", ctx)
    return render(request, "search/tail.html", ctx)
