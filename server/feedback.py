"""Operator feedback on anomalies: refute (label "normal"), confirm (label "anomaly"), mute.

- Refuting a line anomaly teaches the stream's RAPID core set the masked line at once, so the
  next identical line scores 0 (normal); scope "template" also makes every line of that
  template normal from now on. The line is labeled normal (training data from now on).
- Refuting a line that LogGPT flagged too (danger) also refutes the windows it was flagged in:
  the operator said the line is normal where it stood.
- Refuting a window anomaly puts the window's session text in the session-level normal set (the
  same window never flags again) and its lines in RAPID's normal set, labels the window normal
  (confirmed-normal training data for the nightly fine-tune) and clears its lines' LogGPT flags.
- Confirming keeps the anomaly as a true positive: the line/window is labeled "anomaly", which
  keeps it out of training data and makes it a validation case for promotions.
- `suppress_until` (or `mute_template`) mutes alerts from the template until then: open
  anomalies of it become "muted" and new ones are stored muted; the model learns nothing.
- Whatever an answer closes (refuted, confirmed, muted) that had a firing alert gets its
  `resolved` alert queued in the same transaction (`server.alerts.resolve_closed`).

- A group (a queue row, up to 1,000 anomalies) is answered by `answer_group` as one set-based
  operation with the same effects on each member: one UPDATE per table, the feedback rows in one
  executemany, the live model taught once with the distinct texts (not one `apply_feedback` per
  member: docs/performance.md has both timings).
- `reopen` undoes an answer for `UNDO_SECONDS`: the anomalies are open again, their feedback rows
  and their lines' and windows' labels gone. What the live model learned from a "normal" is NOT
  untaught (the lines keep scoring 0, a template-scope template keeps not flagging) until the
  next training reads the labels; `resolved` alerts already queued stay.

Everything is written to the database first (the truth a restart rebuilds the models from),
then applied to the live model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlmodel import Session

from logsense.server import alerts, store
from logsense.server.cluster import events
from logsense.server.services import Services
from logsense.server.tables import Anomaly, Feedback, LogLine, Stream, TemplateMute, Window, WindowLine, utcnow

LABELS = ("normal", "anomaly")
SCOPES = ("line", "template")
UNDO_SECONDS = 600  # how long an answer can be undone (`reopen`)
_CHUNK = 900  # ids per IN (...): under every database's bound-parameter limit


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


def apply_feedback(
    services: Services,
    anomaly_id: int,
    label: str,
    scope: str = "line",
    suppress_until: datetime | None = None,
    author: str | None = None,
    note: str | None = None,
) -> Anomaly:
    """Record an operator's verdict on an anomaly and apply it; the updated (closed) anomaly.

    Raises LookupError for an unknown anomaly id, ValueError for a bad label or scope (or a
    template scope on an anomaly without a template).
    """
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, not {label!r}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    engine = services.engine
    now = utcnow()
    if label == "normal":  # the model must be usable before anything is recorded: a 503 then changes nothing
        with Session(engine) as session:
            found = session.get(Anomaly, anomaly_id)
            stream = session.get(Stream, found.stream_id) if found is not None else None
        if stream is not None:
            services.registry.get(stream)  # ModelsUnavailable while loading
    with store.write_session(engine) as session:
        anomaly = session.get(Anomaly, anomaly_id)
        if anomaly is None:
            raise LookupError(f"no anomaly with id {anomaly_id}")
        if scope == "template" and anomaly.template_id is None:
            raise ValueError("scope 'template' needs an anomaly with a template")
        stream = session.get(Stream, anomaly.stream_id)
        line = session.get(LogLine, anomaly.line_id) if anomaly.line_id is not None else None
        window = session.get(Window, anomaly.window_id) if anomaly.window_id is not None else None
        refuted_windows: list[Window] = []
        if anomaly.kind == "window" and window is not None:
            refuted_windows = [window]
        elif label == "normal" and line is not None and line.loggpt_flag:
            refuted_windows = _flagged_windows(session, line.id)
        members = store.window_lines(session, [w.id for w in refuted_windows])
        from logsense.models.stream import MAX_CONTEXT_LINES

        # a window is judged with its session's earlier parts: that whole content is what was refuted
        context = store.session_context(session, anomaly.stream_id, [w.id for w in refuted_windows], MAX_CONTEXT_LINES)
        window_texts = [[x["masked"] for x in context[w.id] + members[w.id]] for w in refuted_windows if members[w.id]]
        window_templates = [x["template_id"] for w in refuted_windows for x in members[w.id] if x["template_id"] is not None]

        anomaly.status = "refuted" if label == "normal" else "confirmed"
        anomaly.updated_at = now
        session.add(anomaly)
        session.add(Feedback(anomaly_id=anomaly.id, label=label, scope=scope,
                             suppress_until=suppress_until, note=note, actor=author))
        for w in refuted_windows:
            w.label = label
            session.add(w)
            if label == "normal":
                _clear_window_flags(session, w.id, now)
                _close_window_anomalies(session, w.id, anomaly.id, now)
        if anomaly.kind != "window" and line is not None:
            line.label = label
            if label == "normal":
                line.severity = "normal"
            session.add(line)
        if label == "normal" and scope == "template":
            _close_template(session, anomaly.stream_id, anomaly.template_id, "refuted", now)
        if suppress_until is not None and anomaly.template_id is not None:
            _mute(session, anomaly.stream_id, anomaly.template_id, suppress_until, author, now)
        if label == "normal":
            events.publish(session, anomaly.stream_id, "feedback")  # other replicas reload the stream
        session.flush()
        alerts.resolve_closed(session, anomaly.stream_id, now)  # what this closed resolves its alerts
        store.settle_incidents(session, now, stream_id=anomaly.stream_id)  # and its incident, once all are closed
        session.refresh(anomaly)
        session.expunge(anomaly)
        masked = line.masked if line is not None else None
        template_id = anomaly.template_id

    if label == "normal":  # the live model learns it now; a restart re-reads it from the database
        registry = services.registry
        model = registry.get(stream)
        confirmed = model.refute(line=masked if anomaly.kind != "window" else None, template=template_id, scope=scope,
                                 windows=window_texts, window_templates=window_templates)
        if confirmed:  # the training review's answer, in the database too
            with store.write_session(engine) as session:
                store.confirm_reviews(session, stream.id, confirmed, author)
        registry.mark_dirty(stream.id)
    services.metrics.feedback.labels(stream.name, label).inc()
    return anomaly


@dataclass
class GroupAnswer:
    """What one answer on a group did: the anomalies it answered (or reopened), notes for the operator."""

    ids: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Member(NamedTuple):
    id: int
    stream_id: int
    template_id: int | None
    kind: str
    status: str
    line_id: int | None
    window_id: int | None
    updated_at: datetime


def _members(session: Any, ids: list[int]) -> list[_Member]:
    a = Anomaly.__table__.c
    out: list[_Member] = []
    for start in range(0, len(ids), _CHUNK):
        out.extend(_Member(*r) for r in session.execute(
            select(a.id, a.stream_id, a.template_id, a.kind, a.status, a.line_id, a.window_id, a.updated_at)
            .where(a.id.in_(ids[start : start + _CHUNK]))).all())
    order = {aid: i for i, aid in enumerate(ids)}
    return sorted(out, key=lambda m: order[m.id])


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


@dataclass
class _Teach:
    """What a "normal" on a stream's members teaches its live model, once for them all."""

    lines: list[str] = field(default_factory=list)  # masked texts of the refuted line anomalies
    templates: list[int] = field(default_factory=list)  # scope "template": never flag these again
    windows: list[list[str]] = field(default_factory=list)  # refuted windows' contents (with their session before)
    review_templates: list[int] = field(default_factory=list)  # templates the operator looked at (training review)
    n: int = 0


