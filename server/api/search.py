"""`GET /api/v1/search`: stored lines by text, attributes, stream, severity and log time."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from logsense.server import search
from logsense.server.api.deps import MAX_ID, SessionDep, UtcTime

router = APIRouter(prefix="/api/v1", tags=["search"])

MAX_QUERY_CHARS = 1000


class SearchOut(BaseModel):
    hits: list[search.Hit]
    next_before_id: int | None  # pass as `before_id` for the next page (null: no more)
    indexed_to: int  # lines up to this id were found through the index, newer ones by a scan
    truncated: bool  # the search gave up before `limit` hits (too many candidates): narrow it


def _attributes(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HTTPException(422, f"attr must be key=value, not {pair[:80]!r}")
        out[key.strip()] = value
    return out


@router.get("/search", response_model=SearchOut, responses={422: {"description": "a bad filter, said which"}})
def search_lines(
    session: SessionDep,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS, description=(
        'words that must all occur in the line or its attributes (whole words; word* for a prefix; "a b" a phrase)'))] = "",
    stream: Annotated[list[str] | None, Query(description="stream names (repeat for several)")] = None,
    attr: Annotated[list[str] | None, Query(description="key=value: an attribute's exact value (repeatable)")] = None,
    severity: Annotated[Literal["train", "normal", "watch", "danger", "pending"] | None, Query()] = None,
    since: Annotated[UtcTime | None, Query(description="log time at or after (ISO 8601)")] = None,
    until: Annotated[UtcTime | None, Query(description="log time at or before (ISO 8601)")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="only lines older than this id (paging)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SearchOut:
    """Stored lines matching every filter, newest first. A line without a log time is filtered
    by when it was received."""
    names = list(dict.fromkeys(stream or []))  # (a key limited to streams got its 403 already: no single stream here)
    ids = search.stream_ids(session, names) if names else {}
    missing = [n for n in names if n not in ids]
    if missing:
        raise HTTPException(404, f"no stream named {missing[0]!r}")
    query = search.Query(text=q, attributes=_attributes(attr or []), stream_ids=list(ids.values()) if names else None,
                         severity=severity, since=since.timestamp() if since else None,
                         until=until.timestamp() if until else None, before_id=before_id, limit=limit)
    result = search.search(session, query)
    by_id = {v: k for k, v in search.stream_names(session).items()}
    hits = [h.model_copy(update={"stream": by_id.get(h.stream_id, "")}) for h in result.hits]
    more = len(hits) == limit or result.truncated
    return SearchOut(hits=hits, next_before_id=hits[-1].id if hits and more else None,
                     indexed_to=result.indexed_to, truncated=result.truncated)
