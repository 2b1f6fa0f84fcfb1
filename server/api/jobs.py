"""`/api/v1/jobs`: background jobs (training, nightly fine-tune) with state and progress."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from logsense.server import reports
from logsense.server.api.deps import RowId, SessionDep
from logsense.server.tables import Job

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


class JobOut(BaseModel):
    id: int
    stream: str | None
    kind: str  # train / nightly
    state: str  # queued / running / done / failed
    progress: float  # 0..1
    message: str | None
    error: str | None
    result: dict | None  # version, promoted, metrics
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job, stream: str | None) -> "JobOut":
        return cls(stream=stream, **job.model_dump(exclude={"stream_id"}))


@router.get("", response_model=list[JobOut])
def list_jobs(
    session: SessionDep,
    stream: Annotated[str | None, Query(description="stream name")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[JobOut]:
    """Newest jobs first."""
    return [JobOut.of(j, name) for j, name in reports.jobs(session, stream, limit=limit)]


@router.get("/{job_id}", response_model=JobOut)
def read_job(job_id: RowId, session: SessionDep) -> JobOut:
    found = reports.job(session, job_id)
    if found is None:
        raise HTTPException(404, f"no job with id {job_id}")
    return JobOut.of(*found)
