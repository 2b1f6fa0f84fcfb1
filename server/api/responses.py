"""The OpenAPI `responses` of the push routes (Loki's, OTLP's): what they answer alike is worded once."""

from __future__ import annotations


def push_responses(item: str, items: str, own: dict[int, str]) -> dict[int, dict]:
    """A push route's `responses`, by status: its `own` descriptions and those every push route
    shares; `item` and `items` name what its bodies hold ("entry", "entries")."""
    shared = {
        403: "the key lacks the `ingest` scope or is limited to other streams",
        404: f"every {item}'s stream is unknown and push_create_streams is off",
        413: f"over max_request_bytes (also decompressed) or max_lines_per_batch {items}",
        503: "detection models still loading; retry after Retry-After seconds",
    }
    return {status: {"description": text} for status, text in sorted({**own, **shared}.items())}
