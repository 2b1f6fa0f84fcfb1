"""Why an anomaly was flagged, for its detail page: RAPID's nearest normal and worst tokens,
LogGPT's window with the misses and the expected top-K, the reasons in words, nearby lines.

Only public calls of the stream's model are used (`model.rapid.explain(text)`,
`model.template(id)`); everything else is read from the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape
from sqlalchemy import select
from sqlmodel import Session

from logsense.server import store
from logsense.server.links import context_link
from logsense.server.tables import Anomaly, Feedback, LogLine, Stream, TemplateMute, Window, WindowLine
from logsense.server.ui.core import KIND_WORDS

AROUND = 8  # lines shown before and after the anomalous one
BURST_MIN_LINES = 5  # a burst needs at least this many lines of the template within the gap ...
BURST_FACTOR = 5.0  # ... and this many times its usual rate over the day before
HOUR_MIN_NORMALS = 200  # "unusual hour" needs this many normal lines to compare with
HOUR_MAX_SHARE = 0.01  # ... and the hour holding under this share of them
HOUR_SAMPLE = 5000  # newest normal lines the hour profile is built from
OTHER_NORMALS = 3  # normal lines of the same template shown beside RAPID's nearest
OTHER_NORMALS_SAMPLE = 500  # ... picked among the newest normal lines of the template


@dataclass
class WindowView:
    window: Window
    rows: list[dict]  # position, line_id, template_id, template, text, miss (dict | None), is_anomaly
    misses: list[dict]
    end_miss: dict | None  # a miss at the end key (the session stopped where LogGPT expected more)
    k: int | None


@dataclass
class Detail:
    anomaly: Anomaly
    stream: Stream
    line: LogLine | None
    template: str | None
    rapid: Any | None = None  # models.rapid.Explanation
    rapid_threshold: float | None = None  # at ingest (the line anomaly's reasons), else the live one
    rapid_error: str | None = None
    highlighted: Markup | None = None  # the masked line with the worst tokens marked
    other_normals: list[str] = field(default_factory=list)
    window: WindowView | None = None
    windows_note: str | None = None
    reasons: list[dict] = field(default_factory=list)  # {"kind": ..., "text": ...}: what the detectors used
    context: list[dict] = field(default_factory=list)  # the same shape: facts beside it no detector used
    context_link: str | None = None  # the stream's context_url for this anomaly (server.links)
    around: list[LogLine] = field(default_factory=list)
    feedback: list[Feedback] = field(default_factory=list)
    mute_until: datetime | None = None
    related: list[Anomaly] = field(default_factory=list)  # other anomalies about the same line


def _aware(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


# --------------------------------------------------------------------------- RAPID


_CHUNK = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def highlight(text: str, worst: list[tuple[str, float]]) -> Markup:
    """`text` escaped, with the words that hold one of the worst-matched wordpieces in <mark>."""
    marks = []
    for token, sim in worst:
        t = token.lower()
        if t.startswith("[") and t.endswith("]"):
            continue  # [CLS], [SEP], [UNK]
        marks.append((t[2:] if t.startswith("##") else t, t.startswith("##"), sim))
    out, pos = [], 0
    for m in _CHUNK.finditer(text):
        chunk = m.group(0)
        low = chunk.lower()
        hit = None
        for piece, inner, sim in marks:
            if not piece:
                continue
            if (inner and len(low) > len(piece) and piece in low[1:]) or (not inner and (
                    low == piece or (piece.isalnum() and len(piece) >= 2 and low.startswith(piece)))):
                hit = sim
                break
        out.append(escape(text[pos : m.start()]))
        if hit is None:
            out.append(escape(chunk))
        else:
            out.append(Markup('<mark title="token similarity {:.2f}">{}</mark>').format(hit, chunk))
        pos = m.end()
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def _rapid(detail: Detail, registry: Any, db: Session) -> None:
    line = detail.line
    if line is None:
        return
    try:
        model = registry.get(detail.stream)
        detail.rapid = model.rapid.explain(line.masked)
        detail.highlighted = highlight(line.masked, list(detail.rapid.worst_tokens or []))
    except Exception as exc:  # noqa: BLE001 (still loading, or no model yet: the page says so)
        detail.rapid_error = f"{type(exc).__name__}: {exc}"
        return
    if line.template_id is not None:
        skip = {detail.rapid.nearest_text, line.masked}
        rows = store.newest_normal_lines(db, line.stream_id, (LogLine.id, LogLine.masked), OTHER_NORMALS_SAMPLE,
                                         line.template_id)
        texts = dict.fromkeys(masked for _, masked in rows if masked not in skip)  # newest first, distinct
        detail.other_normals = list(texts)[:OTHER_NORMALS]


# --------------------------------------------------------------------------- LogGPT


def _window_view(db: Session, window: Window, misses: list[dict], k: int | None, line_id: int | None,
                 model: Any) -> WindowView:
    members = store.window_lines(db, [window.id])[window.id]
    raws = {}
    if members:
        raws = dict(db.execute(select(LogLine.id, LogLine.raw).where(
            LogLine.id.in_([x["id"] for x in members]))).all())
    by_pos = {int(m["position"]): m for m in misses if m.get("position") is not None}
    rows = []
    for pos, x in enumerate(members):
        template = None
        if model is not None and x["template_id"] is not None:
            try:
                template = model.template(x["template_id"])
            except Exception:  # noqa: BLE001
                template = None
        rows.append({"position": pos, "line_id": x["id"], "template_id": x["template_id"], "template": template,
                     "text": raws.get(x["id"], x["masked"]), "miss": by_pos.get(pos), "is_anomaly": x["id"] == line_id,
                     "severity": x["severity"]})
    end_miss = next((m for p, m in by_pos.items() if p >= len(members)), None)
    return WindowView(window, rows, misses, end_miss, k)


def _loggpt(detail: Detail, db: Session, registry: Any) -> None:
    a, model = detail.anomaly, registry.peek(detail.stream.id) if registry is not None else None
    if a.kind == "window" and a.window_id is not None:
        window = db.get(Window, a.window_id)
        if window is not None:
            misses = list((a.reasons or {}).get("loggpt_misses") or (window.result or {}).get("misses") or [])
            detail.window = _window_view(db, window, misses, (a.reasons or {}).get("k"), a.line_id, model)
        return
    if detail.line is None:
        return
    windows = db.execute(
        select(Window).join(WindowLine, WindowLine.window_id == Window.id)
        .where(WindowLine.line_id == detail.line.id).order_by(Window.id)
    ).scalars().unique().all()
    if not windows:
        detail.windows_note = "The line is in no window or session, so LogGPT does not check it."
        return
    flagged = next((w for w in windows if w.anomalous), None)
    if flagged is not None:
        misses = list((flagged.result or {}).get("misses") or [])
        detail.window = _window_view(db, flagged, misses, (flagged.result or {}).get("k"), detail.line.id, model)
        return
    w = windows[0]
    if w.state in ("open", "queued", "checking"):
        detail.windows_note = f"LogGPT has not checked its {KIND_WORDS.get(w.kind, w.kind)} yet ({w.state})."
    elif (w.result or {}).get("skipped"):
        detail.windows_note = "LogGPT was not trained yet when its window closed: only RAPID judged this line."
    elif w.state == "failed":
        detail.windows_note = f"LogGPT's check of its window failed: {w.error or 'unknown error'}."
    else:
        detail.windows_note = "LogGPT checked its window and found every next line among its top-K."
    detail.window = _window_view(db, w, [], (w.result or {}).get("k"), detail.line.id, model)


# --------------------------------------------------------------------------- reasons in words


def _key_text(key: Any, text: str | None) -> str:
    if isinstance(key, str):
        return text or key
    label = f"E{key}"
    return f"{label} “{text}”" if text else label


CONTEXT_KINDS = ("new-template", "burst", "hour")  # shown beside the reasons: no detector decides by them


def _reasons(detail: Detail, db: Session, gap_seconds: float, tz_name: str) -> tuple[list[dict], list[dict]]:
    """(why the detectors flagged it, context no detector used: a new template, a burst, the hour)."""
    a, line, out = detail.anomaly, detail.line, []
    reasons = a.reasons or {}
    score, threshold = reasons.get("rapid_score"), detail.rapid_threshold
    if line is not None and line.rapid_flag:
        score = line.rapid_score if score is None else score
        words = "far from every known normal line"
        if score is not None and threshold is not None:
            words += f": RAPID score {score:.3f} is above the stream's threshold {threshold:.3f}"
        out.append({"kind": "rapid", "text": words[0].upper() + words[1:] + "."})

    if line is not None and line.template_id is not None:
        # From template_counts (lines per template and 10-second slot), not by counting the
        # stream's lines: the cost grows with the template's slots, not with the stream's history.
        tid, sid = line.template_id, line.stream_id
        at = _aware(line.received_at)
        slot = store.slot_of(at)
        first = store.template_first_line(db, sid, tid)
        if first is None or first >= line.id:
            out.append({"kind": "new-template", "text": f"New template: this is the first line of template E{tid} "
                                                        "the stream has seen."})
        elif not store.template_has_normal(db, sid, tid):
            earlier = store.template_lines_before(db, sid, tid, line.id, slot)
            out.append({"kind": "new-template", "text": f"Template E{tid} never occurred in normal or training "
                                                        f"data ({earlier} earlier line(s), none of them normal)."})
        gap_start = store.slot_of(at - timedelta(seconds=gap_seconds))  # to the slot: +-10 s
        recent = store.template_lines(db, sid, tid, gap_start, slot)
        day_before = store.template_lines(db, sid, tid, store.slot_of(at - timedelta(days=1)), gap_start)
        expected = day_before * gap_seconds / max(86400.0 - gap_seconds, 1.0)
        if recent >= BURST_MIN_LINES and recent > BURST_FACTOR * max(expected, 0.2):
            out.append({"kind": "burst", "text": f"Burst of a template: {recent} lines of E{tid} in the "
                                                 f"{gap_seconds / 60:.0f} minutes up to this one, against about "
                                                 f"{expected:.1f} expected from the day before."})

    if line is not None:
        hour_reason = _unusual_hour(db, line, tz_name)
        if hour_reason:
            out.append({"kind": "hour", "text": hour_reason})

    if reasons.get("new_content"):
        out.append({"kind": "new-session", "text": "New session content: no normal session had this set of "
                                                   "events (RAPID, session level)."})
    if detail.window is not None:
        for m in detail.window.misses:
            pos = int(m.get("position", -1))
            rows = detail.window.rows
            prev = rows[pos - 1] if 0 < pos <= len(rows) else None
            after = f"after {_key_text(prev['template_id'], prev['template'])}" if prev else "at the start"
            expected = ", ".join(f"E{e}" if not isinstance(e, str) else e for e in (m.get("expected") or [])) or "–"
            actual = _key_text(m.get("actual"), m.get("actual_template"))
            text = (f"Sequence miss at position {pos}: {after}, LogGPT expected one of {expected} "
                    f"(its top-{detail.window.k or len(m.get('expected') or [])}) but saw {actual}.")
            if m.get("unseen"):
                text += " LogGPT never saw this key in training."
            out.append({"kind": "sequence", "text": text})
    if reasons.get("incident"):
        out.append({"kind": "incident", "text": "Joined an incident an operator confirmed: a new anomaly of this "
                                                "template within the incident gap is not queued again."})
    why = [r for r in out if r["kind"] not in CONTEXT_KINDS]
    context = [r for r in out if r["kind"] in CONTEXT_KINDS]
    if not why:
        why.append({"kind": "other", "text": "No reason recorded beyond the detector's flag."})
    return why, context


def _unusual_hour(db: Session, line: LogLine, tz_name: str) -> str | None:
    try:
        tz = ZoneInfo(tz_name)
    except Exception:  # noqa: BLE001
        tz = timezone.utc

    def when(ts: float | None, received: datetime) -> datetime:
        return datetime.fromtimestamp(ts, timezone.utc) if ts is not None else _aware(received)

    rows = store.newest_normal_lines(db, line.stream_id, (LogLine.id, LogLine.timestamp, LogLine.received_at),
                                     HOUR_SAMPLE)
    if len(rows) < HOUR_MIN_NORMALS:
        return None
    hour = when(line.timestamp, line.received_at).astimezone(tz).hour
    same = sum(1 for _, ts, rec in rows if when(ts, rec).astimezone(tz).hour == hour)
    share = same / len(rows)
    if share >= HOUR_MAX_SHARE:
        return None
    part = "none" if same == 0 else f"only {share:.1%}"
    return (f"Unusual hour: {part} of the stream's last {len(rows)} normal lines fall between "
            f"{hour:02d}:00 and {(hour + 1) % 24:02d}:00 ({tz_name}), the hour of this line.")


# --------------------------------------------------------------------------- the page


def _ingest_threshold(db: Session, a: Anomaly, line: LogLine | None) -> float | None:
    """The RAPID threshold the line was judged by: in the line anomaly's reasons."""
    if (a.reasons or {}).get("rapid_threshold") is not None:
        return float(a.reasons["rapid_threshold"])
    if line is None:
        return None
    other = db.execute(select(Anomaly.reasons).where(Anomaly.line_id == line.id, Anomaly.kind == "line")
                       .order_by(Anomaly.id)).scalars().first()
    value = (other or {}).get("rapid_threshold")
    return float(value) if value is not None else None