def apply_to_group(services: Services, ids: list[int], label: str, scope: str = "line", author: str | None = None,
                   only_open: bool = True) -> tuple[int, list[str]]:
    """One answer on a group of anomalies (a queue row): (how many were answered, notes for the
    operator); `answer_group` does it."""
    answer = answer_group(services, ids, label, scope, author, only_open)
    return len(answer.ids), answer.notes


def answer_group(services: Services, ids: list[int], label: str, scope: str = "line", author: str | None = None,
                 only_open: bool = True, note: str | None = None) -> GroupAnswer:
    """One answer on a group of anomalies (a queue row, the bulk bar, `POST /api/v1/anomalies/feedback`),
    as one set-based operation with the effects `apply_feedback` has on each member still open
    (all of them with `only_open=False`), read under the write lock.

    One UPDATE per table over the members (anomalies, their lines, their windows and those
    windows' lines), the feedback rows in one executemany, one `resolve_closed` per stream; then the
    stream's live model is taught once: the distinct masked lines (embedded at once when at most
    `inline_embed_texts` are new to it, else remembered word for word now, so they score 0 at
    once, and embedded by the background encoder), the refuted windows, the templates of a
    "template" scope. A member without a template is answered with scope "line". Every member
    answered gets its own feedback row and its line (or window) its label, also those that an
    earlier member's template scope or window would have closed in passing one by one.

    Raises LookupError when none of `ids` exists, ValueError for a bad label or scope,
    ModelsUnavailable (for "normal") while a stream's model loads: nothing is recorded then.
    """
    from logsense.server.registry import ModelsUnavailable

    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, not {label!r}")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
    ids = list(dict.fromkeys(int(i) for i in ids))
    engine, registry = services.engine, services.registry
    with Session(engine) as session:
        found = _members(session, ids)
        streams = {s.id: s for s in session.execute(
            select(Stream).where(Stream.id.in_({m.stream_id for m in found}))).scalars().all()}
        for s in streams.values():
            session.expunge(s)
    if not found:
        raise LookupError(f"no anomaly with id {', '.join(map(str, ids[:5]))}")
    notes = [f"{len(ids) - len(found)} anomaly id(s) no longer exist"] if len(found) < len(ids) else []
    if label == "normal" and any(m.status == "open" or not only_open for m in found):
        for stream in streams.values():  # the models must be usable before anything is recorded: a 503 changes nothing
            registry.get(stream)  # ModelsUnavailable while loading

    now = utcnow()
    teach: dict[int, _Teach] = {}
    answered: list[int] = []
    with store.write_session(engine) as session:
        members = [m for m in _members(session, ids) if not only_open or m.status == "open"]
        by_stream: dict[int, list[_Member]] = {}
        for m in members:
            by_stream.setdefault(m.stream_id, []).append(m)
        for stream_id, group in by_stream.items():
            teach[stream_id] = _answer_stream(session, stream_id, group, label, scope, author, note, now)
            answered.extend(m.id for m in group)
            if label == "normal":
                events.publish(session, stream_id, "feedback")
        session.flush()
        for stream_id in by_stream:
            alerts.resolve_closed(session, stream_id, now)  # what this closed resolves its alerts
            store.settle_incidents(session, now, stream_id=stream_id)

    for stream_id, what in teach.items():
        stream = streams[stream_id]
        if label == "normal":  # the live model learns it now; a restart re-reads it from the database
            try:
                _teach(services, stream, what, author)
            except ModelsUnavailable:
                notes.append("saved; the model learns it as soon as it has loaded")
        services.metrics.feedback.labels(stream.name, label).inc(what.n)
    return GroupAnswer(answered, notes)


