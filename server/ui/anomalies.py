"""The triage queue and anomaly detail pages, and the operator's verdicts on them.

Verdicts go through `server.feedback.answer_group` ("Mark normal" teaches the model at once;
"Confirm anomaly" keeps it an incident: one set-based operation for a whole row, as the API's
`POST /api/v1/anomalies/feedback`) and mutes through `server.feedback.mute_template`. An answer
can be undone for `UNDO_SECONDS` (`POST /anomalies/reopen`, `server.feedback.reopen`): the
anomalies are open again, their labels and feedback gone; what the live model learned stays.
Rows of more than `CONFIRM_OVER` anomalies ask before answering (app.js, on `htmx:confirm`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlmodel import Session

from logsense.server import anomalies, streams
from logsense.server.feedback import UNDO_SECONDS, answer_group, reopen
from logsense.server.registry import ModelsUnavailable
from logsense.server.tables import utcnow
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
CONFIRM_OVER = 100  # a row or selection of more anomalies than this asks "are you sure?" first
KEPT = "the model keeps what it learned"  # a reopened "normal" is not untaught


def _common() -> dict:
    """What the queue's and detail page's templates read besides the page's own data."""
    return {"mute_choices": MUTE_CHOICES, "confirm_over": CONFIRM_OVER, "undo_minutes": UNDO_SECONDS // 60,
            "presets": queue.PRESETS}


def _streams(request: Request) -> list[str]:
    with Session(request.app.state.engine) as db:
        return streams.names(db)


def _page(request: Request, filters: queue.Filters) -> queue.QueuePage:
    with Session(request.app.state.engine) as db:
        return queue.load_page(db, request.app.state.services.registry, filters,
                               request.app.state.settings.incident_gap_seconds)


def _queue_ctx(request: Request, filters: queue.Filters, **extra: Any) -> dict:
    page = _page(request, filters)
    return {"section": "queue", "page": page, "filters": filters, "streams": _streams(request),
            "qs": queue.Filters.params(filters), **_common(), **extra}


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
        detail = load_detail(db, request.app.state.services, anomaly_id)
    if detail is None:
        raise UiError(404, f"There is no anomaly {anomaly_id} (deleted with its stream, or never made).")
    return render(request, "anomalies/detail.html", {"section": "queue", "d": detail, "message": None, **_common()})


# --------------------------------------------------------------------------- verdicts


def _apply(request: Request, op: Operator, ids: list[int], action: str, hours: float | None,
           only_open: bool) -> tuple[int, list[str], list[int]]:
    """Apply an action to anomalies; (how many changed, notes for the operator, the anomalies
    answered: what an undo reopens; none for a mute)."""
    services = request.app.state.services
    if action == "mute":
        try:
            muted, found = anomalies.mute(services, ids, utcnow() + timedelta(hours=hours or 1), op.actor)
        except anomalies.NoTemplate:
            raise UiError(400, "these anomalies have no template to mute") from None
        except LookupError as exc:
            raise UiError(404, str(exc)) from None
        notes = [f"{len(ids) - found} anomaly id(s) no longer exist"] if found < len(ids) else []
        return muted, notes, []
    label, scope = ACTIONS[action]
    try:
        answer = answer_group(services, ids, label, scope, author=op.actor, only_open=only_open)
    except LookupError as exc:
        raise UiError(404, str(exc)) from None
    except ModelsUnavailable as exc:
        raise UiError(503, f"Nothing was recorded: {exc}") from None
    return len(answer.ids), answer.notes, answer.ids


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
    done, notes, answered = await run_in_threadpool(_apply, request, op, ids, action, hours, view != "detail")
    message = _message(action, done, notes)
    undo = ",".join(map(str, answered))
    if not is_htmx(request):
        back = f"/anomalies/{ids[0]}" if view == "detail" else "/anomalies"
        return redirect(back)
    if view == "detail":
        return await _verdict_panel(request, ids[0], message, undo_ids=undo,
                                    open_total=await run_in_threadpool(open_count, request))
    return await _rows(request, ids, _filters_from(form), message, undo_ids=undo,
                       open_total=await run_in_threadpool(open_count, request))