def _line_time(line: LogLine | None, a: Anomaly) -> float:
    """When it happened: the line's own time, else when it arrived, else when the anomaly was raised."""
    if line is not None and line.timestamp is not None:
        return float(line.timestamp)
    return _aware(line.received_at if line is not None else a.created_at).timestamp()


def load_detail(db: Session, app: Any, anomaly_id: int) -> Detail | None:
    a = db.get(Anomaly, anomaly_id)
    if a is None:
        return None
    stream = db.get(Stream, a.stream_id)
    line = db.get(LogLine, a.line_id) if a.line_id is not None else None
    registry = getattr(app.state, "registry", None)
    detail = Detail(a, stream, line, None)
    detail.rapid_threshold = _ingest_threshold(db, a, line)
    if registry is not None:
        _rapid(detail, registry, db)  # loads the stream's model if it is not yet
    model = registry.peek(stream.id) if registry is not None else None
    if detail.rapid_threshold is None and model is not None:
        detail.rapid_threshold = float(model.rapid_threshold)
    tid = line.template_id if line is not None and line.template_id is not None else a.template_id
    if model is not None and tid is not None:
        try:
            detail.template = model.template(tid)
        except Exception:  # noqa: BLE001
            detail.template = None
    _loggpt(detail, db, registry)
    settings = app.state.settings
    detail.reasons, detail.context = _reasons(detail, db, settings.incident_gap_seconds, settings.timezone)
    detail.context_link = context_link(stream.config().context_url, stream.name, _line_time(line, a), tid)
    if line is not None:
        before = db.execute(select(LogLine).where(LogLine.stream_id == line.stream_id, LogLine.id < line.id)
                            .order_by(LogLine.id.desc()).limit(AROUND)).scalars().all()
        after = db.execute(select(LogLine).where(LogLine.stream_id == line.stream_id, LogLine.id >= line.id)
                           .order_by(LogLine.id).limit(AROUND + 1)).scalars().all()
        detail.around = [*reversed(before), *after]
    if a.line_id is not None:
        detail.related = list(db.execute(select(Anomaly).where(Anomaly.line_id == a.line_id, Anomaly.id != a.id)
                                         .order_by(Anomaly.id)).scalars().all())
    detail.feedback = list(db.execute(select(Feedback).where(Feedback.anomaly_id == a.id)
                                      .order_by(Feedback.id)).scalars().all())
    if a.template_id is not None:
        mute = db.execute(select(TemplateMute).where(TemplateMute.stream_id == a.stream_id,
                                                     TemplateMute.template_id == a.template_id)).scalars().first()
        if mute is not None and _aware(mute.until) > datetime.now(timezone.utc):
            detail.mute_until = _aware(mute.until)
    return detail
