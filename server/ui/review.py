"""`/streams/{name}/review`: the training review, one click per suspicious template or shape.

Answers go through `server.review.answer`, as `POST /api/v1/streams/{name}/review/{template_id}`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from logsense.server import review
from logsense.server.registry import ModelsUnavailable
from logsense.server.tables import Stream
from logsense.server.ui.core import CsrfDep, OperateDep, OperatorDep, UiError, fragment, is_htmx, redirect, render, stream_named

router = APIRouter()


def _ctx(request: Request, stream: Stream, **extra) -> dict:  # noqa: ANN003
    model = request.app.state.registry.peek(stream.id)
    rows = review.items(request.app.state.services, stream)
    items = [{"row": r, "template": review.describe(r, model)} for r in rows]
    return {"section": "streams", "stream": stream, "items": items, "message": None,
            "open": sum(r.status == "unconfirmed" for r in rows), **extra}


@router.get("/streams/{name}/review")
async def show_review(name: str, request: Request, op: OperatorDep) -> Response:
    def run() -> dict:
        return _ctx(request, stream_named(request, name))

    return render(request, "review/list.html", await run_in_threadpool(run), partial="review/table.html")


@router.post("/streams/{name}/review/{template_id}", dependencies=[CsrfDep])
async def answer_review(name: str, template_id: int, request: Request, op: OperateDep) -> Response:
    form = await request.form()
    label = str(form.get("label") or "")

    def run() -> dict:
        stream = stream_named(request, name)
        try:
            review.answer(request.app.state.services, stream, template_id, label, actor=op.actor)
        except LookupError as exc:
            raise UiError(404, str(exc)) from None
        except ValueError as exc:
            raise UiError(422, str(exc)) from None
        except ModelsUnavailable as exc:
            raise UiError(503, str(exc)) from None
        what = f"Template {template_id}" if template_id >= 0 else "Session shape"
        return _ctx(request, stream, message=f"{what}: {label}.")

    ctx = await run_in_threadpool(run)
    if not is_htmx(request):
        return redirect(f"/streams/{name}/review")
    return fragment(request, "review/table.html", ctx)