async def _rows(request: Request, ids: list[int], filters: Any, message: str, **ctx: object) -> Response:
    """The queue rows of `ids` drawn again after an answer or an undo."""
    def rows():  # noqa: ANN202
        with Session(request.app.state.engine) as db:
            groups = anomalies.groups_of_ids(db, request.app.state.services.registry, ids)
            total = queue.count_matching(db, filters)
        return groups, total

    groups, total = await run_in_threadpool(rows)
    return fragment(request, "anomalies/rows.html", {"groups": groups, "resolved": message, "qs": filters.params(),
                                                     "queue_total": total, **ctx, **_common()})


async def _verdict_panel(request: Request, anomaly_id: int, message: str, **ctx: object) -> Response:
    """The detail page's verdict panel drawn again after an answer or an undo."""
    from logsense.server.ui.explain import load_detail

    def load():  # noqa: ANN202
        with Session(request.app.state.engine) as db:
            return load_detail(db, request.app.state.services, anomaly_id)

    detail = await run_in_threadpool(load)
    return fragment(request, "anomalies/actions.html", {"d": detail, "message": message, "oob_count": True,
                                                        **ctx, **_common()})


@router.post("/anomalies/bulk", dependencies=[CsrfDep])
async def bulk(request: Request, op: OperateDep) -> Response:
    """The queue's bulk bar: every selected row (`sel`), one action; the queue is drawn again."""
    form = await request.form()
    filters = _filters_from(form)
    action, hours = _action(form)
    ids = queue.parse_ids(form.getlist("sel"))
    done, notes, answered = await run_in_threadpool(_apply, request, op, ids, action, hours, True)
    message = _message(action, done, notes)
    if not is_htmx(request):
        query = urlencode({k: v for k, v in filters.params().items() if v})
        return redirect("/anomalies" + (f"?{query}" if query else ""))
    ctx = await run_in_threadpool(_queue_ctx, request, filters)
    ctx.update(flash=message, flash_kind="ok", oob_count=True, undo_ids=",".join(map(str, answered)),
               open_total=await run_in_threadpool(open_count, request))
    return fragment(request, "anomalies/table.html", ctx)


@router.post("/anomalies/reopen", dependencies=[CsrfDep])
async def reopen_answer(request: Request, op: OperateDep) -> Response:
    """Undo: the anomalies `ids` answered in the last `UNDO_SECONDS` are open again; `view`
    row (the row drawn again), detail (the verdict panel) or queue (the whole queue)."""
    form = await request.form()
    ids = queue.parse_ids(form.getlist("ids"))
    view = str(form.get("view") or "row")
    try:
        answer = await run_in_threadpool(reopen, request.app.state.services, ids, op.actor)
    except LookupError as exc:
        raise UiError(404, str(exc)) from None
    n = len(answer.ids)
    message = f"Reopened: {n} anomal{'y' if n == 1 else 'ies'}; {KEPT}."
    if answer.notes:
        message += " " + "; ".join(dict.fromkeys(answer.notes)) + "."
    filters = _filters_from(form)
    if not is_htmx(request):
        if view == "detail":
            return redirect(f"/anomalies/{ids[0]}")
        query = urlencode({k: v for k, v in filters.params().items() if v})
        return redirect("/anomalies" + (f"?{query}" if query else ""))
    open_total = await run_in_threadpool(open_count, request)
    if view == "detail":
        return await _verdict_panel(request, ids[0], message, open_total=open_total)
    if view == "queue":
        ctx = await run_in_threadpool(_queue_ctx, request, filters)
        ctx.update(flash=message, flash_kind="ok", oob_count=True, open_total=open_total)
        return fragment(request, "anomalies/table.html", ctx)
    return await _rows(request, ids, filters, message, open_total=open_total)
