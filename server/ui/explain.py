"""Why an anomaly was flagged, for its detail page: RAPID's nearest normal and worst tokens,
LogGPT's window with the misses and the expected top-K, the reasons in words, nearby lines.

Only public calls of the stream's model are used (`model.rapid.explain(text)`,
`model.template(id)`); everything else is read from the database.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape
from sqlmodel import Session

from logsense.server import anomalies, lines, store
from logsense.server.links import context_link
from logsense.server.services import Services
from logsense.server.tables import Anomaly, Feedback, LogLine, Stream, Window
from logsense.server.ui.core import KIND_WORDS

AROUND = 8  # lines shown before and after the anomalous one
BURST_MIN_LINES = 5  # a burst needs at least this many lines of the template within the gap ...
BURST_FACTOR = 5.0  # ... and this many times its usual rate over the day before
HOUR_MIN_NORMALS = 200  # "unusual hour" needs this many normal lines to compare with, over a day at least
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
    highlighted: Markup | None = None  # the masked line with the worst-matched words marked
    worst_words: list[tuple[str, float]] = field(default_factory=list)  # those words, worst first (word, similarity)
    line_time: datetime | None = None  # the time written in the line, if it had one
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


_WORD = re.compile(r"<[A-Za-z][A-Za-z0-9_]*>|[^\W_]+", re.UNICODE)  # a placeholder like <NUM>, or letters and digits
_SPECIAL = re.compile(r"^\[[A-Z]+\]$")  # [CLS], [SEP], [UNK], [PAD]


def _folded(text: str) -> tuple[str, list[int]]:
    """`text` lower-cased without accents (as the wordpiece tokenizer reads it), and for each of
    its characters the index of the character of `text` it came from."""
    out, where = [], []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFD", ch.lower()):
            if unicodedata.category(c) != "Mn":
                out.append(c)
                where.append(i)
    return "".join(out), where


def _token_spans(text: str, tokens: list[str]) -> list[tuple[int, int] | None] | None:
    """Where each wordpiece of `tokens` lies in `text` (start, end), None for special tokens; None
    when they cannot all be placed (another tokenizer's text)."""
    folded, where = _folded(text)
    spans: list[tuple[int, int] | None] = []
    pos = 0
    for token in tokens:
        if _SPECIAL.match(token):
            spans.append(None)
            continue
        piece = token[2:] if token.startswith("##") else token
        at = folded.find(piece, pos)
        if not piece or at < 0 or folded[pos:at].strip():
            return None
        spans.append((where[at], where[at + len(piece) - 1] + 1))
        pos = at + len(piece)
    return spans


def word_scores(text: str, worst: list[tuple[str, float]], tokens: list[str] | None = None) -> list[tuple[int, int, float]]:
    """The words of `text` (start, end, similarity) holding one of RAPID's worst-matched wordpieces,
    each with its worst piece's similarity: `##` pieces count for the word they continue, so an
    operator reads "DFSClient", not "##ient". `tokens`: all of the text's wordpieces in order (the
    embedder's `tokens(text)`), to place each piece; without them (or when they do not fit the
    text) a piece marks the words it could belong to."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    worst_of: dict[str, float] = {}
    for token, sim in worst:
        if not _SPECIAL.match(token):
            worst_of[token.lower()] = min(sim, worst_of.get(token.lower(), sim))
    found: dict[tuple[int, int], float] = {}

    def mark(start: int, end: int, sim: float) -> None:
        for w in words:
            if w[0] < end and start < w[1]:
                found[w] = min(sim, found.get(w, sim))

    spans = _token_spans(text, tokens) if tokens else None
    if spans is not None:
        for token, span in zip(tokens, spans):
            if span is not None and token.lower() in worst_of:
                mark(*span, worst_of[token.lower()])
    else:  # each piece to one word: the same word, else the longest that can hold it (a word cut into pieces is a rare one)
        for token, sim in worst_of.items():
            inner, piece = token.startswith("##"), token[2:] if token.startswith("##") else token
            if not piece:
                continue
            fits = []
            for start, end in words:
                low = _folded(text[start:end])[0].strip("<>")
                if not inner and low == piece:
                    fits = [(10**6, start, end)]
                    break
                if (inner and piece in low[1:]) or (not inner and piece.isalnum() and len(piece) >= 2
                                                    and low.startswith(piece)):
                    fits.append((end - start, start, end))
            if fits:
                _, start, end = max(fits, key=lambda f: (f[0], -f[1]))
                mark(start, end, sim)
    return sorted((a, b, sim) for (a, b), sim in found.items())


def worst_words(text: str, scored: list[tuple[int, int, float]]) -> list[tuple[str, float]]:
    """The marked words, worst first, each once."""
    out: dict[str, float] = {}
    for start, end, sim in sorted(scored, key=lambda x: x[2]):
        out.setdefault(text[start:end], sim)
    return list(out.items())


def highlight(text: str, scored: list[tuple[int, int, float]]) -> Markup:
    """`text` escaped, with the words of `word_scores` in <mark>."""
    out, pos = [], 0
    for start, end, sim in scored:
        out.append(escape(text[pos:start]))
        out.append(Markup('<mark title="similarity {:.2f} to the nearest normal line">{}</mark>').format(sim, text[start:end]))
        pos = end
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def _rapid(detail: Detail, registry: Any, db: Session) -> None:
    line = detail.line
    if line is None:
        return
    try:
        model = registry.get(detail.stream)
        detail.rapid = model.rapid.explain(line.masked)
        tokens = None
        if detail.rapid.worst_tokens:
            try:
                tokens = list(model.rapid.embedder.tokens(line.masked))
            except Exception:  # noqa: BLE001 (an embedder without tokens: the words are guessed from the pieces)
                tokens = None
        scored = word_scores(line.masked, list(detail.rapid.worst_tokens or []), tokens)
        detail.highlighted = highlight(line.masked, scored)
        detail.worst_words = worst_words(line.masked, scored)
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
    raws = lines.raws(db, [x["id"] for x in members])
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
    windows = lines.windows_of(db, detail.line.id)
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
        out.extend(_sequence_reasons(detail.window))
    if reasons.get("incident"):
        out.append({"kind": "incident", "text": "Joined an incident an operator confirmed: a new anomaly of this "
                                                "template within the incident gap is not queued again."})
    why = [r for r in out if r["kind"] not in CONTEXT_KINDS]
    context = [r for r in out if r["kind"] in CONTEXT_KINDS]
    if not why:
        why.append({"kind": "other", "text": "No reason recorded beyond the detector's flag."})
    return why, context


def _keys(keys: list[Any]) -> str:
    return ", ".join(f"E{e}" if not isinstance(e, str) else ("the end" if e == "<eos>" else e) for e in keys) or "–"


def _positions(positions: list[int], shown: int = 6) -> str:
    text = ", ".join(str(p) for p in positions[:shown])
    return text + (f" and {len(positions) - shown} more" if len(positions) > shown else "")


MAX_MISS_LINES = 3  # LogGPT misses told one by one; the rest in one line (the window below marks each)


def _sequence_reasons(window: WindowView) -> list[dict]:
    """LogGPT's misses in words: one line per key it did not expect, with how often and where
    (a key repeated through a window misses at each repetition: one line, not one per miss);
    past `MAX_MISS_LINES` keys, the one at the flagged line and the first others, and the rest
    folded into one line with their count."""
    rows = window.rows
    folded: dict[tuple, list[dict]] = {}
    for m in window.misses:
        folded.setdefault((repr(m.get("actual")), bool(m.get("unseen"))), []).append(m)
    groups = list(folded.values())
    here = {r["position"] for r in rows if r.get("is_anomaly")}
    groups.sort(key=lambda g: 0 if any(int(m.get("position", -1)) in here for m in g) else 1)  # the flagged line's first
    shown, rest = (groups, []) if len(groups) <= MAX_MISS_LINES else (groups[:MAX_MISS_LINES - 1], groups[MAX_MISS_LINES - 1:])
    shown.sort(key=lambda g: int(g[0].get("position", -1)))
    out = []
    for misses in shown:
        first = misses[0]
        k = window.k or len(first.get("expected") or [])
        actual = _key_text(first.get("actual"), first.get("actual_template"))
        if len(misses) == 1:
            pos = int(first.get("position", -1))
            prev = rows[pos - 1] if 0 < pos <= len(rows) else None
            after = f"after {_key_text(prev['template_id'], prev['template'])}" if prev else "at the start"
            text = (f"Sequence miss at position {pos}: {after}, LogGPT expected one of "
                    f"{_keys(list(first.get('expected') or []))} (its top-{k}) but saw {actual}.")
        else:
            counts: dict[Any, int] = {}
            for m in misses:
                for e in m.get("expected") or []:
                    counts[e] = counts.get(e, 0) + 1
            expected = sorted(counts, key=lambda e: -counts[e])  # the most often expected first
            positions = sorted(int(m.get("position", -1)) for m in misses)
            text = (f"Sequence miss {len(misses)} times, at positions {_positions(positions)}: LogGPT saw {actual} "
                    f"each time where it expected one of {_keys(expected[:max(k, 1) * 2])} (its top-{k}).")
        if first.get("unseen"):
            text += " LogGPT never saw this key in training."
        out.append({"kind": "sequence", "text": text})
    if rest:
        positions = sorted(int(m.get("position", -1)) for g in rest for m in g)
        keys = _keys([g[0].get("actual") for g in sorted(rest, key=lambda g: int(g[0].get("position", -1)))])
        out.append({"kind": "sequence", "text": f"{len(positions)} more sequence misses, at positions "
                                                f"{_positions(positions)}: LogGPT saw {keys} where it expected other "
                                                "keys (the window below marks each)."})
    return out


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
    times = [when(ts, rec) for _, ts, rec in rows]
    at = when(line.timestamp, line.received_at)
    span = (at - min(times)).total_seconds()
    if span < 86400:  # less than a day of normal lines: every hour not yet seen would look unusual
        return None
    hour = at.astimezone(tz).hour
    same = sum(1 for t in times if t.astimezone(tz).hour == hour)
    if same / len(rows) >= HOUR_MAX_SHARE:
        return None
    days = span / 86400
    period = f"{days:.0f} days" if days >= 2 else f"{span / 3600:.0f} hours"
    seen = "0 times" if same == 0 else f"only {same} time{'' if same == 1 else 's'}"
    return (f"Unusual hour: between {hour:02d}:00 and {(hour + 1) % 24:02d}:00 ({tz_name}) the stream's normal "
            f"lines were seen {seen} in the {period} before this line ({len(rows):,} normal lines in all, "
            f"about {len(rows) / 24:,.0f} an hour if spread evenly).")


# --------------------------------------------------------------------------- the page


def _ingest_threshold(db: Session, a: Anomaly, line: LogLine | None) -> float | None:
    """The RAPID threshold the line was judged by: in the line anomaly's reasons."""
    if (a.reasons or {}).get("rapid_threshold") is not None:
        return float(a.reasons["rapid_threshold"])
    if line is None:
        return None
    return anomalies.line_threshold(db, line.id)


def _line_time(line: LogLine | None, a: Anomaly) -> float:
    """When it happened: the line's own time, else when it arrived, else when the anomaly was raised."""
    if line is not None and line.timestamp is not None:
        return float(line.timestamp)
    return _aware(line.received_at if line is not None else a.created_at).timestamp()


def load_detail(db: Session, services: Services, anomaly_id: int) -> Detail | None:
    found = anomalies.with_parts(db, anomaly_id)
    if found is None:
        return None
    a, stream, line = found
    registry = services.registry
    detail = Detail(a, stream, line, None)
    if line is not None and line.timestamp is not None:
        detail.line_time = datetime.fromtimestamp(float(line.timestamp), timezone.utc)
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
    settings = services.settings
    detail.reasons, detail.context = _reasons(detail, db, settings.incident_gap_seconds, settings.timezone)
    detail.context_link = context_link(stream.config().context_url, stream.name, _line_time(line, a), tid)
    if line is not None:
        before = lines.before(db, line.stream_id, line.id, AROUND)
        after = lines.after(db, line.stream_id, line.id, AROUND + 1, inclusive=True)
        detail.around = [*reversed(before), *after]
    detail.related = anomalies.related(db, a)
    detail.feedback = anomalies.feedback_of(db, a.id)
    if a.template_id is not None:
        detail.mute_until = anomalies.muted_until(db, a.stream_id, a.template_id, datetime.now(timezone.utc))
    return detail