def _answer_stream(session: Any, stream_id: int, members: list[_Member], label: str, scope: str,
                   author: str | None, note: str | None, now: datetime) -> _Teach:
    """Write one stream's share of a group answer; what its model is to learn."""
    from logsense.models.stream import MAX_CONTEXT_LINES

    ids = [m.id for m in members]
    scope_of = {m.id: scope if m.template_id is not None else "line" for m in members}
    line_ids = list(dict.fromkeys(m.line_id for m in members if m.kind != "window" and m.line_id is not None))
    lines: dict[int, tuple[str, bool | None]] = {}
    for chunk in _chunks(line_ids):
        lines.update((i, (masked, flag)) for i, masked, flag in session.execute(
            select(LogLine.id, LogLine.masked, LogLine.loggpt_flag).where(LogLine.id.in_(chunk))).all())
    window_ids = list(dict.fromkeys(m.window_id for m in members if m.kind == "window" and m.window_id is not None))
    wids: list[int] = []
    for chunk in _chunks(window_ids):
        wids.extend(session.execute(select(Window.id).where(Window.id.in_(chunk))).scalars().all())
    if label == "normal":  # a refuted line LogGPT flagged too refutes the windows it was flagged in
        flagged = [i for i, (_, flag) in lines.items() if flag]
        for chunk in _chunks(flagged):
            wids.extend(session.execute(
                select(Window.id).join(WindowLine, WindowLine.window_id == Window.id)
                .where(WindowLine.line_id.in_(chunk), Window.anomalous == True)  # noqa: E712
                .group_by(Window.id)).scalars().all())
    wids = sorted(set(wids))
    content = store.window_lines(session, wids)
    # a window is judged with its session's earlier parts: that whole content is what was refuted
    context = store.session_context(session, stream_id, wids, MAX_CONTEXT_LINES)

    a, w, ll = Anomaly.__table__, Window.__table__, LogLine.__table__
    status = "refuted" if label == "normal" else "confirmed"
    for chunk in _chunks(ids):
        session.execute(update(a).where(a.c.id.in_(chunk)).values(status=status, updated_at=now))
    session.execute(insert(Feedback.__table__), [
        {"anomaly_id": m.id, "label": label, "scope": scope_of[m.id], "suppress_until": None, "note": note,
         "actor": author, "created_at": now} for m in members])
    for chunk in _chunks(wids):
        session.execute(update(w).where(w.c.id.in_(chunk)).values(label=label))
        if label == "normal":
            _clear_window_flags(session, chunk, now)
            session.execute(update(a).where(a.c.window_id.in_(chunk), a.c.kind == "window", a.c.status == "open")
                            .values(status="refuted", updated_at=now))
    values = {"label": label, **({"severity": "normal"} if label == "normal" else {})}
    for chunk in _chunks(list(lines)):
        session.execute(update(ll).where(ll.c.id.in_(chunk)).values(**values))
    templates = sorted({m.template_id for m in members if scope_of[m.id] == "template"})
    if label == "normal" and templates:
        session.execute(update(a).where(a.c.stream_id == stream_id, a.c.template_id.in_(templates),
                                        a.c.kind == "line", a.c.status == "open").values(status="refuted", updated_at=now))
    out = _Teach(n=len(members))
    if label == "normal":
        out.lines = list(dict.fromkeys(lines[m.line_id][0] for m in members
                                       if m.kind != "window" and m.line_id in lines))
        out.templates = templates
        out.windows = [[x["masked"] for x in context[i] + content[i]] for i in wids if content[i]]
        window_templates = [x["template_id"] for i in wids for x in content[i] if x["template_id"] is not None]
        out.review_templates = list(dict.fromkeys([
            *(m.template_id for m in members if m.template_id is not None
              and ((m.kind != "window" and m.line_id in lines) or scope_of[m.id] == "template")),
            *window_templates]))
    return out


