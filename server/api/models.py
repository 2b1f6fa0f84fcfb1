"""`/api/v1/streams/{name}/train`, `/models`, `/models/{version}/rollback`: training and versions."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict
from sqlmodel import Session

from logsense.server import reports
from logsense.server.api.deps import RowId, SessionDep, StreamDep
from logsense.server.training import rollback, start_training

router = APIRouter(prefix="/api/v1/streams", tags=["models"])


class TrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["train", "nightly"] = "train"  # train: from scratch; nightly: fine-tune, promote if not worse


class JobRef(BaseModel):
    job_id: int
    url: str


class VersionOut(BaseModel):
    version: int
    kind: str
    live: bool
    path: str
    metrics: dict  # val_fpr, anomaly_recall, k, rapid_threshold, promoted, reason, ...
    job_id: int | None
    created_at: datetime


@router.post("/{name}/train", status_code=status.HTTP_202_ACCEPTED, response_model=JobRef)
async def train(stream: StreamDep, request: Request, body: TrainIn | None = None) -> JobRef:
    """Start a training job (LogGPT from the train-mode data, RAPID index from the normal lines)."""
    mode = body.mode if body is not None else "train"
    job_id = await run_in_threadpool(start_training, request.app.state.services, stream.id, mode)
    return JobRef(job_id=job_id, url=f"/api/v1/jobs/{job_id}")


@router.get("/{name}/models", response_model=list[VersionOut])
def list_versions(stream: StreamDep, session: SessionDep) -> list[VersionOut]:
    """Every trained version of the stream, newest first; `live` marks the one in use."""
    return [VersionOut(**r.model_dump()) for r in reports.versions(session, stream.id)]


@router.post("/{name}/models/{version}/rollback", response_model=VersionOut)
async def rollback_version(version: RowId, stream: StreamDep, request: Request) -> VersionOut:
    """Make an older (or kept-back) LogGPT version live."""
    try:
        await run_in_threadpool(rollback, request.app.state.services, stream.id, version)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    with Session(request.app.state.engine) as session:
        return VersionOut(**reports.loggpt_version(session, stream.id, version).model_dump())
