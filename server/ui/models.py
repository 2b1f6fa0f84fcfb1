"""`/models`: each stream's LogGPT versions with their validation metrics, which one is live, roll back.

Rolling back calls `server.training.rollback`, as `POST /api/v1/streams/{name}/models/{v}/rollback`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlmodel import Session

from logsense.server import reports, streams
from logsense.server.training import rollback
from logsense.server.ui.core import AdminDep, CsrfDep, OperatorDep, UiError, fragment, is_htmx, redirect, render, stream_named

router = APIRouter()

METRICS = (  # shown as columns, in this order, when a version has them
    ("val_fpr", "val. FPR"), ("target_fpr", "target FPR"), ("anomaly_recall", "recall on confirmed"), ("k", "top-K"),
    ("rapid_threshold", "RAPID threshold"), ("n_train", "train windows"), ("n_val", "val. windows"),
)


def _sections(request: Request, only: str | None) -> list[dict]:
    with Session(request.app.state.engine) as db:
        found = streams.all_streams(db, only or None)
        if only and not found:
            raise UiError(404, f"There is no stream named {only[:64]!r}.")
        return [{"stream": s, "versions": reports.versions(db, s.id)} for s in found]


def _ctx(request: Request, only: str | None, **extra) -> dict:  # noqa: ANN003
    return {"section": "models", "sections": _sections(request, only), "metrics": METRICS,
            "only": only or "", "message": None, **extra}


@router.get("/models")
def list_models(request: Request, op: OperatorDep, stream: str = "") -> Response:
    return render(request, "models/list.html", _ctx(request, stream or None), partial="models/table.html")


@router.post("/streams/{name}/models/{version}/rollback", dependencies=[CsrfDep])
async def roll_back(name: str, version: int, request: Request, op: AdminDep) -> Response:
    def run() -> str:
        stream = stream_named(request, name)
        try:
            rollback(request.app.state.services, stream.id, version)
        except LookupError as exc:
            raise UiError(404, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 (e.g. the version's files are gone: say so, no 500)
            raise UiError(409, f"could not make version {version} live: {type(exc).__name__}: {exc}") from None
        return f"{name}: LogGPT version {version} is live now."

    message = await run_in_threadpool(run)
    if not is_htmx(request):
        return redirect(f"/models?stream={name}")
    form = await request.form()
    only = str(form.get("only") or "") or None
    ctx = await run_in_threadpool(_ctx, request, only)
    ctx.update(message=message)
    return fragment(request, "models/table.html", ctx)
