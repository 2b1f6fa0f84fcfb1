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

Everything is written to the database first (the truth a restart rebuilds the models from),
then applied to the live model.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session

from logsense.server import alerts, store
from logsense.server.tables import Anomaly, Feedback, LogLine, Stream, TemplateMute, Window, WindowLine, utcnow

LABELS = ("normal", "anomaly")
SCOPES = ("line", "template")


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


def apply_feedback(
    app: Any,
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
    engine = app.state.engine
    now = utcnow()
    if label == "normal":  # the model must be usable before anything is recorded: a 503 then changes nothing
        with Session(engine) as session:
            found = session.get(Anomaly, anomaly_id)
            stream = session.get(Stream, found.stream_id) if found is not None else None
        if stream is not None:
            app.state.registry.get(stream)  # ModelsUnavailable while loading
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
        session.flush()
        alerts.resolve_closed(session, anomaly.stream_id, now)  # what this closed resolves its alerts
        session.refresh(anomaly)
        session.expunge(anomaly)
        masked = line.masked if line is not None else None
        template_id = anomaly.template_id

    if label == "normal":  # the live model learns it now; a restart re-reads it from the database
        registry = app.state.registry
        model = registry.get(stream)
        confirmed = model.refute(line=masked if anomaly.kind != "window" else None, template=template_id, scope=scope,
                                 windows=window_texts, window_templates=window_templates)
        if confirmed:  # the training review's answer, in the database too
            with store.write_session(engine) as session:
                store.confirm_reviews(session, stream.id, confirmed, author)
        registry.mark_dirty(stream.id)
    app.state.metrics.feedback.labels(stream.name, label).inc()
    return anomaly


def apply_to_group(app: Any, ids: list[int], label: str, scope: str = "line", author: str | None = None,
                   only_open: bool = True) -> tuple[int, list[str]]:
    """One answer on a group of anomalies (a queue row): `apply_feedback` on each member still open
    (each is read afresh: answering one may have closed others, a template-scope "normal" all of
    its template). Returns (how many were answered, notes for the operator). Raises LookupError
    when none of `ids` exists, ModelsUnavailable (for "normal") while the stream's model loads."""
    from logsense.server.registry import ModelsUnavailable

    with Session(app.state.engine) as session:
        found = set(session.execute(select(Anomaly.id).where(Anomaly.id.in_(ids))).scalars().all())
    if not found:
        raise LookupError(f"no anomaly with id {', '.join(map(str, ids[:5]))}")
    notes = [f"{len(ids) - len(found)} anomaly id(s) no longer exist"] if len(found) < len(ids) else []
    done = 0
    for aid in ids:
        if aid not in found:
            continue
        with Session(app.state.engine) as session:
            a = session.get(Anomaly, aid)
        if a is None or (only_open and a.status != "open"):
            continue
        try:
            apply_feedback(app, aid, label, scope if a.template_id is not None else "line", author=author)
        except ModelsUnavailable:
            notes.append("saved; the model learns it as soon as it has loaded")
        except (LookupError, ValueError) as exc:
            notes.append(str(exc))
            continue
        done += 1
    return done, notes


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


def _clear_window_flags(session: Any, window_id: int, now: datetime) -> None:
    """A refuted window's lines lose their LogGPT flag; their severity falls back to RAPID's."""
    ids = select(WindowLine.line_id).where(WindowLine.window_id == window_id)
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


def mute_template(app: Any, stream_id: int, template_id: int, until: datetime, author: str | None = None) -> None:
    """Mute alerts from a template until `until` (its open anomalies become "muted"); teaches nothing.

    Raises LookupError for an unknown stream. A time in the past unmutes.
    """
    with store.write_session(app.state.engine) as session:
        if session.get(Stream, stream_id) is None:
            raise LookupError(f"no stream with id {stream_id}")
        now = utcnow()
        _mute(session, stream_id, int(template_id), until, author, now)
        session.flush()
        alerts.resolve_closed(session, stream_id, now)
