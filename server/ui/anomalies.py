"""The triage queue and anomaly detail pages, and the operator's verdicts on them.

Verdicts go through `server.feedback.apply_feedback` ("Mark normal" teaches the model at once;
"Confirm anomaly" keeps it an incident) and mutes through `server.feedback.mute_template`,
exactly as the API's `POST /api/v1/anomalies/{id}/feedback`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlmodel import Session, select

from logsense.server.feedback import apply_to_group, mute_template
from logsense.server.tables import Anomaly, Stream, utcnow
from logsense.server.ui import queue
from logsense.server.ui.core import CsrfDep, OperateDep, Operator, OperatorDep, UiError, fragment, is_htmx, open_count, redirect, render

router = APIRouter()

MUTE_CHOICES = {"1": "1 hour", "8": "8 hours", "24": "24 hours", "168": "7 days"}
MAX_MUTE_HOURS = 24 * 366
ACTIONS = {  # bulk/row action -> (label, scope) or "mute"
    "normal": ("normal", "line"),
    "normal-template": ("normal", "template"),
    "confirm": ("anomaly", "line"),
}
DONE_WORDS = {"normal": "Marked normal", "normal-template": "Marked normal (whole template)",
              "confirm": "Confirmed as anomaly", "mute": "Muted"}


def _streams(request: Request) -> list[str]:
    with Session(request.app.state.engine) as db:
        return list(db.execute(select(Stream.name).order_by(Stream.name)).scalars().all())


def _page(request: Request, filters: queue.Filters) -> queue.QueuePage:
    with Session(request.app.state.engine) as db:
        return queue.load_page(db, getattr(request.app.state, "registry", None), filters,
                               request.app.state.settings.incident_gap_seconds)


def _queue_ctx(request: Request, filters: queue.Filters, **extra: Any) -> dict:
    page = _page(request, filters)
    return {"section": "queue", "page": page, "filters": filters, "streams": _streams(request),
            "qs": queue.Filters.params(filters), "mute_choices": MUTE_CHOICES, **extra}


@router.get("/anomalies")
def queue_page(request: Request, op: OperatorDep) -> Response:
    filters = queue.Filters.parse(request.query_params)
    return render(request, "anomalies/list.html", _queue_ctx(request, filters), partial="anomalies/table.html")


@router.get("/anomalies/poll")
def queue_poll(request: Request, op: OperatorDep, newest: int = 0) -> Response:
    """How many anomalies matching the filters arrived since the page was drawn (live refresh)."""
    filters = queue.Filters.parse(request.query_params)
    with Session(request.app.state.engine) as db:
        new = queue.count_new(db, filters, newest)
    return fragment(request, "anomalies/poll.html", {
        "new": new, "newest": newest, "qs": filters.params(), "open_total": open_count(request),
        "poll_oob": True})


@router.get("/anomalies/count")
def nav_count(request: Request, op: OperatorDep) -> Response:
    return fragment(request, "_count.html", {"open_total": open_count(request), "oob": False})


@router.get("/anomalies/{anomaly_id}")
def detail_page(anomaly_id: int, request: Request, op: OperatorDep) -> Response:
    from logsense.server.ui.explain import load_detail

    with Session(request.app.state.engine) as db:
        detail = load_detail(db, request.app, anomaly_id)
    if detail is None:
        raise UiError(404, f"There is no anomaly {anomaly_id} (deleted with its stream, or never made).")
    return render(request, "anomalies/detail.html", {"section": "queue", "d": detail, "mute_choices": MUTE_CHOICES,
                                                     "message": None})


# --------------------------------------------------------------------------- verdicts


def _apply(request: Request, op: Operator, ids: list[int], action: str, hours: float | None,
           only_open: bool) -> tuple[int, list[str]]:
    """Apply an action to anomalies; (how many changed, notes for the operator)."""
    app = request.app
    if action == "mute":
        with Session(app.state.engine) as db:
            rows = db.execute(select(Anomaly).where(Anomaly.id.in_(ids))).scalars().all()
        if not rows:
            raise UiError(404, f"no anomaly with id {', '.join(map(str, ids[:5]))}")
        until = utcnow() + timedelta(hours=hours or 1)
        pairs = {(a.stream_id, a.template_id) for a in rows if a.template_id is not None}
        if not pairs:
            raise UiError(400, "these anomalies have no template to mute")
        for stream_id, template_id in sorted(pairs):
            mute_template(app, stream_id, template_id, until, author=op.actor)
        notes = [f"{len(ids) - len(rows)} anomaly id(s) no longer exist"] if len(rows) < len(ids) else []
        return len(pairs), notes
    label, scope = ACTIONS[action]
    try:
        return apply_to_group(app, ids, label, scope, author=op.actor, only_open=only_open)
    except LookupError as exc:
        raise UiError(404, str(exc)) from None


def _hours(form: Any) -> float:
    text = str(form.get("hours") or "").strip()
    try:
        hours = float(text)
    except ValueError:
        raise UiError(400, f"mute for how many hours? {text[:20]!r} is not a number") from None
    if not 0 < hours <= MAX_MUTE_HOURS:
        raise UiError(400, f"mute for more than 0 and at most {MAX_MUTE_HOURS} hours")
    return hours


def _action(form: Any) -> tuple[str, float | None]:
    action = str(form.get("action") or "")
    if action not in (*ACTIONS, "mute"):
        raise UiError(400, f"unknown action {action[:30]!r}: one of {', '.join((*ACTIONS, 'mute'))}")
    return action, (_hours(form) if action == "mute" else None)


def _filters_from(form: Any) -> queue.Filters:
    return queue.Filters.parse(dict(parse_qsl(str(form.get("qs") or ""))))


def _message(action: str, n: int, notes: list[str]) -> str:
    what = "template(s)" if action == "mute" else "anomaly" if n == 1 else "anomalies"
    text = f"{DONE_WORDS[action]}: {n} {what}."
    return text + (" " + "; ".join(dict.fromkeys(notes)) + "." if notes else "")


@router.post("/anomalies/act", dependencies=[CsrfDep])
async def act(request: Request, op: OperateDep) -> Response:
    """One row's (or the detail page's) button: `ids`, `action`, `hours` (mute), `view` row|detail."""
    form = await request.form()
    ids = queue.parse_ids(form.getlist("ids"))
    action, hours = _action(form)
    view = str(form.get("view") or "row")
    done, notes = await run_in_threadpool(_apply, request, op, ids, action, hours, view != "detail")
    message = _message(action, done, notes)
    if not is_htmx(request):
        back = f"/anomalies/{ids[0]}" if view == "detail" else "/anomalies"
        return redirect(back)
    if view == "detail":
        from logsense.server.ui.explain import load_detail

        def load():  # noqa: ANN202
            with Session(request.app.state.engine) as db:
                return load_detail(db, request.app, ids[0])

        detail = await run_in_threadpool(load)
        return fragment(request, "anomalies/actions.html", {
            "d": detail, "mute_choices": MUTE_CHOICES, "message": message, "oob_count": True,
            "open_total": await run_in_threadpool(open_count, request)})
    filters = _filters_from(form)

    def rows():  # noqa: ANN202
        with Session(request.app.state.engine) as db:
            groups = queue.groups_of_ids(db, getattr(request.app.state, "registry", None), ids)
            total = queue.count_matching(db, filters)
        return groups, total

    groups, total = await run_in_threadpool(rows)
    return fragment(request, "anomalies/rows.html", {
        "groups": groups, "resolved": message, "qs": filters.params(), "mute_choices": MUTE_CHOICES,
        "queue_total": total, "open_total": await run_in_threadpool(open_count, request)})


@router.post("/anomalies/bulk", dependencies=[CsrfDep])
async def bulk(request: Request, op: OperateDep) -> Response:
    """The queue's bulk bar: every selected row (`sel`), one action; the queue is drawn again."""
    form = await request.form()
    filters = _filters_from(form)
    action, hours = _action(form)
    ids = queue.parse_ids(form.getlist("sel"))
    done, notes = await run_in_threadpool(_apply, request, op, ids, action, hours, True)
    message = _message(action, done, notes)
    if not is_htmx(request):
        query = urlencode({k: v for k, v in filters.params().items() if v})
        return redirect("/anomalies" + (f"?{query}" if query else ""))
    ctx = await run_in_threadpool(_queue_ctx, request, filters)
    ctx.update(flash=message, flash_kind="ok", oob_count=True, open_total=await run_in_threadpool(open_count, request))
    return fragment(request, "anomalies/table.html", ctx)