def _teach(services: Services, stream: Stream, what: _Teach, author: str | None) -> None:
    """A group's "normal" into the stream's live model, in one go."""
    registry = services.registry
    model = registry.get(stream)
    texts = list(dict.fromkeys([*what.lines, *(t for content in what.windows for t in content)]))
    new = [t for t in texts if not model.rapid.is_normal(t)]
    inline = len(new) <= services.settings.inline_embed_texts
    if texts or what.templates:  # first: `refute` below finds the windows' lines known already
        model.learn_normal(texts, templates=what.templates, defer=not inline)
    confirmed = model.refute(windows=what.windows, window_templates=what.review_templates)
    if confirmed:  # the training review's answer, in the database too
        with store.write_session(services.engine) as session:
            store.confirm_reviews(session, stream.id, confirmed, author)
    registry.mark_dirty(stream.id)
    if not inline and services.encoder is not None:
        services.encoder.wake()


def reopen(services: Services, ids: list[int], author: str | None = None, within: float | None = None) -> GroupAnswer:
    """Undo a recent answer: the anomalies of `ids` refuted or confirmed in the last `within`
    seconds (`UNDO_SECONDS`) are open again. Their feedback rows of that time go, their lines and
    windows lose the label (a line's severity is its detectors' again; a refuted window's lines
    get back the LogGPT flags of its misses), and what the answer closed in passing is open again
    too (the window anomalies of a refuted window; with a "template" scope, the template's line
    anomalies closed at that moment). Muted anomalies and older answers stay as they are.

    What the live model learned stays learned (the masked lines keep scoring 0, a template-scope
    template keeps not flagging) until the next training, which reads the labels; `resolved`
    alerts already queued stay queued. Raises LookupError when none of `ids` exists."""
    within = UNDO_SECONDS if within is None else within
    ids = list(dict.fromkeys(int(i) for i in ids))
    now = utcnow()
    cutoff = now - timedelta(seconds=within)
    with store.write_session(services.engine) as session:
        found = _members(session, ids)
        if not found:
            raise LookupError(f"no anomaly with id {', '.join(map(str, ids[:5]))}")
        notes = [f"{len(ids) - len(found)} anomaly id(s) no longer exist"] if len(found) < len(ids) else []
        members = [m for m in found if m.status in ("refuted", "confirmed") and _aware(m.updated_at) >= cutoff]
        n_open = sum(1 for m in found if m.status == "open")
        if n_open:
            notes.append(f"{n_open} open already")
        if len(found) - len(members) - n_open:
            notes.append(f"{len(found) - len(members) - n_open} answered more than {within / 60:.0f} minutes ago "
                         "or muted: unchanged")
        by_stream: dict[int, list[_Member]] = {}
        for m in members:
            by_stream.setdefault(m.stream_id, []).append(m)
        for stream_id, group in by_stream.items():
            _reopen_stream(session, stream_id, group, cutoff, now)
            events.publish(session, stream_id, "feedback")
    return GroupAnswer([m.id for m in members], notes)


