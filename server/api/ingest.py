"""`POST /api/v1/streams/{name}/logs`: store a batch of lines and answer each line's verdict so far.

The body formats are `server.batch`'s; storing is `server.ingest`'s. A bad line or record is
reported by index in `errors` and the others are still stored: status 200 when all were
stored, 207 when some were, 422 when none was.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlmodel import Session

from logsense.server.api.deps import get_stream
from logsense.server.batch import parse_body
from logsense.server.ingest import Replayed, ingest
from logsense.server.registry import ModelsUnavailable
from logsense.server.settings import Settings
from logsense.server.tables import Stream

router = APIRouter(prefix="/api/v1/streams", tags=["ingest"])


class LineOut(BaseModel):
    index: int  # position in the request
    id: int  # stored line id
    template_id: int | None
    template: str | None
    rapid_score: float | None  # None in train mode, and while pending
    rapid_flag: bool | None
    severity: str  # train / normal / watch (so far: LogGPT may raise it when the window is checked) / pending
    # (a new text the background encoder has yet to embed: its RAPID verdict follows, usually within seconds)
    pending: bool  # a LogGPT check of one of its windows, or its RAPID verdict, is still to come


class IngestOut(BaseModel):
    stream: str
    train_mode: bool
    accepted: int
    rejected: int
    queued_windows: int  # windows this batch closed and queued for LogGPT
    lines: list[LineOut]
    errors: list[dict]  # {"index": i, "error": "..."} per rejected line or record
    warnings: list[str] = []  # e.g. most of the batch's lines did not match the stream's header format




_RECORD_SCHEMA = {
    "type": "object", "required": ["message"],
    "properties": {
        "message": {"type": "string"},
        "timestamp": {"oneOf": [{"type": "number"}, {"type": "string"}]},
        "session": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "attributes": {"type": "object"},
    },
}
_LINES_SCHEMA = {"type": "object", "required": ["lines"],
                 "properties": {"lines": {"type": "array", "items": {"type": "string"}}}}
_RECORDS_SCHEMA = {"type": "object", "required": ["records"],
                   "properties": {"records": {"type": "array", "items": _RECORD_SCHEMA}}}


@router.post(
    "/{name}/logs",
    response_model=IngestOut,
    status_code=200,
    responses={
        207: {"model": IngestOut, "description": "some lines stored, the others listed in `errors` by index"},
        400: {"description": "malformed JSON"},
        404: {"description": "no such stream"},
        413: {"description": "over max_lines_per_batch or max_request_bytes"},
        415: {"description": "neither JSON nor text/plain"},
        422: {"description": "nothing storable in the body; `errors` says why per line"},
        503: {"description": "detection models still loading"},
    },
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [_LINES_SCHEMA, _RECORDS_SCHEMA]}},
        "text/plain": {"schema": {"type": "string"}, "example": "line one\nline two\n"},
    }}},
)
async def post_logs(name: str, request: Request, key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=255,
        description="a retry with the same key gets the first attempt's answer; nothing is stored twice (kept a day)")] = None,
) -> Response:
    """Store a batch of log lines; each line's verdict so far comes back in the same answer.

    The `Server-Timing` header says where the time went: `read` (body and checks), `store`
    (parse, score, insert, windows, commit, and the answer's JSON, built during the commit) and
    `total`, in milliseconds.
    """
    start = time.perf_counter()
    state = request.app.state
    settings: Settings = state.settings

    def lookup() -> Stream:
        with Session(state.engine) as session:
            return get_stream(name, session)

    stream = await run_in_threadpool(lookup)  # 404 before reading a large body
    if key is not None and not key.isprintable():
        raise HTTPException(400, "Idempotency-Key must be printable characters")
    body = await request.body()
    batch = parse_body(body, request.headers.get("content-type", ""), settings)
    if not batch.messages:
        return JSONResponse({"detail": "no line could be stored", "errors": batch.errors,
                             "message": "; ".join(f"{e['index']}: {e['error']}" for e in batch.errors[:10])},
                            status_code=422)
    read = time.perf_counter()
    replayed = {}
    try:
        status, content = await run_in_threadpool(ingest, request.app.state.services, stream, batch, key)
    except ModelsUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "10"}) from None
    except Replayed as again:
        status, content, replayed = again.status, again.content, {"Idempotent-Replayed": "true"}
    stored = time.perf_counter()
    timing = (f"read;dur={(read - start) * 1000:.1f}, store;dur={(stored - read) * 1000:.1f}, "
              f"total;dur={(time.perf_counter() - start) * 1000:.1f}")
    return Response(content, status_code=status, media_type="application/json",
                    headers={"Server-Timing": timing, **replayed})
