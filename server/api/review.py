"""`/api/v1/streams/{name}/review`: the training review, what train mode learned that looks like
an incident, and the operator's one-click answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel

from logsense.server import review
from logsense.server.api.deps import StreamDep
from logsense.server.registry import ModelsUnavailable

router = APIRouter(prefix="/api/v1/streams", tags=["review"])


class ReviewItemOut(BaseModel):
    template_id: int  # negative: a session shape (kind "shape")
    kind: Literal["template", "shape"]
    shape: list[int] | None  # a shape's template ids
    template: str | None
    status: str  # unconfirmed / normal / anomaly
    reasons: list[str]
    n_lines: int
    n_windows: int
    first_ts: float | None
    last_ts: float | None
    example: str
    answered_at: datetime | None
    actor: str | None


class ReviewAnswer(BaseModel):
    label: Literal["normal", "anomaly"]


def _out(row, model) -> ReviewItemOut:
    return ReviewItemOut(template=review.describe(row, model), kind="shape" if row.shape else "template",
                         **row.model_dump(include=set(ReviewItemOut.model_fields) - {"template", "kind"}))


@router.get("/{name}/review", response_model=list[ReviewItemOut])
def list_review(stream: StreamDep, request: Request,
                status: Annotated[Literal["unconfirmed", "normal", "anomaly"] | None, Query()] = None) -> list[ReviewItemOut]:
    """Suspicious templates of the training data (rare, severe, bursts) and rare session shapes,
    unanswered first. Unconfirmed ones are flagged (shapes: their sessions) and train nothing until
    answered."""
    model = request.app.state.registry.peek(stream.id)
    return [_out(r, model) for r in review.items(request.app.state.services, stream, status)]


@router.post("/{name}/review/{template_id}", response_model=ReviewItemOut)
def answer_review(stream: StreamDep, template_id: Annotated[int, Path(ge=-(2**31), le=2**31 - 1)],
                  body: ReviewAnswer, request: Request) -> ReviewItemOut:
    """"normal": learned from the next training on, no longer flagged; "anomaly": stays flagged."""
    try:
        row = review.answer(request.app.state.services, stream, template_id, body.label)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except ModelsUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
    return _out(row, request.app.state.registry.peek(stream.id))
