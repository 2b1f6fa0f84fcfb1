"""`/incidents`: the stored incidents (`server.incidents`), and `/incidents/{id}`, one page per
incident with a shareable URL: its anomalies by template (each linking to its anomaly page),
acknowledge / assign to me / resolve / reopen for operators, and notes.

The same service functions as `/api/v1/incidents` (`incidents.change`, `incidents.add_note`);
both settle the incidents first (`incidents.settle`: one none of whose anomalies is open resolves).
`/incidents/of-anomaly/{anomaly_id}` sends a browser to an anomaly's incident (a link any page can
carry without reading the incident itself).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlmodel import Session

from logsense.server import incidents, streams
from logsense.server.ui.core import (CsrfDep, OperateDep, Operator, OperatorDep, UiError, fragment, is_htmx, redirect,
                                     render)

router = APIRouter()

PAGE_SIZE = 30
STATUS_WORDS = {"unresolved": "open or acknowledged", "open": "open", "acknowledged": "acknowledged",
                "resolved": "resolved", "any": "any"}
ACTIONS = {  # button -> (status, assignee change) for incidents.change
    "acknowledge": ("acknowledged", None),
    "assign-me": (None, "me"),
    "unassign": (None, ""),
    "resolve": ("resolved", None),
    "reopen": ("open", None),
}
DONE_WORDS = {"acknowledge": "Acknowledged", "assign-me": "Assigned to you", "unassign": "Unassigned",
              "resolve": "Resolved", "reopen": "Reopened"}
NOTE_CHARS = 4000


def _filters(params: Any) -> dict:
    def get(name: str) -> str | None:
        v = params.get(name)
        return None if v is None or str(v).strip() == "" else str(v).strip()

    status = get("status") or "unresolved"
    if status not in incidents.STATUS_FILTERS:
        raise UiError(400, f"status must be one of {', '.join(incidents.STATUS_FILTERS)}, not {status[:20]!r}")
    stream = get("stream")
    if stream is not None and len(stream) > 64:
        raise UiError(400, "stream: no stream has a name that long")
    before = get("before")
    if before is not None and (not before.isdigit() or len(before) > 18):
        raise UiError(400, f"before must be an incident id, not {before[:20]!r}")
    return {"stream": stream, "status": status, "before": int(before) if before else None}


def _list_ctx(request: Request, f: dict) -> dict:
    engine = request.app.state.engine
    incidents.settle(engine)
    with Session(engine) as db:
        found = incidents.list_incidents(db, request.app.state.services.registry, f["stream"], f["status"],
                                         f["before"], PAGE_SIZE + 1)
        counts = incidents.count_incidents(db, f["stream"])
        names = streams.names(db)
    more = len(found) > PAGE_SIZE
    found = found[:PAGE_SIZE]
    qs = {"stream": f["stream"], "status": None if f["status"] == "unresolved" else f["status"]}
    return {"section": "incidents", "items": found, "counts": counts, "streams": names, "filters": f, "qs": qs,
            "status_words": STATUS_WORDS, "older": found[-1].row.id if more and found else None}


@router.get("/incidents")
def list_page(request: Request, op: OperatorDep) -> Response:
    f = _filters(request.query_params)
    return render(request, "incidents/list.html", _list_ctx(request, f), partial="incidents/table.html")


@router.get("/incidents/of-anomaly/{anomaly_id}")
def of_anomaly(anomaly_id: int, request: Request, op: OperatorDep) -> Response:
    """To the incident an anomaly joined (404 page when it has none: stored before incidents were)."""
    with Session(request.app.state.engine) as db:
        incident_id = incidents.incident_of_anomaly(db, anomaly_id)
    if incident_id is None:
        raise UiError(404, f"Anomaly {anomaly_id} belongs to no stored incident (it does not exist, or was stored "
                           "without one); the queue still groups it.")
    return redirect(f"/incidents/{incident_id}")


def _detail_ctx(request: Request, incident_id: int, **extra: Any) -> dict:
    engine = request.app.state.engine
    incidents.settle(engine, incident_ids=[incident_id])
    with Session(engine) as db:
        v = incidents.incident_detail(db, request.app.state.services.registry, incident_id)
    if v is None:
        raise UiError(404, f"There is no incident {incident_id} (deleted with its stream or by retention, "
                           "or never made).")
    from logsense.server.api.incidents import incident_url

    return {"section": "incidents", "inc": v, "share_url": incident_url(request, incident_id), "message": None,
            "note_chars": NOTE_CHARS, **extra}


@router.get("/incidents/{incident_id}")
def detail_page(incident_id: int, request: Request, op: OperatorDep) -> Response:
    return render(request, "incidents/detail.html", _detail_ctx(request, incident_id), partial="incidents/body.html")


def _change(request: Request, op: Operator, incident_id: int, action: str) -> None:
    status, assignee = ACTIONS[action]
    try:
        incidents.change(request.app.state.engine, incident_id, op.actor, status,
                         op.name if assignee == "me" else assignee)
    except LookupError as exc:
        raise UiError(404, str(exc)) from None


def _answer(request: Request, incident_id: int, message: str) -> Response:
    if not is_htmx(request):
        return redirect(f"/incidents/{incident_id}")
    return fragment(request, "incidents/body.html", _detail_ctx(request, incident_id, message=message))


@router.post("/incidents/{incident_id}/act", dependencies=[CsrfDep])
async def act(incident_id: int, request: Request, op: OperateDep) -> Response:
    """A button of the incident page: `action` acknowledge, assign-me, unassign, resolve or reopen."""
    form = await request.form()
    action = str(form.get("action") or "")
    if action not in ACTIONS:
        raise UiError(400, f"unknown action {action[:30]!r}: one of {', '.join(ACTIONS)}")
    await run_in_threadpool(_change, request, op, incident_id, action)
    return await run_in_threadpool(_answer, request, incident_id, f"{DONE_WORDS[action]}.")


def _note(request: Request, op: Operator, incident_id: int, text: str) -> None:
    try:
        incidents.add_note(request.app.state.engine, incident_id, op.actor, text)
    except LookupError as exc:
        raise UiError(404, str(exc)) from None


@router.post("/incidents/{incident_id}/notes", dependencies=[CsrfDep])
async def add_note(incident_id: int, request: Request, op: OperateDep) -> Response:
    form = await request.form()
    text = str(form.get("text") or "").strip()
    if not text:
        raise UiError(400, "a note needs some text")
    if len(text) > NOTE_CHARS or "\x00" in text:
        raise UiError(400, f"a note is at most {NOTE_CHARS} characters, without NUL")
    await run_in_threadpool(_note, request, op, incident_id, text)
    return await run_in_threadpool(_answer, request, incident_id, "Note added.")