def _reopen_stream(session: Any, stream_id: int, members: list[_Member], cutoff: datetime, now: datetime) -> None:
    a, w, ll, f = Anomaly.__table__, Window.__table__, LogLine.__table__, Feedback.__table__
    ids = [m.id for m in members]
    # the scope-"template" answers among them: the template's line anomalies closed at that moment reopen too
    template_answers: dict[int, datetime] = {}
    for chunk in _chunks(ids):
        for tid, when in session.execute(
                select(a.c.template_id, func.min(f.c.created_at)).join(f, f.c.anomaly_id == a.c.id)
                .where(a.c.id.in_(chunk), f.c.scope == "template", f.c.label == "normal", f.c.created_at >= cutoff,
                       a.c.template_id.is_not(None)).group_by(a.c.template_id)).all():
            template_answers[tid] = min(_aware(when), template_answers.get(tid, _aware(when)))
    line_ids = [m.line_id for m in members if m.kind != "window" and m.line_id is not None]
    wids = {m.window_id for m in members if m.kind == "window" and m.window_id is not None}
    for chunk in _chunks(line_ids):  # the windows a refuted line refuted with it (labeled, LogGPT-flagged)
        wids.update(session.execute(
            select(Window.id).join(WindowLine, WindowLine.window_id == Window.id)
            .where(WindowLine.line_id.in_(chunk), Window.anomalous == True, Window.label == "normal")  # noqa: E712
            .group_by(Window.id)).scalars().all())
    wids_list = sorted(wids)
    refuted_windows: list[tuple[int, dict | None]] = []
    for chunk in _chunks(wids_list):
        refuted_windows.extend(session.execute(
            select(w.c.id, w.c.result).where(w.c.id.in_(chunk), w.c.label == "normal")).all())

    for chunk in _chunks(ids):
        session.execute(update(a).where(a.c.id.in_(chunk)).values(status="open", updated_at=now))
        session.execute(delete(f).where(f.c.anomaly_id.in_(chunk), f.c.created_at >= cutoff))
    for tid, when in template_answers.items():
        session.execute(update(a).where(a.c.stream_id == stream_id, a.c.template_id == tid, a.c.kind == "line",
                                        a.c.status == "refuted", a.c.updated_at >= when).values(status="open", updated_at=now))
    refuted_ids = [i for i, _ in refuted_windows]
    for chunk in _chunks(refuted_ids):  # the window anomalies the refutation closed in passing
        session.execute(update(a).where(a.c.window_id.in_(chunk), a.c.kind == "window", a.c.status == "refuted",
                                        a.c.updated_at >= cutoff).values(status="open", updated_at=now))
    for chunk in _chunks(wids_list):
        session.execute(update(w).where(w.c.id.in_(chunk)).values(label=None))
    for chunk in _chunks(line_ids):
        session.execute(update(ll).where(ll.c.id.in_(chunk)).values(label=None))
    missed = sorted({int(m["line_id"]) for _, result in refuted_windows for m in (result or {}).get("misses") or []
                     if m.get("line_id") is not None})
    for chunk in _chunks(missed):  # what LogGPT flagged in them, flagged again
        session.execute(update(ll).where(ll.c.id.in_(chunk), ll.c.label.is_(None)).values(loggpt_flag=True))
    # severities from the flags again (models.policy.line_severity): the lines reopened, the refuted windows' lines
    wheres = [ll.c.id.in_(chunk) for chunk in _chunks(line_ids)]
    if refuted_ids:
        wheres.append(ll.c.id.in_(select(WindowLine.line_id).where(WindowLine.window_id.in_(refuted_ids))))
    for where in wheres:
        session.execute(update(ll).where(where, ll.c.label.is_(None), ll.c.severity != "train").values(
            severity=case((and_(ll.c.rapid_flag == True, ll.c.loggpt_flag == True), "danger"),  # noqa: E712
                          (or_(ll.c.rapid_flag == True, ll.c.loggpt_flag == True), "watch"),  # noqa: E712
                          else_="normal")))


