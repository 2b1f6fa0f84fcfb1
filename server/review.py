"""The training review as the server keeps it: `template_reviews` rows, answered by operators.

The items come from the training job (`server.training.training_data` runs
`models.review.suspicious` over the train-mode windows). An answer is written to the database
first (the truth a restart reads back into `StreamModel.reviews`), then applied to the live
model: "normal" stops the template's lines from being flagged and lets the next training learn
its windows; "anomaly" keeps it flagged and out of training.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from logsense.models.review import Review
from logsense.server import store
from logsense.server.cluster import events
from logsense.server.services import Services
from logsense.server.tables import Stream, TemplateReview, utcnow

LABELS = (Review.NORMAL.value, Review.ANOMALY.value)


def answer(services: Services, stream: Stream, template_id: int, label: str,
           actor: str | None = None) -> TemplateReview:
    """Record an operator's answer to one review item; the updated row.
    Raises LookupError for a template not under review, ValueError for a bad label."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, not {label!r}")
    model = services.registry.get(stream)  # ModelsUnavailable while loading: nothing recorded
    with store.write_session(services.engine) as session:
        row = next((r for r in store.review_rows(session, stream.id) if r.template_id == template_id), None)
        if row is None:
            raise LookupError(f"template {template_id} of stream {stream.name!r} is not under review")
        row.status, row.answered_at, row.actor = label, utcnow(), actor
        session.add(row)
        events.publish(session, stream.id, "review")
        session.flush()
        session.refresh(row)
        session.expunge(row)
    model.answer_review(template_id, label)
    services.registry.mark_dirty(stream.id)
    return row


def describe(row: TemplateReview, model: Any) -> str | None:
    """What an item names: its template's text, or for a session shape the texts of its templates."""
    if model is None:
        return None
    if row.shape:
        return "session of only: " + " · ".join(model.template(t) or f"template {t}" for t in row.shape)
    return model.template(row.template_id)


def items(services: Services, stream: Stream, status: str | None = None) -> list[TemplateReview]:
    """The stream's review, unanswered first."""
    with Session(services.engine) as session:
        return store.review_rows(session, stream.id, status)
