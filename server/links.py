"""Links from an anomaly to the lines around it in the tools operators already use.

A stream's `context_url` (a setting) is a URL template, e.g. a Grafana Explore or Kibana Discover
link, with placeholders filled for one anomaly: `{stream}`, `{template_id}`, and a time range
`CONTEXT_MARGIN_SECONDS` either side of its line, as `{from}`/`{to}` (ISO 8601, UTC) or
`{from_ms}`/`{to_ms}` (epoch milliseconds). Values are URL-encoded.
"""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

from logsense.models.settings import CONTEXT_MARGIN_SECONDS


def context_link(template: str | None, stream: str, when: float | None, template_id: int | None = None,
                 margin: float = CONTEXT_MARGIN_SECONDS) -> str | None:
    """The stream's context link for a line logged at `when` (epoch seconds), or None."""
    if not template or when is None:
        return None
    start, end = when - margin, when + margin

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    values = {"stream": stream, "template_id": "" if template_id is None else str(template_id),
              "from": iso(start), "to": iso(end), "from_ms": str(int(start * 1000)), "to_ms": str(int(end * 1000))}
    return template.format_map({k: quote(v, safe="") for k, v in values.items()})