def _flagged_windows(session: Any, line_id: int) -> list[Window]:
    """Windows holding the line that LogGPT found anomalous."""
    return list(session.execute(
        select(Window).join(WindowLine, WindowLine.window_id == Window.id)
        .where(WindowLine.line_id == line_id, Window.anomalous == True)  # noqa: E712
    ).scalars().unique().all())


def _close_window_anomalies(session: Any, window_id: int, except_id: int, now: datetime) -> None:
    t = Anomaly.__table__
    session.execute(update(t).where(t.c.window_id == window_id, t.c.kind == "window", t.c.status == "open",
                                    t.c.id != except_id).values(status="refuted", updated_at=now))


def _clear_window_flags(session: Any, window_id: int | list[int], now: datetime) -> None:
    """A refuted window's (or windows') lines lose their LogGPT flag; their severity falls back to RAPID's."""
    wids = [window_id] if isinstance(window_id, int) else list(window_id)
    ids = select(WindowLine.line_id).where(WindowLine.window_id.in_(wids))
    t = LogLine.__table__
    session.execute(update(t).where(t.c.id.in_(ids), t.c.rapid_flag == True, t.c.label.is_(None))  # noqa: E712
                    .values(loggpt_flag=False, severity="watch"))
    session.execute(update(t).where(t.c.id.in_(ids), t.c.rapid_flag != True, t.c.severity != "train")  # noqa: E712
                    .values(loggpt_flag=False, severity="normal"))


def _close_template(session: Any, stream_id: int, template_id: int, status: str, now: datetime) -> None:
    t = Anomaly.__table__
    session.execute(update(t).where(t.c.stream_id == stream_id, t.c.template_id == template_id,
                                    t.c.kind == "line", t.c.status == "open").values(status=status, updated_at=now))


def _mute(session: Any, stream_id: int, template_id: int, until: datetime, author: str | None, now: datetime) -> None:
    row = session.execute(
        select(TemplateMute).where(TemplateMute.stream_id == stream_id, TemplateMute.template_id == template_id)
    ).scalars().first()
    if row is None:
        row = TemplateMute(stream_id=stream_id, template_id=template_id, until=until, actor=author)
    else:
        row.until, row.actor, row.created_at = until, author, now
    session.add(row)
    if _aware(until) > now:
        _close_template(session, stream_id, template_id, "muted", now)


def mute_template(services: Services, stream_id: int, template_id: int, until: datetime,
                  author: str | None = None) -> None:
    """Mute alerts from a template until `until` (its open anomalies become "muted"); teaches nothing.

    Raises LookupError for an unknown stream. A time in the past unmutes.
    """
    with store.write_session(services.engine) as session:
        if session.get(Stream, stream_id) is None:
            raise LookupError(f"no stream with id {stream_id}")
        now = utcnow()
        _mute(session, stream_id, int(template_id), until, author, now)
        session.flush()
        alerts.resolve_closed(session, stream_id, now)
        store.settle_incidents(session, now, stream_id=stream_id)
