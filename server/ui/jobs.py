"""`/jobs`: running and past background jobs (training, nightly fine-tunes) with progress and errors."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session

from logsense.server import reports
from logsense.server.tables import JOB_STATES, Job
from logsense.server.ui.core import OperatorDep, UiError, fragment, render

router = APIRouter()

LIMIT = 100


def _jobs(request: Request, stream: str | None, state: str | None) -> list[tuple[Job, str | None]]:
    with Session(request.app.state.engine) as db:
        return reports.jobs(db, stream, state, LIMIT)


@router.get("/jobs")
def list_jobs(request: Request, op: OperatorDep, stream: str = "", state: str = "", highlight: int = 0) -> Response:
    if state and state not in JOB_STATES:
        raise UiError(400, f"state must be one of {', '.join(JOB_STATES)}, not {state[:20]!r}")
    jobs = _jobs(request, stream or None, state or None)
    active = any(j.state in ("queued", "running") for j, _ in jobs)
    return render(request, "jobs/list.html", {
        "section": "jobs", "jobs": jobs, "active": active, "stream": stream, "state": state, "states": JOB_STATES,
        "highlight": highlight}, partial="jobs/table.html")


@router.get("/jobs/{job_id}/progress")
def job_progress(job_id: int, request: Request, op: OperatorDep) -> Response:
    """One job's progress bar; it polls itself while the job runs (and stops when it ends)."""
    with Session(request.app.state.engine) as db:
        found = reports.job(db, job_id)
    if found is None:
        raise UiError(404, f"There is no job {job_id}.")
    job, name = found
    return fragment(request, "jobs/progress.html", {"job": job, "stream_name": name})
